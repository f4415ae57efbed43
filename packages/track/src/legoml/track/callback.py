"""TrackingCallback: an engine callback that logs training loss and epoch metrics to a run.

The only module of legoml.track that imports legoml-core, so ``import legoml.track`` stays
light.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import structlog

from legoml.core import Callback, LRSchedulerCallback, Priority
from legoml.core.distributed import is_main_process
from legoml.core.protocols import ScalarSink
from legoml.core.values import is_int, to_scalar

__all__ = ["TrackingCallback"]

log = structlog.get_logger(__name__)


def _optimizer_lr(context: Any) -> float | None:
    groups = getattr(getattr(context, "optimizer", None), "param_groups", None)
    return to_scalar(groups[0].get("lr")) if groups else None


class TrackingCallback(Callback):
    """Log the step loss (and learning rate) every N steps and all engine metrics per epoch.

    The step loss is ``train/step_loss``: ``train/loss`` is the epoch mean a
    ``MetricsCallback(loss=...)`` puts in ``state.metrics``, and one name must not carry two
    different series (both would land on the epoch's last step).

    The learning rate logged for a step is the one that step used: read from the optimizer's
    first parameter group at STEP_START, before any scheduler steps at STEP_END. At an epoch's
    end, ``lr_name`` (and the ``lr_key`` an ``LRSchedulerCallback`` puts in ``state.metrics``,
    by then the next epoch's rate) carries the rate of the epoch's last step. Each
    (step, name) is written once: at a step that already has a row for a name, later values
    of that name are dropped, also across a resume.

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
        if not is_int(log_every_n_steps):
            raise TypeError(f"log_every_n_steps must be an int >= 0, got {log_every_n_steps!r}")
        if log_every_n_steps < 0:
            raise ValueError(f"log_every_n_steps must be >= 0 (0 = never), got {log_every_n_steps}")
        self.run = run
        self.log_every_n_steps = log_every_n_steps
        self.loss_name = loss_name
        self.lr_name = lr_name
        self.log_epoch_metrics = log_epoch_metrics
        self.log_timings = log_timings
        self._step_rows: tuple[int, dict[str, float]] = (-1, {})  # names written at that step
        self._lr: tuple[int, float] | None = None  # (global_step, lr it used), read at STEP_START
        self._lr_keys: tuple[str, ...] = () if lr_name is None else (lr_name,)
        self._epoch_end: int | None = None  # the epoch's last step; None: read every step

    def state_dict(self) -> dict[str, Any]:
        """The rows of the last logged step and the rate of the last step read, so a run
        resumed at an epoch's last step still writes each (step, name) once with the rate
        that step used, and ``scalars_size`` (the sink's, when it has one): saved inside
        every checkpoint, it lets ``resume_run`` drop exactly the rows logged after that
        checkpoint."""
        step, values = self._step_rows
        state: dict[str, Any] = {"step": step, "values": dict(values)}
        if self._lr is not None:
            state["lr"] = list(self._lr)
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
        return size if is_int(size) else None

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        values = state.get("values", {})
        self._step_rows = (
            int(state.get("step", -1)),
            {str(k): float(v) for k, v in values.items()},
        )
        lr = state.get("lr")
        self._lr = None if lr is None else (int(lr[0]), float(lr[1]))

    def _write(self, values: Mapping[str, float], engine: Any) -> None:
        """Write the names not yet written at this global step (one row per (step, name))."""
        step = int(engine.state.global_step)
        written_at, written = self._step_rows
        if written_at != step:
            written = {}
            self._step_rows = (step, written)
        fresh = {k: v for k, v in values.items() if k not in written}
        if fresh:
            self.run.log_scalars(fresh, step, int(engine.state.epoch))
            written.update(fresh)

    def _loss(self, output: Any) -> float | None:
        loss = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
        return None if loss is None else to_scalar(loss)

    def _step_lr(self, engine: Any) -> float | None:
        """The rate the current global step used, when it was read at its STEP_START."""
        lr = self._lr
        return lr[1] if lr is not None and lr[0] == engine.state.global_step else None

    def on_engine_start(self, engine: Any, context: Any) -> None:
        """Note the metric names that hold a learning rate; forget rows of an earlier loop."""
        keys = [] if self.lr_name is None else [self.lr_name]
        for callback in getattr(engine, "callbacks", ()):
            key = callback.lr_key if isinstance(callback, LRSchedulerCallback) else None
            if key is not None and key not in keys:
                keys.append(key)
        self._lr_keys = tuple(keys)
        self._epoch_end = None
        if engine.state.global_step == 0:  # a fresh run: nothing of it is written yet
            self._step_rows = (-1, {})
            self._lr = None

    def on_epoch_start(self, engine: Any, context: Any) -> None:
        state = engine.state
        self._epoch_end = None if state.epoch_length is None else state.epoch_end_step()

    def on_step_start(self, engine: Any, context: Any) -> None:
        """Read the rate this step will use, only for a step that is logged or ends the epoch."""
        state = engine.state
        every = self.log_every_n_steps
        end = self._epoch_end
        if not self._lr_keys or not (
            (every and state.global_step % every == 0) or end is None or state.step == end
        ):
            return
        lr = _optimizer_lr(context)
        if lr is not None:
            self._lr = (state.global_step, lr)

    def on_step_end(self, engine: Any, context: Any) -> None:
        """Every ``log_every_n_steps`` global steps: the step's loss and the lr it used."""
        every = self.log_every_n_steps
        if every == 0 or engine.state.global_step % every != 0 or not is_main_process():
            return
        values: dict[str, float] = {}
        loss = self._loss(engine.state.output)
        if loss is not None:
            values[self.loss_name] = loss
        if self.lr_name is not None:
            lr = self._step_lr(engine)
            if lr is None:  # STEP_START did not run (a driver calling only this hook)
                lr = _optimizer_lr(context)
            if lr is not None:
                values[self.lr_name] = lr
        self._write(values, engine)

    def on_epoch_end(self, engine: Any, context: Any) -> None:
        """Every entry of ``engine.state.metrics`` (and timings when asked); a learning rate
        among them is the epoch's last step's."""
        if not is_main_process():
            return
        values: dict[str, float] = {}
        if self.log_epoch_metrics:
            for name, value in dict(engine.state.metrics).items():
                number = to_scalar(value)
                if number is None:
                    log.debug("metric is not a scalar; not logged", metric=name)
                else:
                    values[str(name)] = number
        if self._lr_keys:
            lr = self._step_lr(engine)
            for key in self._lr_keys:
                if key in values:  # the scheduler's entry is already the next epoch's rate
                    if lr is None:
                        del values[key]
                    else:
                        values[key] = lr
        if self.log_timings:
            for name, seconds in dict(getattr(engine.state, "timings", {}) or {}).items():
                number = to_scalar(seconds)
                if number is not None and math.isfinite(number):
                    values[f"time/{name}"] = number
        self._write(values, engine)

    def on_exception(self, engine: Any, context: Any, exception: BaseException) -> bool | None:
        """Record the error in the run's event log (when the run has one); never swallows it."""
        log_event = getattr(self.run, "log_event", None)
        if callable(log_event) and is_main_process():
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
