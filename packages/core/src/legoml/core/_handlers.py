"""Handler bookkeeping for the engine: registration, filters and per-event dispatch tuples.

Dispatch tuples are compiled once per change, so the hot loop iterates a ready tuple of
bound callables and never looks up, filters or sorts anything per step. A filter asks the
engine for the event's count (:meth:`~legoml.core.engine.Engine.event_count`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from legoml.core._callback_base import Callback
from legoml.core.events import Events, FilteredEvent

if TYPE_CHECKING:
    from legoml.core.engine import Engine

__all__ = ["HOOK_NAMES", "Handler", "HandlerEntry", "compile_handlers"]

Handler = Callable[..., Any]

HOOK_NAMES: dict[Events, str] = {
    Events.ENGINE_START: "on_engine_start",
    Events.EPOCH_START: "on_epoch_start",
    Events.STEP_START: "on_step_start",
    Events.STEP_END: "on_step_end",
    Events.EPOCH_END: "on_epoch_end",
    Events.ENGINE_END: "on_engine_end",
    Events.EXCEPTION_RAISED: "on_exception",
}

_STEP_EVENTS = (Events.STEP_START, Events.STEP_END)


@dataclass(frozen=True)
class HandlerEntry:
    """One handler added with ``engine.add_event_handler``."""

    event: Events
    fn: Handler
    priority: int
    seq: int
    filter: FilteredEvent | None


def _filtered(entry: HandlerEntry) -> Handler:
    fn, event, filt = entry.fn, entry.event, entry.filter
    assert filt is not None
    every = filt.every
    if every is not None and event in _STEP_EVENTS:  # the hot path: event_count inlined

        def every_step(engine: Engine, *args: Any) -> Any:
            if engine.state.global_step % every == 0:
                return fn(engine, *args)
            return None

        return every_step

    def filtered(engine: Engine, *args: Any) -> Any:
        if filt.matches(engine, engine.event_count(event)):
            return fn(engine, *args)
        return None

    return filtered


def _overridden_hook(callback: object, name: str) -> Handler | None:
    hook = getattr(type(callback), name, None)
    if hook is None or hook is getattr(Callback, name):
        return None
    bound: Handler = getattr(callback, name)
    return bound


def compile_handlers(
    callbacks: Sequence[object], entries: Sequence[HandlerEntry]
) -> dict[Events, tuple[Handler, ...]]:
    """Per event, the handlers to call in order: priority, then callbacks before added
    handlers, then list/registration order. Callback hooks left as the no-op are skipped."""
    compiled: dict[Events, tuple[Handler, ...]] = {}
    for event, name in HOOK_NAMES.items():
        ranked: list[tuple[int, int, int, Handler]] = []
        for index, callback in enumerate(callbacks):
            hook = _overridden_hook(callback, name)
            if hook is not None:
                priority = int(getattr(callback, "priority", 0))
                ranked.append((priority, 0, index, hook))
        for entry in entries:
            if entry.event is event:
                handler = entry.fn if entry.filter is None else _filtered(entry)
                ranked.append((entry.priority, 1, entry.seq, handler))
        ranked.sort(key=lambda item: item[:3])
        compiled[event] = tuple(item[3] for item in ranked)
    return compiled
