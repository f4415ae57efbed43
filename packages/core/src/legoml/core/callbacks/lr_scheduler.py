"""LRSchedulerCallback: step a learning-rate scheduler per step or per epoch."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from legoml.core._callback_base import Callback, Priority
from legoml.core.errors import CallbackError

if TYPE_CHECKING:
    from legoml.core.context import Context
    from legoml.core.engine import Engine

__all__ = ["LRSchedulerCallback"]


class LRSchedulerCallback(Callback):
    """Call ``scheduler.step()`` after every step (``interval="step"``) or epoch.

    Uses ``context.scheduler`` unless a scheduler is given (then its state is saved by
    this callback; ``context.scheduler`` is saved with the context). ``ReduceLROnPlateau``
    steps per epoch with ``state.metrics[monitor]``. The learning rate of the first
    parameter group is written to ``state.metrics[lr_key]`` at every EPOCH_END.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(1, 1)
        >>> opt = torch.optim.SGD(model.parameters(), lr=1.0)
        >>> cb = LRSchedulerCallback(torch.optim.lr_scheduler.StepLR(opt, 1, 0.5), "epoch")
        >>> cb.interval
        'epoch'
    """

    priority = Priority.SCHEDULER

    def __init__(
        self,
        scheduler: LRScheduler | None = None,
        interval: Literal["step", "epoch"] = "step",
        monitor: str | None = None,
        lr_key: str | None = "train/lr",
    ) -> None:
        if interval not in ("step", "epoch"):
            raise CallbackError(
                f"LRSchedulerCallback(interval=...) must be 'step' or 'epoch', got {interval!r}"
            )
        if isinstance(scheduler, ReduceLROnPlateau):
            if monitor is None:
                raise CallbackError(
                    "ReduceLROnPlateau needs LRSchedulerCallback(monitor='val/loss' or similar)"
                )
            interval = "epoch"
        self.scheduler = scheduler
        self.interval = interval
        self.monitor = monitor
        self.lr_key = lr_key
        self._active: LRScheduler | None = scheduler
        self._per_step = interval == "step"

    def state_dict(self) -> dict[str, Any]:
        return {} if self.scheduler is None else {"scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.scheduler is not None and "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])

    def on_engine_start(self, engine: Engine, context: Context) -> None:
        active = self.scheduler if self.scheduler is not None else context.scheduler
        if active is None:
            raise CallbackError(
                "LRSchedulerCallback has no scheduler: pass one or set context.scheduler"
            )
        if isinstance(active, ReduceLROnPlateau):
            if self.monitor is None:
                raise CallbackError(
                    "ReduceLROnPlateau needs LRSchedulerCallback(monitor='val/loss' or similar)"
                )
            self._per_step = False
        self._active = active

    def on_step_end(self, engine: Engine, context: Context) -> None:
        if self._per_step:
            self._active.step()  # type: ignore[union-attr]

    def on_epoch_end(self, engine: Engine, context: Context) -> None:
        scheduler = self._active
        assert scheduler is not None
        metrics = engine.state.metrics
        if not self._per_step:
            with warnings.catch_warnings():
                # A run resumed exactly at an epoch's end steps the scheduler before this
                # process's first optimizer.step(); the schedule itself is restored and right.
                warnings.filterwarnings(
                    "ignore", message="Detected call of `lr_scheduler.step", category=UserWarning
                )
                self._step_epoch(scheduler, metrics)
        if self.lr_key is not None:
            metrics[self.lr_key] = float(scheduler.optimizer.param_groups[0]["lr"])

    def _step_epoch(self, scheduler: LRScheduler, metrics: dict[str, float]) -> None:
        if not isinstance(scheduler, ReduceLROnPlateau):
            scheduler.step()
            return
        assert self.monitor is not None
        if self.monitor not in metrics:
            raise CallbackError(
                f"ReduceLROnPlateau monitors {self.monitor!r} but state.metrics has "
                f"{sorted(metrics)}; add the evaluation/metrics callback that produces it"
            )
        scheduler.step(metrics[self.monitor])
