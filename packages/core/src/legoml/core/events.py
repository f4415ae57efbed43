"""Engine events, their filters (every N, once at N, predicate) and removable handles."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import TYPE_CHECKING

from legoml.core.errors import EngineError
from legoml.core.values import require_int

if TYPE_CHECKING:
    from legoml.core.engine import Engine

__all__ = ["EventFilter", "Events", "FilteredEvent", "RemovableHandle"]

EventFilter = Callable[["Engine", int], bool]
"""A predicate ``(engine, count) -> bool``; ``count`` is the event's 1-based occurrence."""


class Events(Enum):
    """The points of the loop where handlers and callback hooks run.

    Order for 2 epochs x 2 steps: ENGINE_START, EPOCH_START, STEP_START, STEP_END,
    STEP_START, STEP_END, EPOCH_END, EPOCH_START, ..., EPOCH_END, ENGINE_END.
    EXCEPTION_RAISED replaces the rest when a step or a handler raises.

    Calling an event gives a filtered event; its ``count`` is ``state.global_step`` for
    STEP_*, ``state.epoch`` for EPOCH_*, and the number of times the event fired on this
    engine for ENGINE_START, ENGINE_END and EXCEPTION_RAISED (``engine.event_count(event)``).

    Example:
        >>> Events.STEP_END(every=100).every
        100
    """

    ENGINE_START = "engine_start"
    EPOCH_START = "epoch_start"
    STEP_START = "step_start"
    STEP_END = "step_end"
    EPOCH_END = "epoch_end"
    ENGINE_END = "engine_end"
    EXCEPTION_RAISED = "exception_raised"

    def __call__(
        self,
        *,
        every: int | None = None,
        once: int | None = None,
        filter: EventFilter | None = None,
    ) -> FilteredEvent:
        """This event restricted to every N-th, the N-th only, or where ``filter`` is true."""
        return FilteredEvent(self, every=every, once=once, filter=filter)


@dataclass(frozen=True)
class FilteredEvent:
    """An event plus exactly one filter; build it with ``Events.X(every=/once=/filter=)``."""

    event: Events
    every: int | None = None
    once: int | None = None
    filter: EventFilter | None = None

    def __post_init__(self) -> None:
        given = [name for name in ("every", "once", "filter") if getattr(self, name) is not None]
        if len(given) != 1:
            raise EngineError(
                f"{self.event.name}(...) needs exactly one of every=, once=, filter=; got {given or 'none'}"
            )
        for name in ("every", "once"):
            value = getattr(self, name)
            require_int(value, f"{self.event.name}({name}=...)", optional=True, error=EngineError)
        if self.filter is not None and not callable(self.filter):
            raise EngineError(f"{self.event.name}(filter=...) must be callable (engine, count)")

    def matches(self, engine: Engine, count: int) -> bool:
        """Whether the handler runs at the ``count``-th occurrence of the event."""
        if self.every is not None:
            return count % self.every == 0
        if self.once is not None:
            return count == self.once
        assert self.filter is not None
        return bool(self.filter(engine, count))


class RemovableHandle:
    """Returned by ``engine.add_event_handler``; ``remove()`` detaches the handler.

    Removing twice is a no-op. Also a context manager that removes on exit.
    """

    __slots__ = ("_remove",)

    def __init__(self, remove: Callable[[], None]) -> None:
        self._remove: Callable[[], None] | None = remove

    @property
    def removed(self) -> bool:
        """Whether :meth:`remove` already ran."""
        return self._remove is None

    def remove(self) -> None:
        """Detach the handler from its engine."""
        remove, self._remove = self._remove, None
        if remove is not None:
            remove()

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()
