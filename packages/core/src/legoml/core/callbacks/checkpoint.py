"""CheckpointCallback: periodic and best checkpoints through a saver, rank 0 only.

File layout in ``dirname``: ``step-00000123.pt`` (global step, zero-padded so names sort)
and ``best.pt``. Each file is a dict with ``engine`` (engine.state_dict()), ``context``
(context.state_dict()), ``epoch``, ``global_step``, ``metrics`` and optionally ``config``
and ``extra``; it loads with ``torch.load(path, weights_only=True)``. To resume::

    ckpt = torch.load(path, weights_only=True)
    context.load_state_dict(ckpt["context"])
    engine.load_state_dict(ckpt["engine"])
    engine.loop(data, max_epochs=...)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import structlog
import torch

from legoml.core._callback_base import Callback, Priority
from legoml.core._utils import to_scalar
from legoml.core.callbacks.early_stopping import _monitored
from legoml.core.distributed import barrier, get_world_size, is_main_process
from legoml.core.errors import CallbackError, NonFiniteLossError
from legoml.core.protocols import CheckpointSaver

if TYPE_CHECKING:
    from legoml.core.context import Context
    from legoml.core.engine import Engine

__all__ = ["CheckpointCallback", "atomic_torch_save", "checkpoint_name"]

_log = structlog.get_logger(__name__)

BEST_NAME = "best.pt"


def checkpoint_name(global_step: int) -> str:
    """``step-00000123.pt``: the periodic checkpoint file name for a global step."""
    return f"step-{global_step:08d}.pt"


def atomic_torch_save(path: Path, state: Mapping[str, Any]) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``.

    A crash mid-save leaves the previous file intact. Meets :class:`CheckpointSaver`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(dict(state), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _params_finite(model: torch.nn.Module) -> bool:
    flags = [
        torch.isfinite(t).all()
        for t in model.state_dict().values()
        if t.is_floating_point() or t.is_complex()
    ]
    if not flags:
        return True
    device = flags[0].device
    return bool(torch.stack([flag.to(device) for flag in flags]).all())  # one sync


class CheckpointCallback(Callback):
    """Save every N steps and/or epochs, keep the last ``keep_last``, and ``best.pt``.

    Runs last at its events (priority CHECKPOINT) so files include what metrics,
    evaluation, schedulers and early stopping did at that point. Only rank 0 writes;
    all ranks meet at a barrier after periodic saves. With ``check_finite`` (default) it
    refuses, with :class:`NonFiniteLossError`, to write a state whose loss or weights are
    NaN/Inf, so the last good checkpoint survives. A ``best_metric`` absent although its
    source reported (other ``val/...`` metrics for ``val/accuracy``) raises
    :class:`MetricNotFoundError` naming the metrics available; ``strict=False`` only warns,
    as does the first epoch end after a resume.

    Example:
        >>> import tempfile, torch
        >>> from legoml.core import Context, Engine
        >>> folder = tempfile.mkdtemp()
        >>> saver = CheckpointCallback(folder, every_n_steps=2, every_n_epochs=None, keep_last=1)
        >>> _ = Engine(lambda e, b, c: {"loss": b}, Context(torch.nn.Linear(1, 1)), [saver]).loop(
        ...     [torch.tensor(0.0)] * 4)
        >>> sorted(p.name for p in Path(folder).iterdir())
        ['step-00000004.pt']
    """

    priority = Priority.CHECKPOINT

    def __init__(
        self,
        dirname: str | os.PathLike[str],
        saver: CheckpointSaver = atomic_torch_save,
        every_n_steps: int | None = None,
        every_n_epochs: int | None = 1,
        keep_last: int | None = 3,
        best_metric: str | None = None,
        mode: Literal["max", "min"] = "max",
        config: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
        check_finite: bool = True,
        strict: bool = True,
    ) -> None:
        for name, value in (
            ("every_n_steps", every_n_steps),
            ("every_n_epochs", every_n_epochs),
            ("keep_last", keep_last),
        ):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise CallbackError(
                    f"CheckpointCallback({name}=...) must be None or an int >= 1, got {value!r}"
                )
        if mode not in ("max", "min"):
            raise CallbackError(
                f"CheckpointCallback(mode=...) must be 'max' or 'min', got {mode!r}"
            )
        if every_n_steps is None and every_n_epochs is None and best_metric is None:
            raise CallbackError(
                "CheckpointCallback saves nothing: set every_n_steps, every_n_epochs or best_metric"
            )
        self.dirname = Path(dirname)
        self.saver = saver
        self.every_n_steps = every_n_steps
        self.every_n_epochs = every_n_epochs
        self.keep_last = keep_last
        self.best_metric = best_metric
        self.mode = mode
        self.config = dict(config) if config is not None else None
        self.extra = extra
        self.check_finite = check_finite
        self.strict = strict
        self._resumed = False  # a resumed epoch may have measured nothing: only warn
        self.saved: list[str] = []
        self.best_score: float | None = None
        self.best_step: int | None = None
        self._main = True

    # -------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "saved": list(self.saved),
            "best_score": self.best_score,
            "best_step": self.best_step,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.saved = [str(name) for name in state.get("saved", [])]
        best = state.get("best_score")
        self.best_score = None if best is None else float(best)
        step = state.get("best_step")
        self.best_step = None if step is None else int(step)
        self._resumed = True

    # -------------------------------------------------------------- hooks
    def save(self, engine: Engine, context: Context) -> None:
        """Save a periodic checkpoint now, unless this global step already has one.

        For the end of a run that stops between the regular saves (fractional epochs).
        """
        if checkpoint_name(engine.state.global_step) not in self.saved:
            self._save_periodic(engine, context)

    def on_engine_start(self, engine: Engine, context: Context) -> None:
        self._main = is_main_process()

    def on_step_end(self, engine: Engine, context: Context) -> None:
        every = self.every_n_steps
        if every is not None and engine.state.global_step % every == 0:
            self._save_periodic(engine, context)

    def on_epoch_end(self, engine: Engine, context: Context) -> None:
        state = engine.state
        # every rank checks the name, so a wrong one fails on all of them, not rank 0 alone
        improved = self._update_best(state.metrics, state.global_step) and self._main
        every = self.every_n_epochs
        payload = None
        if every is not None and state.epoch % every == 0:
            payload = self._save_periodic(engine, context)
        if improved:
            self._write(BEST_NAME, payload or self._payload(engine, context), engine)

    # -------------------------------------------------------------- internals
    def _update_best(self, metrics: Mapping[str, float], global_step: int) -> bool:
        name = self.best_metric
        if name is None:
            return False
        strict, self._resumed = self.strict and not self._resumed, False
        if not _monitored(
            "CheckpointCallback(best_metric)", name, metrics, strict, "best_metric_missing"
        ):
            return False
        value = float(metrics[name])
        best = self.best_score
        better = best is None or (value > best if self.mode == "max" else value < best)
        if better:
            self.best_score, self.best_step = value, global_step
        return better

    def _save_periodic(self, engine: Engine, context: Context) -> dict[str, Any] | None:
        payload = None
        # Every rank keeps the same list (only rank 0 writes), so ``save()`` takes the same
        # branch, and meets the same barrier, on all ranks.
        name = checkpoint_name(engine.state.global_step)
        if name in self.saved:
            self.saved.remove(name)
        self.saved.append(name)
        if self._main:
            payload = self._payload(engine, context)
            self._write(name, payload, engine)
        self._prune()
        if get_world_size() > 1:
            barrier()
        return payload

    def _payload(self, engine: Engine, context: Context) -> dict[str, Any]:
        if self.check_finite:
            self._check_finite(engine, context)
        state = engine.state
        payload: dict[str, Any] = {
            "engine": engine.state_dict(),
            "context": context.state_dict(),
            "epoch": state.epoch,
            "global_step": state.global_step,
            "metrics": {str(k): float(v) for k, v in state.metrics.items()},
        }
        if self.config is not None:
            payload["config"] = self.config
        if self.extra is not None:
            payload["extra"] = dict(self.extra() if callable(self.extra) else self.extra)
        return payload

    def _check_finite(self, engine: Engine, context: Context) -> None:
        loss = to_scalar(getattr(engine.state.output, "loss", None))
        finite_loss = loss is None or loss == loss and abs(loss) != float("inf")
        if not finite_loss or not _params_finite(context.model):
            what = f"loss {loss}" if not finite_loss else "non-finite model weights"
            raise NonFiniteLossError(
                f"{what} at global step {engine.state.global_step}; checkpoint not written "
                f"(the last good one in {self.dirname} is kept)"
            )

    def _write(self, name: str, payload: Mapping[str, Any], engine: Engine) -> None:
        path = self.dirname / name
        path.parent.mkdir(parents=True, exist_ok=True)
        self.saver(path, payload)

    def _prune(self) -> None:
        keep = self.keep_last
        if keep is None:
            return
        while len(self.saved) > keep:
            name = self.saved.pop(0)
            if self._main:
                (self.dirname / name).unlink(missing_ok=True)
