"""The Callback base class (re-exported by ``legoml.core.callback`` and ``legoml.core``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from legoml.core.context import Context
    from legoml.core.engine import Engine

__all__ = ["Callback", "Priority"]


class Priority:
    """Run order of hooks at the same event: lower first, ties in list order.

    The built-ins use these so ordering does not depend on how the user lists them. At
    every event they run in this order (callbacks before ``add_event_handler`` handlers
    of equal priority):

    ===============  ====  ======================================================
    GUARD            -100  NonFiniteLossGuard: checks the loss before anyone sees it
    TIMER             -50  TimerCallback
    METRICS           -20  MetricsCallback: fills ``state.metrics``
    EVALUATION        -10  EvalOnEpochEndCallback: adds the eval metrics
    DEFAULT             0  user callbacks and handlers unless they say otherwise
    SCHEDULER          10  LRSchedulerCallback: steps the LR scheduler
    EARLY_STOPPING     20  EarlyStopping
    REPORTING          30  LoggingCallback, ProgressBarCallback
    CHECKPOINT         50  CheckpointCallback: last, so it captures everything
    AFTER_BUILTINS    100  user code that must see what every built-in did
    ===============  ====  ======================================================

    So a DEFAULT ``EPOCH_END`` handler sees the epoch's metrics but the learning rate
    *before* that epoch's scheduler step; use ``priority=Priority.AFTER_BUILTINS``
    (``add_event_handler`` or a callback's ``priority`` attribute) to see it after.
    """

    GUARD = -100
    TIMER = -50
    METRICS = -20
    EVALUATION = -10
    DEFAULT = 0
    SCHEDULER = 10
    EARLY_STOPPING = 20
    REPORTING = 30
    CHECKPOINT = 50
    AFTER_BUILTINS = 100


class Callback:
    """Base class with a no-op hook per event; override only the hooks you need.

    The engine calls only overridden hooks, so an unused hook costs nothing. A callback
    that must survive a restart defines ``state_dict()`` / ``load_state_dict()``; the
    engine stores it under :attr:`state_key`. ``on_exception`` may return ``True`` to
    mark the exception handled (the loop then returns instead of raising).

    Example:
        >>> class CountSteps(Callback):
        ...     def __init__(self) -> None:
        ...         self.count = 0
        ...     def on_step_end(self, engine, context):
        ...         self.count += 1
    """

    priority: int = Priority.DEFAULT

    @property
    def state_key(self) -> str:
        """Stable name of this callback's entry in ``engine.state_dict()['callbacks']``."""
        return type(self).__name__

    def on_engine_start(self, engine: Engine, context: Context) -> None:
        """Before the first epoch of ``engine.loop()`` (also on resume)."""

    def on_epoch_start(self, engine: Engine, context: Context) -> None:
        """At the start of an epoch (``state.step > 0`` when resuming mid-epoch)."""

    def on_step_start(self, engine: Engine, context: Context) -> None:
        """Before the step function runs; ``state.batch`` holds the batch."""

    def on_step_end(self, engine: Engine, context: Context) -> None:
        """After the step function; ``state.output`` holds its output."""

    def on_epoch_end(self, engine: Engine, context: Context) -> None:
        """After the last step of an epoch (not after a mid-epoch ``terminate()``)."""

    def on_engine_end(self, engine: Engine, context: Context) -> None:
        """After the last epoch, or after ``terminate()``."""

    def on_exception(
        self, engine: Engine, context: Context, exception: BaseException
    ) -> bool | None:
        """When a step or a hook raised; return ``True`` to swallow the exception."""
        return None


class _ReleasingCallback(Callback):
    """A callback that holds something while the loop runs (a bar, an optimizer hook) and
    lets go of it when the loop ends, normally or through an exception (never swallowed)."""

    def _release(self) -> None:
        """Let go of what the callback holds; a second call does nothing."""
        raise NotImplementedError

    def on_engine_end(self, engine: Engine, context: Context) -> None:
        self._release()

    def on_exception(
        self, engine: Engine, context: Context, exception: BaseException
    ) -> bool | None:
        self._release()
        return None
