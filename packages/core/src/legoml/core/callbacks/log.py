"""LoggingCallback: structured (structlog) events for the run, its epochs and failures."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from legoml.core._callback_base import Callback, Priority
from legoml.core.distributed import is_main_process
from legoml.core.errors import CallbackError
from legoml.core.events import Events, RemovableHandle
from legoml.core.protocols import ScalarSink
from legoml.core.values import require_int, to_scalar

if TYPE_CHECKING:
    from legoml.core.context import Context
    from legoml.core.engine import Engine

__all__ = ["LoggingCallback"]


class LoggingCallback(Callback):
    """Log run start/end, every epoch's metrics and timings, and failures (rank 0 only).

    ``every_n_steps`` also logs the step loss (one device sync per logged step).

    ``sink`` is deprecated (it still receives the epoch metrics for one release): send
    metrics to a run with ``legoml.track.TrackingCallback``, the one way to do it.

    Example:
        >>> import torch
        >>> from legoml.core import Context, Engine
        >>> engine = Engine(lambda e, b, c: {"loss": b}, Context(torch.nn.Identity()),
        ...     [LoggingCallback(logger=structlog.wrap_logger(structlog.ReturnLogger()))])
        >>> engine.loop([torch.tensor(0.5)]).epoch
        1
    """

    priority = Priority.REPORTING

    def __init__(
        self,
        every_n_steps: int | None = None,
        sink: ScalarSink | None = None,
        logger: Any = None,
        name: str = "engine",
    ) -> None:
        require_int(every_n_steps, "every_n_steps", optional=True, error=CallbackError)
        if sink is not None:
            warnings.warn(
                "LoggingCallback(sink=...) is deprecated and will be removed in the next "
                "release; send epoch metrics to a run with "
                "legoml.track.TrackingCallback(run) instead",
                DeprecationWarning,
                stacklevel=2,
            )
        self.every_n_steps = every_n_steps
        self.sink = sink
        self.logger: Any = logger if logger is not None else structlog.get_logger(__name__)
        self.name = name
        self._main = True
        self._step_handle: RemovableHandle | None = None

    def on_engine_start(self, engine: Engine, context: Context) -> None:
        self._detach()
        self._main = is_main_process()
        if self._main:
            state = engine.state
            self.logger.info(
                f"{self.name}_start",
                max_epochs=state.max_epochs,
                max_steps=state.max_steps,
                epoch_length=state.epoch_length,
                resumed_at_step=state.global_step or None,
            )
            if self.every_n_steps is not None:  # no per-step hook at all otherwise
                self._step_handle = engine.add_event_handler(
                    Events.STEP_END(every=self.every_n_steps), self._log_step, self.priority
                )

    def _log_step(self, engine: Engine, context: Context) -> None:
        state = engine.state
        self.logger.info(
            f"{self.name}_step",
            epoch=state.epoch,
            step=state.step,
            global_step=state.global_step,
            loss=to_scalar(getattr(state.output, "loss", None)),
        )

    def _detach(self) -> None:
        if self._step_handle is not None:
            self._step_handle.remove()
            self._step_handle = None

    def on_epoch_end(self, engine: Engine, context: Context) -> None:
        if not self._main:
            return
        state = engine.state
        self.logger.info(
            f"{self.name}_epoch",
            epoch=state.epoch,
            global_step=state.global_step,
            metrics={k: round(v, 6) for k, v in state.metrics.items()},
            timings={k: round(v, 4) for k, v in state.timings.items()},
        )
        if self.sink is not None and state.metrics:
            self.sink.log_scalars(dict(state.metrics), step=state.global_step, epoch=state.epoch)

    def on_engine_end(self, engine: Engine, context: Context) -> None:
        state = engine.state
        self._finish(
            self.logger.info,
            "end",
            epoch=state.epoch,
            global_step=state.global_step,
            terminated=engine.should_terminate,
            seconds=round(state.timings.get("total", 0.0), 3),
        )

    def on_exception(
        self, engine: Engine, context: Context, exception: BaseException
    ) -> bool | None:
        state = engine.state
        self._finish(
            self.logger.error,
            "failed",
            epoch=state.epoch,
            step=state.step,
            global_step=state.global_step,
            error=f"{type(exception).__name__}: {exception}",
        )
        return None

    def _finish(self, log: Callable[..., Any], event: str, **fields: Any) -> None:
        """Stop the step logging, then log the run's last event ``<name>_<event>`` (rank 0)."""
        self._detach()
        if self._main:
            log(f"{self.name}_{event}", **fields)
