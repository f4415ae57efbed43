"""EarlyStopping: terminate when a monitored metric stops improving."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import structlog

from legoml.core._callback_base import Callback, Priority
from legoml.core.errors import CallbackError, MetricNotFoundError
from legoml.core.values import require_int

if TYPE_CHECKING:
    from legoml.core.context import Context
    from legoml.core.engine import Engine

__all__ = ["EarlyStopping"]

_log = structlog.get_logger(__name__)


def _split(name: str) -> str:
    """``val/`` for ``val/loss``: the prefix its source (evaluator, MetricsCallback) writes."""
    head, sep, _ = name.rpartition("/")
    return head + sep


def _monitored(
    owner: str, name: str, metrics: Mapping[str, float], strict: bool, event: str
) -> bool:
    """Whether ``name`` is in ``metrics``. When absent although its source reported (some
    metric shares its ``split/`` prefix, or any metric for a bare name), raise
    :class:`MetricNotFoundError` (``strict``) or log ``event``; before that, log ``event``."""
    if name in metrics:
        return True
    split = _split(name)
    reported = any(key.startswith(split) for key in metrics) if split else bool(metrics)
    if strict and reported:
        available = sorted(metrics)
        close = difflib.get_close_matches(name, available, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise MetricNotFoundError(
            f"{owner}={name!r} is not among the metrics reported {available}; {hint}"
            "fix the name, compute that metric, or pass strict=False to only warn"
        )
    _log.warning(event, metric=name, available=sorted(metrics))
    return False


class EarlyStopping(Callback):
    """After ``patience`` epochs without improvement of ``monitor`` by more than
    ``min_delta``, call ``engine.terminate()``. Epochs where the metric is absent (no
    evaluation that epoch) are not counted. A ``monitor`` absent although its source
    reported (other ``val/...`` metrics for ``val/loss``) raises :class:`MetricNotFoundError`
    with the names available; ``strict=False`` only logs a warning, as does the first epoch
    end after a resume (that epoch may have measured nothing). Its state survives
    resume, and a resumed run that had already stopped ends at once.

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
        strict: bool = True,
    ) -> None:
        if mode not in ("min", "max"):
            raise CallbackError(f"EarlyStopping(mode=...) must be 'min' or 'max', got {mode!r}")
        require_int(patience, "EarlyStopping(patience=...)", error=CallbackError)
        if min_delta < 0:
            raise CallbackError(f"EarlyStopping(min_delta=...) must be >= 0, got {min_delta!r}")
        self.monitor = monitor
        self.mode = mode
        self.patience = patience
        self.min_delta = float(min_delta)
        self.strict = strict
        self._resumed = False  # a resumed epoch may have measured nothing: only warn
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
        self._resumed = True

    def on_engine_start(self, engine: Engine, context: Context) -> None:
        if self.stopped_epoch is not None:
            engine.terminate()

    def on_epoch_end(self, engine: Engine, context: Context) -> None:
        metrics = engine.state.metrics
        strict, self._resumed = self.strict and not self._resumed, False
        if not _monitored(
            "EarlyStopping(monitor)", self.monitor, metrics, strict, "early_stopping_metric_missing"
        ):
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
