"""The Engine: runs a step function over data for some epochs and fires events.

The loop itself is deliberately thin (no per-step lookups, clocks or syncs); everything
else (metrics, progress, logging, checkpoints) is a callback.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from time import perf_counter
from typing import Any

import structlog

from legoml.core._callback_base import Callback
from legoml.core._handlers import Handler, HandlerEntry, compile_handlers
from legoml.core._resume import (
    ENGINE_STATE_VERSION,
    capture_rng,
    check_engine_state,
    has_state,
    hold_position,
    keyed_callbacks,
    load_callback_states,
    restore_rng,
    resume_iterator,
    set_data_epoch,
)
from legoml.core.context import Context
from legoml.core.errors import EngineError
from legoml.core.events import Events, FilteredEvent, RemovableHandle
from legoml.core.state import State
from legoml.core.step_output import DictStepOutput
from legoml.core.values import require_int

__all__ = ["Engine", "StepFn"]

_log = structlog.get_logger(__name__)

StepFn = Callable[["Engine", Any, Context], Any]
"""``step_fn(engine, batch, context)`` returning a StepOutput (or a dict, wrapped)."""

_COUNTED = (Events.ENGINE_START, Events.ENGINE_END, Events.EXCEPTION_RAISED)


def _positive_int(name: str, value: object) -> int:
    return require_int(value, f"loop({name}=...)", error=EngineError)


def _resolve_limits(
    max_epochs: int | None, max_steps: int | None, pending: Mapping[str, Any] | None
) -> tuple[int | None, int | None]:
    """``(max_epochs, max_steps)``: the given ones, else a resumed run's, else 1 epoch
    (no epoch limit when only ``max_steps`` is set)."""
    if pending is not None:
        if max_epochs is None:
            max_epochs = pending["max_epochs"]
        if max_steps is None:
            max_steps = pending.get("max_steps")
    if max_steps is not None:
        max_steps = _positive_int("max_steps", max_steps)
    if max_epochs is None and max_steps is None:
        max_epochs = 1
    if max_epochs is not None:
        max_epochs = _positive_int("max_epochs", max_epochs)
    return max_epochs, max_steps


class Engine:
    """Runs ``step_fn(engine, batch, context)`` over ``data`` and fires :class:`Events`.

    Hooks of ``callbacks`` and handlers added with :meth:`add_event_handler` run in
    priority order (see :class:`~legoml.core.callback.Priority`). Changes to
    ``engine.callbacks`` take effect at the next epoch or engine event; added and removed
    handlers take effect at once.

    Example:
        >>> import torch
        >>> from legoml.core import Context, Engine, Events
        >>> def step(engine, batch, context):
        ...     return {"loss": batch.sum()}
        >>> engine = Engine(step, Context(torch.nn.Identity()))
        >>> handle = engine.add_event_handler(Events.STEP_END(every=2), lambda e, c: None)
        >>> engine.loop([torch.ones(2)] * 4, max_epochs=2).global_step
        8
    """

    def __init__(
        self,
        step_fn: StepFn,
        context: Context,
        callbacks: Iterable[Callback] | None = None,
    ) -> None:
        if not callable(step_fn):
            raise EngineError(f"Engine(step_fn=...) must be callable, got {type(step_fn).__name__}")
        self.step_fn = step_fn
        self.context = context
        self.callbacks: list[Callback] = list(callbacks or ())
        self.state = State()
        self._entries: list[HandlerEntry] = []
        self._seq = 0
        self._compiled: dict[Events, tuple[Handler, ...]] = {}
        self._compiled_for: tuple[int, ...] | None = None
        self._compile_count = 0
        self._fired: dict[Events, int] = dict.fromkeys(_COUNTED, 0)
        self._should_terminate = False
        self._running = False
        self._epoch_complete = True  # no epoch in progress
        self._data: Any = None
        self._epoch_rng: dict[str, Any] | None = None
        self._pending: dict[str, Any] | None = None

    # ------------------------------------------------------------------ handlers
    def add_event_handler(
        self,
        event: Events | FilteredEvent,
        handler: Handler,
        priority: int = 0,
    ) -> RemovableHandle:
        """Call ``handler(engine, context)`` at ``event`` (``(engine, context, exc)`` for
        EXCEPTION_RAISED, where returning ``True`` marks the exception handled).

        ``event`` may carry a filter: ``Events.STEP_END(every=10)``, ``(once=3)``,
        ``(filter=lambda engine, count: ...)``.
        """
        if isinstance(event, FilteredEvent):
            base, filt = event.event, event
        elif isinstance(event, Events):
            base, filt = event, None
        else:
            raise EngineError(f"add_event_handler needs an Events member, got {event!r}")
        if not callable(handler):
            raise EngineError(f"add_event_handler needs a callable handler, got {handler!r}")
        entry = HandlerEntry(base, handler, int(priority), self._seq, filt)
        self._seq += 1
        self._entries.append(entry)
        self._recompile()
        return RemovableHandle(lambda: self._remove_entry(entry))

    def on(self, event: Events | FilteredEvent, priority: int = 0) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`add_event_handler`."""

        def decorate(handler: Handler) -> Handler:
            self.add_event_handler(event, handler, priority)
            return handler

        return decorate

    def event_count(self, event: Events) -> int:
        """The 1-based occurrence number event filters test (``every=``, ``once=``,
        ``filter=``): ``state.global_step`` for STEP_START/STEP_END, ``state.epoch`` for
        EPOCH_START/EPOCH_END, and how often ENGINE_START, ENGINE_END or EXCEPTION_RAISED
        fired on this engine over all its ``loop()`` calls (0 before the first).

        Example:
            >>> import torch
            >>> from legoml.core import Context, Engine, Events
            >>> engine = Engine(lambda e, b, c: {"loss": b}, Context(torch.nn.Identity()))
            >>> _ = engine.loop([torch.ones(1)] * 3, max_epochs=2)
            >>> events = (Events.STEP_END, Events.EPOCH_END, Events.ENGINE_END)
            >>> [engine.event_count(event) for event in events]
            [6, 2, 1]
        """
        if event is Events.STEP_START or event is Events.STEP_END:
            return self.state.global_step
        if event is Events.EPOCH_START or event is Events.EPOCH_END:
            return self.state.epoch
        if not isinstance(event, Events):
            raise EngineError(f"event_count needs an Events member, got {event!r}")
        return self._fired[event]

    def fired_count(self, event: Events) -> int:
        """Deprecated: use :meth:`event_count`, which counts every event."""
        warnings.warn(
            "Engine.fired_count() is deprecated and will be removed in the next release; "
            "use Engine.event_count()",
            DeprecationWarning,
            stacklevel=2,
        )
        return self._fired.get(event, 0)

    def _remove_entry(self, entry: HandlerEntry) -> None:
        if entry in self._entries:
            self._entries.remove(entry)
            self._recompile()

    def _recompile(self) -> None:
        self._compiled = compile_handlers(self.callbacks, self._entries)
        self._compiled_for = tuple(map(id, self.callbacks))
        self._compile_count += 1

    def _handlers(self, event: Events) -> tuple[Handler, ...]:
        if self._compiled_for != tuple(map(id, self.callbacks)):
            self._recompile()
        return self._compiled[event]

    def _fire(self, event: Events) -> None:
        if event in self._fired:
            self._fired[event] += 1
        context = self.context
        for handler in self._handlers(event):
            handler(self, context)

    # ------------------------------------------------------------------ control
    def terminate(self) -> None:
        """Stop after the current step (or at the end of the current event)."""
        self._should_terminate = True

    @property
    def should_terminate(self) -> bool:
        """Whether :meth:`terminate` was called during the current ``loop()``."""
        return self._should_terminate

    # ------------------------------------------------------------------ the loop
    def loop(
        self,
        data: Iterable[Any],
        max_epochs: int | None = None,
        epoch_length: int | None = None,
        max_steps: int | None = None,
    ) -> State:
        """Run epochs over ``data`` and return :attr:`state`.

        Args:
            data: any iterable of batches (re-iterated every epoch) or an iterator (shared
                across epochs). ``set_epoch(index)`` is called on it (or its sampler) before
                every epoch; with ``state_dict()``/``load_state_dict()`` it resumes mid-epoch
                without replaying batches.
            max_epochs: epochs to run; default 1 (no limit when only ``max_steps`` is
                given), or the loaded run's value on resume.
            epoch_length: steps per epoch; default ``len(data)``, or until the data ends.
            max_steps: stop after exactly this many global steps, whichever of the two
                limits comes first; default none, or the loaded run's value on resume.
                Where it falls inside an epoch, that epoch ends there: its EPOCH_END fires
                over the steps done (metrics, evaluation, epoch checkpoints), then
                ENGINE_END. A resumed run already at ``max_steps`` trains nothing.

        A fresh call starts from epoch 0; after :meth:`load_state_dict` it resumes at the
        loaded position, with the next unseen batch.
        """
        if self._running:
            raise EngineError("Engine.loop() is already running; call it again after it returns")
        pending, self._pending = self._pending, None
        max_epochs, max_steps = _resolve_limits(max_epochs, max_steps, pending)
        length = self._resolve_epoch_length(data, epoch_length, pending)
        state = self.state
        if pending is None:
            state.epoch = state.step = state.global_step = 0
            state.output = state.batch = None
            state.metrics = {}
            state.timings = {}
            self._epoch_complete = True
        state.max_epochs = max_epochs
        state.max_steps = max_steps
        state.epoch_length = length
        self._data = data
        self._should_terminate = False
        self._running = True
        started = perf_counter()
        try:
            if pending is not None:
                load_callback_states(self.callbacks, pending.get("callbacks", {}))
            self._fire(Events.ENGINE_START)
            resume = pending
            while not self._should_terminate:
                steps_done = max_steps is not None and state.global_step >= max_steps
                step_rng: Mapping[str, Any] | None = None
                if resume is not None and not resume["epoch_complete"] and not steps_done:
                    iterator = self._resume_epoch(data, resume)
                    step_rng = resume["rng"]
                else:
                    if resume is not None:
                        restore_rng(resume["rng"])
                        if not resume["epoch_complete"]:  # loaded at max_steps, mid-epoch
                            self._epoch_rng = hold_position(data, state, resume)
                    if steps_done or (max_epochs is not None and state.epoch >= max_epochs):
                        break
                    state.epoch += 1
                    state.step = 0
                    iterator = self._start_epoch(data)
                resume = None
                self._epoch_complete = False
                epoch_started = perf_counter()
                self._fire(Events.EPOCH_START)
                if self._should_terminate:
                    break
                if step_rng is not None:
                    restore_rng(step_rng)
                end = state.epoch_end_step()
                if end is None or state.step < end:
                    first = state.step
                    self._run_steps(iterator, end)
                    if self._should_terminate:
                        break
                    if max_steps is None or state.global_step < max_steps:
                        self._check_epoch_size(first)  # not for an epoch cut by max_steps
                self._epoch_complete = True
                now = perf_counter()
                state.timings["epoch"] = now - epoch_started
                state.timings["total"] = now - started
                self._fire(Events.EPOCH_END)
            state.timings["total"] = perf_counter() - started
            self._fire(Events.ENGINE_END)
        except (Exception, KeyboardInterrupt) as exc:
            if not self._handle_exception(exc):
                raise
        finally:
            self._running = False
        return state

    def _run_steps(self, iterator: Iterator[Any], end: int | None) -> None:
        # The hot loop: local names, ready-made handler tuples, no clocks, no syncs. `end`
        # is the epoch's last step (its length, or where max_steps falls), None if unknown.
        state = self.state
        context = self.context
        step_fn = self.step_fn
        seen = -1
        starts: tuple[Handler, ...] = ()
        ends: tuple[Handler, ...] = ()
        for batch in iterator:
            if seen != self._compile_count:
                seen = self._compile_count
                starts = self._compiled[Events.STEP_START]
                ends = self._compiled[Events.STEP_END]
            state.step += 1
            state.global_step += 1
            state.batch = batch
            for handler in starts:
                handler(self, context)
            output = step_fn(self, batch, context)
            if isinstance(output, dict):
                output = DictStepOutput(output)
            state.output = output
            for handler in ends:
                handler(self, context)
            if self._should_terminate or state.step == end:
                return

    def _check_epoch_size(self, first_step: int) -> None:
        state = self.state
        if state.step == first_step:
            raise EngineError(
                f"data yielded no batches in epoch {state.epoch}; pass a non-empty, "
                "re-iterable data source (an exhausted iterator or generator cannot restart)"
            )
        if state.epoch_length is None:
            state.epoch_length = state.step
        elif state.step < state.epoch_length:
            _log.warning(
                "epoch_ended_early",
                epoch=state.epoch,
                steps=state.step,
                epoch_length=state.epoch_length,
            )

    def _resolve_epoch_length(
        self, data: Iterable[Any], epoch_length: int | None, pending: Mapping[str, Any] | None
    ) -> int | None:
        if epoch_length is not None:
            return _positive_int("epoch_length", epoch_length)
        if isinstance(data, Sized) and not isinstance(data, Iterator):
            size = len(data)
            if size == 0:
                raise EngineError("loop(data=...) is empty; pass at least one batch")
            return size
        if pending is not None:
            resumed: int | None = pending.get("epoch_length")
            return resumed
        return None

    def _start_epoch(self, data: Iterable[Any]) -> Iterator[Any]:
        set_data_epoch(data, self.state.epoch - 1)
        # Without its own state, a source is resumed by replaying the epoch's RNG.
        self._epoch_rng = None if has_state(data) else capture_rng()
        return data if isinstance(data, Iterator) else iter(data)

    def _resume_epoch(self, data: Iterable[Any], saved: Mapping[str, Any]) -> Iterator[Any]:
        iterator, self._epoch_rng = resume_iterator(data, self.state, saved)
        return iterator

    def _handle_exception(self, exc: BaseException) -> bool:
        self._fired[Events.EXCEPTION_RAISED] += 1
        handled = False
        context = self.context
        for handler in self._handlers(Events.EXCEPTION_RAISED):
            if handler(self, context, exc) is True:
                handled = True
        return handled

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly (``torch.load(weights_only=True)``-safe).

        Holds the position (epoch, step, global_step, whether the epoch's end ran),
        max_epochs, max_steps, epoch_length, metrics, RNG states, each stateful callback's
        state keyed by ``state_key`` and the data source's ``state_dict()`` when it has one.
        """
        state = self.state
        data = self._data
        data_state = data.state_dict() if data is not None and has_state(data) else None
        return {
            "version": ENGINE_STATE_VERSION,
            "epoch": state.epoch,
            "step": state.step,
            "global_step": state.global_step,
            "max_epochs": state.max_epochs,
            "max_steps": state.max_steps,
            "epoch_length": state.epoch_length,
            "epoch_complete": self._epoch_complete,
            "metrics": {str(k): float(v) for k, v in state.metrics.items()},
            "rng": capture_rng(),
            "epoch_rng": None
            if self._epoch_complete or data_state is not None
            else self._epoch_rng,
            "data": data_state,
            "callbacks": {
                key: callback.state_dict() for key, callback in keyed_callbacks(self.callbacks)
            },
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load :meth:`state_dict` output; the next :meth:`loop` continues from there.

        Position and metrics show in :attr:`state` at once; RNG, callback and data-source
        states are applied when ``loop()`` starts.
        """
        if self._running:
            raise EngineError("load_state_dict() cannot run while loop() is running")
        check_engine_state(state_dict)
        state = self.state
        state.epoch = int(state_dict["epoch"])
        state.step = int(state_dict["step"])
        state.global_step = int(state_dict["global_step"])
        max_epochs = state_dict["max_epochs"]
        state.max_epochs = None if max_epochs is None else int(max_epochs)
        max_steps = state_dict.get("max_steps")  # absent in states written before max_steps
        state.max_steps = None if max_steps is None else int(max_steps)
        state.epoch_length = state_dict["epoch_length"]
        state.metrics = dict(state_dict.get("metrics", {}))
        state.output = state.batch = None
        self._epoch_complete = bool(state_dict["epoch_complete"])
        self._pending = dict(state_dict)
