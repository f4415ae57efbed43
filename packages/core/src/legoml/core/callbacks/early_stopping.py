"""EarlyStopping: terminate when a monitored metric stops improving."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import structlog

from legoml.core._callback_base import Callback, Priority
from legoml.core.errors import CallbackError

if TYPE_CHECKING:
    from legoml.core.context import Context
    from legoml.core.engine import Engine

__all__ = ["EarlyStopping"]

_log = structlog.get_logger(__name__)


class EarlyStopping(Callback):
    """After ``patience`` epochs without improvement of ``monitor`` by more than
    ``min_delta``, call ``engine.terminate()``. Epochs where the metric is absent (no
    evaluation that epoch) are not counted. Its state survives resume, and a resumed run
    that had already stopped ends at once.

    Example:
        >>> stopper = EarlyStopping("val/loss", mode="min", patience=2)
        >>> stopper.patience
        2
    """

    priority = Priority.EARLY_STOPPING

    def __init__(
        self,
        monitor: str = "val/loss",
        mode: Literal["min", "max"] = "min",
        patience: int = 3,
        min_delta: float = 0.0,
    ) -> None:
        if mode not in ("min", "max"):
            raise CallbackError(f"EarlyStopping(mode=...) must be 'min' or 'max', got {mode!r}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise CallbackError(
                f"EarlyStopping(patience=...) must be an int >= 1, got {patience!r}"
            )
        if min_delta < 0:
            raise CallbackError(f"EarlyStopping(min_delta=...) must be >= 0, got {min_delta!r}")
        self.monitor = monitor
        self.mode = mode
        self.patience = patience
        self.min_delta = float(min_delta)
        self.best: float | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        best = state.get("best")
        self.best = None if best is None else float(best)
        self.wait = int(state.get("wait", 0))
        stopped = state.get("stopped_epoch")
        self.stopped_epoch = None if stopped is None else int(stopped)

    def on_engine_start(self, engine: Engine, context: Context) -> None:
        if self.stopped_epoch is not None:
            engine.terminate()

    def on_epoch_end(self, engine: Engine, context: Context) -> None:
        metrics = engine.state.metrics
        if self.monitor not in metrics:
            _log.warning(
                "early_stopping_metric_missing", metric=self.monitor, available=sorted(metrics)
            )
            return
        value = float(metrics[self.monitor])
        best = self.best
        if best is None or (
            value < best - self.min_delta if self.mode == "min" else value > best + self.min_delta
        ):
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = engine.state.epoch
            _log.info(
                "early_stopping",
                metric=self.monitor,
                best=best,
                epoch=engine.state.epoch,
                patience=self.patience,
            )
            engine.terminate()
