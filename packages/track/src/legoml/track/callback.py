"""TrackingCallback: an engine callback that logs training loss and epoch metrics to a run.

The only module of legoml.track that imports legoml-core, so ``import legoml.track`` stays
light.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import structlog
import torch

from legoml.core import Callback, Priority, ScalarSink

__all__ = ["TrackingCallback"]

log = structlog.get_logger(__name__)


def _is_rank_zero() -> bool:
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _number(value: Any) -> float | None:
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().item()) if value.numel() == 1 else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


class TrackingCallback(Callback):
    """Log the step loss (and learning rate) every N steps and all engine metrics per epoch.

    The step loss is ``train/step_loss``: ``train/loss`` is the epoch mean a
    ``MetricsCallback(loss=...)`` puts in ``state.metrics``, and one name must not carry two
    different series (both would land on the epoch's last step).

    ``run`` is a :class:`legoml.track.Run` or any ``legoml.core.ScalarSink``. Rows use the
    engine's ``global_step`` and ``epoch``. Under ``torch.distributed`` only rank 0 writes.

    Example::

        import tempfile
        from legoml.track import TrackingCallback, run

        with run("demo", root=tempfile.mkdtemp()) as r:
            callback = TrackingCallback(r, log_every_n_steps=10)
            # trainer.callbacks.append(callback); trainer.loop(loader, max_epochs=2)
    """

    priority = Priority.REPORTING  # after metrics and evaluation have filled state.metrics

    def __init__(
        self,
        run: ScalarSink,
        log_every_n_steps: int = 50,
        *,
        loss_name: str = "train/step_loss",
        lr_name: str | None = "train/lr",
        log_epoch_metrics: bool = True,
        log_timings: bool = False,
    ) -> None:
        if isinstance(log_every_n_steps, bool) or not isinstance(log_every_n_steps, int):
            raise TypeError(f"log_every_n_steps must be an int >= 0, got {log_every_n_steps!r}")
        if log_every_n_steps < 0:
            raise ValueError(f"log_every_n_steps must be >= 0 (0 = never), got {log_every_n_steps}")
        self.run = run
        self.log_every_n_steps = log_every_n_steps
        self.loss_name = loss_name
        self.lr_name = lr_name
        self.log_epoch_metrics = log_epoch_metrics
        self.log_timings = log_timings
        self._step_rows: tuple[int, dict[str, float]] = (-1, {})  # what on_step_end last wrote

    def state_dict(self) -> dict[str, Any]:
        """The rows of the last logged step, so a run resumed at an epoch's last step still
        writes each (step, name) once, and ``scalars_size`` (the sink's, when it has one):
        saved inside every checkpoint, it lets ``resume_run`` drop exactly the rows logged
        after that checkpoint."""
        step, values = self._step_rows
        state: dict[str, Any] = {"step": step, "values": dict(values)}
        size = self._scalars_size()
        if size is not None:
            state["scalars_size"] = size
        return state

    def _scalars_size(self) -> int | None:
        try:
            size = getattr(self.run, "scalars_size", None)
        except OSError as exc:  # the CSV vanished: the rewind falls back to the step
            log.warning("cannot measure scalars.csv", error=str(exc))
            return None
        return size if isinstance(size, int) and not isinstance(size, bool) else None

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        values = state.get("values", {})
        self._step_rows = (int(state.get("step", -1)), {str(k): float(v) for k, v in values.items()})

    def _write(self, values: Mapping[str, float], engine: Any) -> None:
        if values:
            state = engine.state
            self.run.log_scalars(values, int(state.global_step), int(state.epoch))

    def _loss(self, output: Any) -> float | None:
        loss = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
        return None if loss is None else _number(loss)

    def on_step_end(self, engine: Any, context: Any) -> None:
        """Every ``log_every_n_steps`` global steps: the step's loss and the current lr."""
        every = self.log_every_n_steps
        if every == 0 or engine.state.global_step % every != 0 or not _is_rank_zero():
            return
        values: dict[str, float] = {}
        loss = self._loss(engine.state.output)
        if loss is not None:
            values[self.loss_name] = loss
        optimizer = getattr(context, "optimizer", None)
        if self.lr_name is not None and optimizer is not None and optimizer.param_groups:
            lr = _number(optimizer.param_groups[0].get("lr"))
            if lr is not None:
                values[self.lr_name] = lr
        self._write(values, engine)
        self._step_rows = (int(engine.state.global_step), values)

    def on_epoch_end(self, engine: Any, context: Any) -> None:
        """Every entry of ``engine.state.metrics`` (and timings when asked)."""
        if not _is_rank_zero():
            return
        values: dict[str, float] = {}
        if self.log_epoch_metrics:
            for name, value in dict(engine.state.metrics).items():
                number = _number(value)
                if number is None:
                    log.debug("metric is not a scalar; not logged", metric=name)
                else:
                    values[str(name)] = number
        if self.log_timings:
            for name, seconds in dict(getattr(engine.state, "timings", {}) or {}).items():
                number = _number(seconds)
                if number is not None and math.isfinite(number):
                    values[f"time/{name}"] = number
        step, logged = self._step_rows
        if step == int(engine.state.global_step):  # one row per (step, name): drop repeats
            values = {k: v for k, v in values.items() if logged.get(k) != v}
        self._write(values, engine)

    def on_exception(self, engine: Any, context: Any, exception: BaseException) -> bool | None:
        """Record the error in the run's event log (when the run has one); never swallows it."""
        log_event = getattr(self.run, "log_event", None)
        if callable(log_event) and _is_rank_zero():
            try:
                log_event(
                    "engine exception",
                    level="error",
                    error=f"{type(exception).__name__}: {exception}",
                    global_step=int(engine.state.global_step),
                    epoch=int(engine.state.epoch),
                )
            except Exception as exc:  # never mask the original error
                log.warning("could not record engine exception", error=str(exc))
        return None
