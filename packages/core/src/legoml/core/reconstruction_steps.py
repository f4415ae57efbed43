"""Ready-made reconstruction (auto-encoder) train and eval steps.

The model maps inputs to a reconstruction of them, optionally with the code it went
through: ``model(x) -> recon`` or ``model(x) -> (recon, embedding)``. The loss compares
the reconstruction with the inputs (``context.loss_fn``, default MSE). Device moves,
gradient clearing, autocast and the update are the supervised steps' own helpers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from legoml.core.context import Context
from legoml.core.device import _CPU, move_to_device
from legoml.core.errors import EngineError
from legoml.core.step_output import UnsupervisedStepOutput
from legoml.core.steps import (
    AmpSetting,
    PrepareBatch,
    _AmpDtype,
    _autocast,
    _check_common,
    _clear_grads,
    _prepared,
    _read_fields,
    _resolve_prepare,
    _update,
)

if TYPE_CHECKING:
    from legoml.core.engine import Engine

__all__ = ["make_reconstruction_eval_step", "make_reconstruction_train_step"]

ReconstructionStep = Callable[["Engine", Any, Context], UnsupervisedStepOutput]

_INPUTS_HINT = (
    "reconstruction steps need a tensor of inputs, (inputs, labels) batches or a dict "
    "with an input key, got {}; pass input_key= or prepare_batch="
)


def _prepare_inputs(batch: Any, device: torch.device, non_blocking: bool) -> tuple[Any, Tensor]:
    """``(inputs, inputs)`` from a tensor batch, an ``(inputs, labels)`` pair, or a dict
    (dataclass, namedtuple) batch with an input field (``x``, ``input(s)``, ``image(s)``)."""
    inputs = batch
    if isinstance(batch, (tuple, list)) and len(batch) in (1, 2):
        inputs = batch[0]  # the labels, if any, are not needed
    if not isinstance(inputs, Tensor):
        return _prepare_field_inputs(batch, device, non_blocking)
    if not (device == _CPU and inputs.is_cpu):
        inputs = move_to_device(inputs, device, non_blocking)
    return inputs, inputs


def _prepare_field_inputs(
    batch: Any,
    device: torch.device,
    non_blocking: bool,
    input_key: str | None = None,
    target_key: str | None = None,
) -> tuple[Any, Tensor]:
    """The slow path: inputs (and targets, default the inputs) from a batch's fields."""
    inputs, targets = _read_fields(batch, input_key, target_key, None, _INPUTS_HINT)
    if not isinstance(inputs, Tensor):
        raise EngineError(
            f"reconstruction steps need tensor inputs, got {type(inputs).__name__}; "
            "pass prepare_batch= to unpack other layouts"
        )
    inputs = move_to_device(inputs, device, non_blocking)
    return inputs, inputs if target_key is None else move_to_device(targets, device, non_blocking)


def _split_output(output: Any) -> tuple[Tensor, Tensor | None]:
    """``(reconstruction, embedding or None)`` from what the model returned."""
    if isinstance(output, Tensor):
        return output, None
    if (
        isinstance(output, (tuple, list))
        and len(output) == 2
        and isinstance(output[0], Tensor)
        and (output[1] is None or isinstance(output[1], Tensor))
    ):
        return output[0], output[1]
    raise EngineError(
        f"reconstruction steps need the model to return a tensor or (reconstruction, "
        f"embedding), got {type(output).__name__}; wrap the model to return one of them"
    )


def _loss(context: Context, reconstruction: Tensor, targets: Tensor) -> Tensor:
    """``context.loss_fn`` (default MSE) in fp32, outside autocast (BCE is unsafe there)."""
    loss_fn = context.loss_fn
    if loss_fn is not None:
        loss: Tensor = loss_fn(reconstruction.float(), targets)
        return loss
    if reconstruction.shape != targets.shape:  # MSE would broadcast: a silent wrong loss
        raise EngineError(
            f"the reconstruction has shape {tuple(reconstruction.shape)} but the inputs have "
            f"{tuple(targets.shape)}; the model must return its input's shape"
        )
    return F.mse_loss(reconstruction.float(), targets.float())


def make_reconstruction_train_step(
    *,
    amp: AmpSetting = "auto",
    clip_grad_norm: float | None = None,
    channels_last: bool = False,
    prepare_batch: PrepareBatch | None = None,
    non_blocking: bool = True,
    input_key: str | None = None,
    target_key: str | None = None,
) -> ReconstructionStep:
    """Build ``step(engine, batch, context)``: forward, reconstruction loss, backward, update.

    Batches are input tensors, ``(inputs, labels)`` pairs (labels ignored), dict (dataclass,
    namedtuple) batches with an ``x``/``input(s)``/``image(s)`` field or ``input_key`` (and
    ``target_key`` for a target other than the inputs), or whatever
    ``prepare_batch(batch, device, non_blocking) -> (inputs, targets)`` unpacks, where
    ``targets`` is what the reconstruction should match (e.g. clean images for a
    denoising auto-encoder fed noisy ones). Returns an :class:`UnsupervisedStepOutput` with
    detached reconstructions and embeddings and ``targets``.

    Args:
        amp: autocast precision (see :func:`resolve_amp_dtype`); with ``context.scaler``
            set the loss is scaled and the optimizer stepped through the GradScaler.
        clip_grad_norm: clip the global gradient norm before each update.
        channels_last: convert 4-D inputs to channels-last memory format.

    Example:
        >>> import torch
        >>> from legoml.core import Context, Engine
        >>> model = torch.nn.Linear(4, 4)
        >>> ctx = Context(model, torch.optim.SGD(model.parameters(), lr=0.1))
        >>> out = Engine(make_reconstruction_train_step(amp=None), ctx).loop(
        ...     [torch.randn(8, 4)] * 3).output
        >>> out.reconstructions.shape == out.targets.shape, out.embeddings
        (True, None)
    """
    _check_common(1, clip_grad_norm)
    amp_dtype = _AmpDtype(amp)
    prepare = _resolve_prepare(
        prepare_batch, input_key, target_key, _prepare_inputs, _prepare_field_inputs
    )

    def train_step(engine: Engine, batch: Any, context: Context) -> UnsupervisedStepOutput:
        model, optimizer = context.model, context.optimizer
        if optimizer is None:
            raise EngineError("the reconstruction train step needs context.optimizer")
        if not model.training:
            model.train()
        device = context.device
        inputs, targets = _prepared(prepare, batch, device, non_blocking, channels_last)
        _clear_grads(optimizer)
        with _autocast(device, amp_dtype(device)):
            reconstruction, embedding = _split_output(model(inputs))
        loss = _loss(context, reconstruction, targets)
        scaler = context.scaler
        (loss if scaler is None else scaler.scale(loss)).backward()  # type: ignore[no-untyped-call]
        _update(model, optimizer, scaler, clip_grad_norm)
        return UnsupervisedStepOutput(
            loss.detach(),
            reconstruction.detach(),
            None if embedding is None else embedding.detach(),
            targets=targets,
        )

    return train_step


def make_reconstruction_eval_step(
    *,
    amp: AmpSetting = "auto",
    channels_last: bool = False,
    prepare_batch: PrepareBatch | None = None,
    non_blocking: bool = True,
    input_key: str | None = None,
    target_key: str | None = None,
) -> ReconstructionStep:
    """Build an evaluation ``step(engine, batch, context)`` under ``torch.inference_mode``,
    with the model in eval mode; batches and output as in
    :func:`make_reconstruction_train_step`, the loss always computed (default MSE).

    Example:
        >>> import torch
        >>> from legoml.core import Context, Engine
        >>> engine = Engine(make_reconstruction_eval_step(), Context(torch.nn.Identity()))
        >>> float(engine.loop([torch.ones(2, 3)]).output.loss)
        0.0
    """
    amp_dtype = _AmpDtype(amp)
    prepare = _resolve_prepare(
        prepare_batch, input_key, target_key, _prepare_inputs, _prepare_field_inputs
    )

    @torch.inference_mode()
    def eval_step(engine: Engine, batch: Any, context: Context) -> UnsupervisedStepOutput:
        model = context.model
        if model.training:
            model.eval()
        device = context.device
        inputs, targets = _prepared(prepare, batch, device, non_blocking, channels_last)
        with _autocast(device, amp_dtype(device)):
            reconstruction, embedding = _split_output(model(inputs))
        loss = _loss(context, reconstruction, targets)
        return UnsupervisedStepOutput(loss, reconstruction, embedding, targets=targets)

    return eval_step
