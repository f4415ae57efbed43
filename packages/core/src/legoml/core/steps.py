"""Ready-made supervised train and eval steps: AMP, GradScaler, accumulation, clipping.

Both read the model, optimizer, loss and device from the :class:`Context`, expect
``(inputs, targets)`` batches, dict/dataclass/namedtuple batches with input and target
fields (or ``input_key=``/``target_key=``, or a ``prepare_batch`` function) and return a
:class:`SupervisedStepOutput` with the loss and detached predictions.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from legoml.core.context import Context
from legoml.core.device import _CPU, cpu_supports_bf16, move_to_device
from legoml.core.errors import EngineError
from legoml.core.step_output import SupervisedStepOutput
from legoml.core.values import require_int

if TYPE_CHECKING:
    from legoml.core.engine import Engine

__all__ = [
    "AmpSetting",
    "PrepareBatch",
    "make_supervised_eval_step",
    "make_supervised_train_step",
    "resolve_amp_dtype",
]

AmpSetting = Literal["auto", "bf16", "fp16", "fp32", "none"] | torch.dtype | None
"""The autocast precision: ``"auto"``, ``"bf16"``/``torch.bfloat16``, ``"fp16"``/
``torch.float16``, or ``"fp32"``/``"none"``/``None`` (no autocast); see resolve_amp_dtype."""

PrepareBatch = Callable[[Any, torch.device, bool], tuple[Any, Tensor]]
"""``prepare_batch(batch, device, non_blocking) -> (inputs, targets)`` on ``device``."""

SupervisedStep = Callable[["Engine", Any, Context], SupervisedStepOutput]

_AMP_NAMES: dict[str, torch.dtype | None] = {
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
    "fp32": None,
    "none": None,
}
_AMP_ACCEPTED = "'auto', 'bf16', 'fp16', 'fp32', 'none', None, torch.bfloat16 or torch.float16"


def _check_amp(amp: object) -> torch.dtype | Literal["auto"] | None:
    """``amp`` as ``"auto"``, an autocast dtype or ``None``; a clear error otherwise."""
    if amp is None or amp is torch.bfloat16 or amp is torch.float16:
        return amp
    if isinstance(amp, str):
        if amp == "auto":
            return "auto"
        if amp in _AMP_NAMES:
            return _AMP_NAMES[amp]
    raise EngineError(f"amp={amp!r} is not supported; use {_AMP_ACCEPTED}")


def resolve_amp_dtype(amp: AmpSetting, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``device`` (``None``: no autocast), the one precision resolver
    of every step helper.

    ``"auto"`` gives bf16 on CUDA when supported (else fp16), fp16 on MPS, and bf16 on CPUs
    with native bf16 (else no autocast); the other settings name their dtype.

    Example:
        >>> cpu = torch.device("cpu")
        >>> resolve_amp_dtype("bf16", cpu), resolve_amp_dtype("fp32", cpu)
        (torch.bfloat16, None)
    """
    setting = _check_amp(amp)
    if setting != "auto":
        return setting
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    if device.type == "cpu":
        return torch.bfloat16 if cpu_supports_bf16() else None
    return None


def _autocast(
    device: torch.device, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` to ``dtype`` on ``device``'s type, or nothing for ``None``."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


_INPUT_KEYS = ("x", "input", "inputs", "image", "images")
"""Field names a dict (dataclass, namedtuple) batch's inputs are found under by default."""
_TARGET_KEYS = ("y", "target", "targets", "label", "labels")
"""Field names a dict (dataclass, namedtuple) batch's targets are found under by default."""

_BATCH_HINT = (
    "supervised steps need (inputs, targets) batches or a dict with input/target keys, got {}; "
    "pass input_key=/target_key= or prepare_batch="
)


def _fields(batch: Any) -> Mapping[str, Any] | None:
    """A dict, dataclass or namedtuple batch as a mapping of its fields; else ``None``."""
    if isinstance(batch, Mapping):
        return batch
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return {f.name: getattr(batch, f.name) for f in dataclasses.fields(batch)}
    as_dict = getattr(batch, "_asdict", None)
    if isinstance(batch, tuple) and callable(as_dict):
        fields: Mapping[str, Any] = as_dict()
        return fields
    return None


def _describe(batch: Any) -> str:
    fields = _fields(batch)
    if fields is None:
        return type(batch).__name__
    return f"{type(batch).__name__} with keys {sorted(map(str, fields))}"


def _pick(fields: Mapping[str, Any], key: str | None, defaults: tuple[str, ...]) -> Any:
    """``fields[key]``, or the first default key present; ``KeyError`` when none is."""
    if key is not None:
        return fields[key]
    for name in defaults:
        if name in fields:
            return fields[name]
    raise KeyError(defaults[0])


def _read_fields(
    batch: Any,
    input_key: str | None,
    target_key: str | None,
    target_defaults: tuple[str, ...] | None,
    hint: str,
) -> tuple[Any, Any]:
    """``(inputs, targets)`` read from a batch's fields, the one field reader of every step
    family; with no ``target_defaults`` and no ``target_key`` the targets are the inputs.

    A missing field raises ``EngineError(hint)``, ``{}`` in ``hint`` naming the batch.
    """
    fields = _fields(batch)
    try:
        if fields is None:
            raise KeyError(input_key)
        inputs = _pick(fields, input_key, _INPUT_KEYS)
        if target_key is None and target_defaults is None:
            return inputs, inputs
        return inputs, _pick(fields, target_key, target_defaults or ())
    except KeyError:
        raise EngineError(hint.format(_describe(batch))) from None


def _prepare_fields(
    batch: Any,
    device: torch.device,
    non_blocking: bool,
    input_key: str | None = None,
    target_key: str | None = None,
) -> tuple[Any, Any]:
    """``(inputs, targets)`` from a dict/dataclass/namedtuple batch, moved to ``device``."""
    inputs, targets = _read_fields(batch, input_key, target_key, _TARGET_KEYS, _BATCH_HINT)
    return move_to_device(inputs, device, non_blocking), move_to_device(
        targets, device, non_blocking
    )


def _default_prepare(batch: Any, device: torch.device, non_blocking: bool) -> tuple[Any, Tensor]:
    try:
        inputs, targets = batch
    except (TypeError, ValueError):  # not a pair: a dict, dataclass or namedtuple batch?
        return _prepare_fields(batch, device, non_blocking)
    try:
        if device == _CPU and inputs.is_cpu and targets.is_cpu:
            return inputs, targets  # the CPU hot path: nothing to move
    except AttributeError:  # not tensors: a 2-key dict, or nested structures moved below
        if isinstance(batch, Mapping):
            return _prepare_fields(batch, device, non_blocking)
    return move_to_device(inputs, device, non_blocking), move_to_device(
        targets, device, non_blocking
    )


def _resolve_prepare(
    prepare_batch: PrepareBatch | None,
    input_key: str | None,
    target_key: str | None,
    default: PrepareBatch | None = None,
    by_fields: Callable[..., tuple[Any, Tensor]] | None = None,
) -> PrepareBatch:
    """The batch unpacker: ``prepare_batch``, one reading the given keys (``by_fields``),
    or ``default``; the supervised unpackers unless a step family passes its own."""
    if prepare_batch is not None and (input_key is not None or target_key is not None):
        raise EngineError("pass either prepare_batch= or input_key=/target_key=, not both")
    if prepare_batch is not None:
        return prepare_batch
    if input_key is None and target_key is None:
        return default or _default_prepare
    read = by_fields or _prepare_fields

    def prepare(batch: Any, device: torch.device, non_blocking: bool) -> tuple[Any, Tensor]:
        return read(batch, device, non_blocking, input_key, target_key)

    return prepare


_TORCH_ZERO_GRAD = torch.optim.Optimizer.zero_grad
# Whether a torch profiler is recording; if torch ever drops this helper, assume it is.
_profiler_enabled: Callable[[], bool] = getattr(torch.autograd, "_profiler_enabled", lambda: True)


def _clear_grads(optimizer: torch.optim.Optimizer) -> None:
    """What ``optimizer.zero_grad(set_to_none=True)`` does, without its Python overhead.

    torch's ``zero_grad`` opens a profiler range and a compile guard on every call: about
    7 µs of Python per step, a few percent of a small model's step. When the optimizer
    keeps torch's ``zero_grad`` and no profiler is recording, the gradients are set to
    ``None`` directly (the same effect); otherwise ``zero_grad`` itself runs.
    """
    if (
        getattr(optimizer.zero_grad, "__func__", None) is not _TORCH_ZERO_GRAD
        or _profiler_enabled()
    ):
        optimizer.zero_grad(set_to_none=True)
        return
    for group in optimizer.param_groups:
        for param in group["params"]:
            param.grad = None


def _channels_last(inputs: Any) -> Any:
    """4-D tensor inputs in channels-last memory format; anything else as it is."""
    if isinstance(inputs, Tensor) and inputs.dim() == 4:
        return inputs.contiguous(memory_format=torch.channels_last)
    return inputs


def _prepared(
    prepare: PrepareBatch, batch: Any, device: torch.device, non_blocking: bool, channels_last: bool
) -> tuple[Any, Tensor]:
    """``prepare``'s ``(inputs, targets)``, with 4-D inputs channels-last when asked."""
    inputs, targets = prepare(batch, device, non_blocking)
    return (_channels_last(inputs) if channels_last else inputs), targets


def _update(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    clip_grad_norm: float | None,
) -> None:
    """Clip (after unscaling) and step the optimizer, through the GradScaler when set."""
    if clip_grad_norm is not None:
        if scaler is not None:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()


class _AmpDtype:
    """The autocast dtype per device, resolved once; the last device is one attribute away."""

    __slots__ = ("_cache", "amp", "device", "dtype")

    def __init__(self, amp: AmpSetting) -> None:
        self.amp = _check_amp(amp)  # reject bad values at build time
        self.device: torch.device | None = None
        self.dtype: torch.dtype | None = None
        self._cache: dict[torch.device, torch.dtype | None] = {}

    def __call__(self, device: torch.device) -> torch.dtype | None:
        if device is self.device:
            return self.dtype
        if device not in self._cache:
            self._cache[device] = resolve_amp_dtype(self.amp, device)
        self.device, self.dtype = device, self._cache[device]
        return self.dtype


def _check_common(grad_accum_steps: int, clip_grad_norm: float | None) -> None:
    require_int(grad_accum_steps, "grad_accum_steps", error=EngineError)
    if clip_grad_norm is not None and not clip_grad_norm > 0:
        raise EngineError(f"clip_grad_norm must be > 0 or None, got {clip_grad_norm!r}")


def make_supervised_train_step(
    *,
    amp: AmpSetting = None,
    grad_accum_steps: int = 1,
    clip_grad_norm: float | None = None,
    channels_last: bool = False,
    non_blocking: bool = True,
    prepare_batch: PrepareBatch | None = None,
    input_key: str | None = None,
    target_key: str | None = None,
) -> SupervisedStep:
    """Build ``step(engine, batch, context)`` doing forward, loss, backward and update.

    Args:
        amp: autocast precision, e.g. ``"bf16"`` (see :func:`resolve_amp_dtype`); with
            ``context.scaler`` set the loss is scaled and the optimizer stepped through the
            GradScaler (fp16).
        grad_accum_steps: optimizer update every N steps (and at the end of each epoch,
            also one that ``max_steps`` cuts short);
            the loss is divided by the window size. For exact resume, checkpoint at window
            boundaries (gradients are not saved).
        clip_grad_norm: clip the global gradient norm before each update.
        channels_last: convert 4-D inputs to channels-last memory format.
        prepare_batch: ``(batch, device, non_blocking) -> (inputs, targets)`` on ``device``,
            for layouts the default unpacker (pairs; dicts, dataclasses, namedtuples with
            ``x``/``input(s)``/``image(s)`` and ``y``/``target(s)``/``label(s)`` fields) does not know.
        input_key, target_key: the dict (dataclass, namedtuple) fields to read instead.

    Example:
        >>> import torch
        >>> from legoml.core import Context, Engine
        >>> model = torch.nn.Linear(4, 2)
        >>> ctx = Context(model, torch.optim.SGD(model.parameters(), lr=0.1),
        ...               torch.nn.functional.cross_entropy)
        >>> batches = [(torch.randn(8, 4), torch.randint(0, 2, (8,)))] * 3
        >>> Engine(make_supervised_train_step(), ctx).loop(batches).global_step
        3
    """
    _check_common(grad_accum_steps, clip_grad_norm)
    amp_dtype = _AmpDtype(amp)
    prepare = _resolve_prepare(prepare_batch, input_key, target_key)
    accum = grad_accum_steps

    # One flat function for the hot path: on a tiny CPU model, splitting the per-step work
    # (unpacking, autocast, channels-last) into helpers cost ~1.4 us per ~250 us step; the
    # one `_update` call costs ~25 ns. `window`, `first` and `last` place the step in an
    # accumulation window; the defaults are a plain step.
    def train_step(
        engine: Engine,
        batch: Any,
        context: Context,
        window: int = 1,
        first: bool = True,
        last: bool = True,
    ) -> SupervisedStepOutput:
        model, optimizer, loss_fn = context.model, context.optimizer, context.loss_fn
        if optimizer is None or loss_fn is None:
            raise EngineError(
                "the supervised train step needs context.optimizer and context.loss_fn"
            )
        if not model.training:
            model.train()
        device = context.device
        inputs, targets = prepare(batch, device, non_blocking)
        if channels_last and isinstance(inputs, Tensor) and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        if first:
            _clear_grads(optimizer)
        dtype = amp_dtype.dtype if device is amp_dtype.device else amp_dtype(device)
        if dtype is None:
            outputs = model(inputs)
            loss = loss_fn(outputs, targets)
        else:
            with torch.autocast(device_type=device.type, dtype=dtype):
                outputs = model(inputs)
                loss = loss_fn(outputs, targets)
        scaled: Tensor = loss if window == 1 else loss / window
        scaler = context.scaler
        (scaled if scaler is None else scaler.scale(scaled)).backward()  # type: ignore[no-untyped-call]
        if last:
            _update(model, optimizer, scaler, clip_grad_norm)
        return SupervisedStepOutput(loss.detach(), outputs.detach(), targets)

    def accumulating_train_step(
        engine: Engine, batch: Any, context: Context
    ) -> SupervisedStepOutput:
        # Windows of `accum` steps; the epoch's end closes a shorter one.
        state = engine.state
        position = (state.step - 1) % accum
        end = state.epoch_end_step()  # max_steps inside the epoch closes the window too
        window = accum if end is None else min(accum, end - (state.step - position) + 1)
        last = position == window - 1
        model = context.model
        if not last and isinstance(model, DistributedDataParallel):
            with model.no_sync():  # all-reduce gradients once per window
                return train_step(engine, batch, context, window, position == 0, last)
        return train_step(engine, batch, context, window, position == 0, last)

    return train_step if accum == 1 else accumulating_train_step


def make_supervised_eval_step(
    *,
    amp: AmpSetting = None,
    channels_last: bool = False,
    non_blocking: bool = True,
    prepare_batch: PrepareBatch | None = None,
    compute_loss: bool = True,
    input_key: str | None = None,
    target_key: str | None = None,
) -> SupervisedStep:
    """Build an evaluation ``step(engine, batch, context)`` under ``torch.inference_mode``.

    The model is put in eval mode; the loss is computed when ``compute_loss`` and
    ``context.loss_fn`` is set (``None`` otherwise). Batches are unpacked as in
    :func:`make_supervised_train_step`.

    Example:
        >>> import torch
        >>> from legoml.core import Context, Engine
        >>> ctx = Context(torch.nn.Linear(4, 2))
        >>> engine = Engine(make_supervised_eval_step(), ctx)
        >>> engine.loop([(torch.randn(8, 4), torch.zeros(8, dtype=torch.long))]).output.loss is None
        True
    """
    amp_dtype = _AmpDtype(amp)
    prepare = _resolve_prepare(prepare_batch, input_key, target_key)

    @torch.inference_mode()
    def eval_step(engine: Engine, batch: Any, context: Context) -> SupervisedStepOutput:
        model, loss_fn = context.model, context.loss_fn
        if model.training:
            model.eval()
        device = context.device
        inputs, targets = _prepared(prepare, batch, device, non_blocking, channels_last)
        with _autocast(device, amp_dtype(device)):
            outputs = model(inputs)
            loss = loss_fn(outputs, targets) if compute_loss and loss_fn is not None else None
        return SupervisedStepOutput(loss, outputs, targets)

    return eval_step
