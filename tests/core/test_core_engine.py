"""Engine behaviour: event order, filters, handles, terminate, exceptions, outputs, data."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from legoml.core import (
    Callback,
    Context,
    DictStepOutput,
    Engine,
    Events,
    Priority,
    State,
    StepOutput,
    SupervisedStepOutput,
    UnsupervisedStepOutput,
)
from legoml.core.errors import EngineError


def ctx() -> Context:
    return Context(torch.nn.Identity())


def noop_step(engine: Engine, batch: Any, context: Context) -> dict[str, Any]:
    return {"loss": None, "batch": batch}


class Recorder(Callback):
    """Records every hook with the position the engine reports."""

    def __init__(self, log: list[tuple[str, int, int, int]], tag: str = "") -> None:
        self.log = log
        self.tag = tag

    def _rec(self, name: str, engine: Engine) -> None:
        s = engine.state
        self.log.append((self.tag + name, s.epoch, s.step, s.global_step))

    def on_engine_start(self, engine: Engine, context: Context) -> None:
        self._rec("engine_start", engine)

    def on_epoch_start(self, engine: Engine, context: Context) -> None:
        self._rec("epoch_start", engine)

    def on_step_start(self, engine: Engine, context: Context) -> None:
        self._rec("step_start", engine)

    def on_step_end(self, engine: Engine, context: Context) -> None:
        self._rec("step_end", engine)

    def on_epoch_end(self, engine: Engine, context: Context) -> None:
        self._rec("epoch_end", engine)

    def on_engine_end(self, engine: Engine, context: Context) -> None:
        self._rec("engine_end", engine)

    def on_exception(
        self, engine: Engine, context: Context, exception: BaseException
    ) -> bool | None:
        self._rec("exception", engine)
        return None


def test_exact_event_order_two_epochs_three_steps() -> None:
    log: list[tuple[str, int, int, int]] = []
    state = Engine(noop_step, ctx(), [Recorder(log)]).loop([10, 20, 30], max_epochs=2)
    expected = [("engine_start", 0, 0, 0)]
    for epoch in (1, 2):
        expected.append(("epoch_start", epoch, 0, 3 * (epoch - 1)))
        for step in (1, 2, 3):
            g = 3 * (epoch - 1) + step
            expected += [("step_start", epoch, step, g), ("step_end", epoch, step, g)]
        expected.append(("epoch_end", epoch, 3, 3 * epoch))
    expected.append(("engine_end", 2, 3, 6))
    assert log == expected
    assert (state.epoch, state.step, state.global_step, state.max_epochs, state.epoch_length) == (
        2,
        3,
        6,
        2,
        3,
    )
    assert state.batch == 30 and state.output["batch"] == 30


def test_event_handlers_receive_engine_and_context_and_follow_callbacks() -> None:
    log: list[str] = []
    context = ctx()
    engine = Engine(noop_step, context, [Recorder([])])
    seen: list[tuple[Engine, Context]] = []
    engine.add_event_handler(Events.STEP_END, lambda e, c: seen.append((e, c)))
    engine.add_event_handler(Events.EPOCH_END, lambda e, c: log.append("handler"))

    class Late(Callback):
        priority = Priority.CHECKPOINT

        def on_epoch_end(self, engine: Engine, context: Context) -> None:
            log.append("late-callback")

    class Early(Callback):
        def on_epoch_end(self, engine: Engine, context: Context) -> None:
            log.append("early-callback")

    engine.callbacks += [Late(), Early()]
    engine.add_event_handler(Events.EPOCH_END, lambda e, c: log.append("first"), priority=-1000)
    engine.loop([1, 2])
    assert seen == [(engine, context)] * 2
    assert log == ["first", "early-callback", "handler", "late-callback"]


@pytest.mark.parametrize(
    ("event", "filtered", "expected"),
    [
        (Events.STEP_END, Events.STEP_END(every=4), [4, 8, 12]),
        (Events.STEP_START, Events.STEP_START(once=5), [5]),
        (Events.STEP_END, Events.STEP_END(filter=lambda e, n: e.state.step == 1), [1, 5, 9]),
        (Events.EPOCH_END, Events.EPOCH_END(every=2), [2]),
        (Events.EPOCH_START, Events.EPOCH_START(once=3), [3]),
        (Events.EPOCH_START, Events.EPOCH_START(filter=lambda e, n: n != 2), [1, 3]),
        (Events.ENGINE_START, Events.ENGINE_START(once=2), ["second loop"]),
        (Events.ENGINE_END, Events.ENGINE_END(every=1), ["first loop", "second loop"]),
    ],
)
def test_filters_work_for_every_event(event: Events, filtered: Any, expected: list[Any]) -> None:
    calls: list[Any] = []
    engine = Engine(noop_step, ctx())
    loop_name = ["first loop"]

    def handler(e: Engine, c: Context) -> None:
        if event in (Events.ENGINE_START, Events.ENGINE_END):
            calls.append(loop_name[0])
        elif event in (Events.EPOCH_START, Events.EPOCH_END):
            calls.append(e.state.epoch)
        else:
            calls.append(e.state.global_step)

    engine.add_event_handler(filtered, handler)
    if event in (Events.ENGINE_START, Events.ENGINE_END):
        engine.loop([1, 2])
        loop_name[0] = "second loop"
        engine.loop([1, 2])
    else:
        engine.loop([1, 2, 3, 4], max_epochs=3)
    assert calls == expected


def test_exception_event_filter_counts_exceptions() -> None:
    calls: list[int] = []

    def boom(engine: Engine, batch: Any, context: Context) -> None:
        raise RuntimeError("boom")

    engine = Engine(boom, ctx())
    engine.add_event_handler(
        Events.EXCEPTION_RAISED(every=2),
        lambda e, c, exc: calls.append(e.event_count(Events.EXCEPTION_RAISED)) or True,
    )
    with pytest.raises(RuntimeError):
        engine.loop([1])
    assert engine.loop([1]) is engine.state  # second exception: handled by the filtered handler
    assert calls == [2]


def test_event_count_is_what_filters_see_for_every_event() -> None:
    engine = Engine(noop_step, ctx())
    assert {event: engine.event_count(event) for event in Events} == dict.fromkeys(Events, 0)
    seen: dict[Events, list[int]] = {event: [] for event in Events}

    def record(event: Events) -> Any:
        def matches(e: Engine, count: int) -> bool:
            assert count == e.event_count(event)  # the filter's count is event_count()
            seen[event].append(count)
            return True

        return event(filter=matches)

    for event in Events:
        engine.add_event_handler(record(event), lambda e, c, *exc: None)
    engine.loop([1, 2], max_epochs=2)
    engine.loop([1], max_epochs=1)  # a second loop: steps and epochs restart, runs add up
    assert seen == {
        Events.STEP_START: [1, 2, 3, 4, 1],
        Events.STEP_END: [1, 2, 3, 4, 1],
        Events.EPOCH_START: [1, 2, 1],
        Events.EPOCH_END: [1, 2, 1],
        Events.ENGINE_START: [1, 2],
        Events.ENGINE_END: [1, 2],
        Events.EXCEPTION_RAISED: [],
    }
    assert engine.event_count(Events.ENGINE_END) == 2
    assert engine.event_count(Events.STEP_END) == 1 and engine.event_count(Events.EPOCH_END) == 1
    with pytest.raises(EngineError, match="event_count needs an Events member"):
        engine.event_count("step_end")  # type: ignore[arg-type]


def test_fired_count_is_a_deprecated_spelling_of_event_count() -> None:
    engine = Engine(noop_step, ctx())
    engine.loop([1, 2])
    with pytest.warns(DeprecationWarning, match=r"use Engine.event_count\(\)") as caught:
        assert engine.fired_count(Events.ENGINE_START) == 1
    assert caught[0].filename == __file__


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"every": 2, "once": 1},
        {"every": 0},
        {"once": -1},
        {"every": True},
        {"every": 1.5},
        {"filter": 3},
    ],
)
def test_bad_filters_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(EngineError, match="STEP_END"):
        Events.STEP_END(**kwargs)


def test_add_event_handler_rejects_non_events_and_non_callables() -> None:
    engine = Engine(noop_step, ctx())
    with pytest.raises(EngineError, match="Events member"):
        engine.add_event_handler("step_end", lambda e, c: None)  # type: ignore[arg-type]
    with pytest.raises(EngineError, match="callable"):
        engine.add_event_handler(Events.STEP_END, 3)  # type: ignore[arg-type]
    with pytest.raises(EngineError, match="step_fn"):
        Engine(None, ctx())  # type: ignore[arg-type]


def test_handle_removal_immediately_and_idempotent() -> None:
    calls: list[int] = []
    engine = Engine(noop_step, ctx())

    def handler(e: Engine, c: Context) -> None:
        calls.append(e.state.global_step)
        if e.state.global_step == 2:
            handle.remove()

    handle = engine.add_event_handler(Events.STEP_END, handler)
    engine.loop([1, 2, 3, 4])
    assert calls == [1, 2] and handle.removed
    handle.remove()  # second removal is a no-op
    with engine.add_event_handler(Events.STEP_START, lambda e, c: calls.append(-1)):
        engine.loop([1])
    engine.loop([1])
    assert calls == [1, 2, -1]


def test_decorator_registration() -> None:
    engine = Engine(noop_step, ctx())
    seen: list[int] = []

    @engine.on(Events.EPOCH_END(every=2))
    def record(e: Engine, c: Context) -> None:
        seen.append(e.state.epoch)

    engine.loop([1], max_epochs=4)
    assert seen == [2, 4]


def test_terminate_mid_epoch_skips_epoch_end_and_fires_engine_end() -> None:
    log: list[tuple[str, int, int, int]] = []
    engine = Engine(noop_step, ctx(), [Recorder(log)])
    engine.add_event_handler(Events.STEP_END(once=5), lambda e, c: e.terminate())
    state = engine.loop([1, 2, 3], max_epochs=3)
    names = [entry[0] for entry in log]
    assert (state.epoch, state.step, state.global_step) == (2, 2, 5)
    assert names.count("epoch_end") == 1 and names[-1] == "engine_end"
    assert names[-2] == "step_end" and engine.should_terminate
    # a fresh loop starts over and clears the termination request
    assert engine.loop([1, 2, 3]).global_step == 3


def test_terminate_at_epoch_end_and_at_epoch_start() -> None:
    engine = Engine(noop_step, ctx())
    handle = engine.add_event_handler(Events.EPOCH_END(once=2), lambda e, c: e.terminate())
    assert engine.loop([1, 2], max_epochs=5).epoch == 2
    handle.remove()
    engine.add_event_handler(Events.EPOCH_START(once=1), lambda e, c: e.terminate())
    state = engine.loop([1, 2], max_epochs=5)
    assert (state.epoch, state.global_step) == (1, 0)


def test_unhandled_exception_reaches_handlers_and_is_reraised() -> None:
    log: list[tuple[str, int, int, int]] = []
    errors: list[BaseException] = []

    def step(engine: Engine, batch: Any, context: Context) -> dict[str, Any]:
        if engine.state.global_step == 2:
            raise ValueError("bad batch")
        return {"loss": None}

    engine = Engine(step, ctx(), [Recorder(log)])
    engine.add_event_handler(Events.EXCEPTION_RAISED, lambda e, c, exc: errors.append(exc))
    with pytest.raises(ValueError, match="bad batch"):
        engine.loop([1, 2, 3])
    assert [type(e) for e in errors] == [ValueError]
    assert log[-1] == ("exception", 1, 2, 2)
    assert "engine_end" not in [entry[0] for entry in log]


def test_exception_from_a_handler_also_reaches_exception_handlers() -> None:
    seen: list[str] = []
    engine = Engine(noop_step, ctx())

    def bad(e: Engine, c: Context) -> None:
        raise KeyError("from handler")

    engine.add_event_handler(Events.EPOCH_END, bad)
    engine.add_event_handler(
        Events.EXCEPTION_RAISED, lambda e, c, exc: seen.append(type(exc).__name__)
    )
    with pytest.raises(KeyError):
        engine.loop([1])
    assert seen == ["KeyError"]


def test_handled_exception_returns_state_without_engine_end() -> None:
    log: list[tuple[str, int, int, int]] = []

    class Handles(Callback):
        def on_exception(self, engine: Engine, context: Context, exception: BaseException) -> bool:
            return isinstance(exception, RuntimeError)

    def step(engine: Engine, batch: Any, context: Context) -> dict[str, Any]:
        if batch == 2:
            raise RuntimeError("recoverable")
        return {"loss": None}

    engine = Engine(step, ctx(), [Recorder(log), Handles()])
    state = engine.loop([1, 2, 3])
    assert isinstance(state, State) and state.global_step == 2
    assert [entry[0] for entry in log][-1] == "exception"


def test_dict_outputs_are_wrapped_and_read_by_attribute() -> None:
    loss = torch.tensor(0.25)
    outputs: list[Any] = []
    engine = Engine(
        lambda e, b, c: {"loss": loss, "predictions": b, "targets": b, "extra": 1}, ctx()
    )
    engine.add_event_handler(Events.STEP_END, lambda e, c: outputs.append(e.state.output))
    engine.loop([torch.ones(2)])
    out = outputs[0]
    assert isinstance(out, DictStepOutput)
    assert out.loss is loss and out.extra == 1 and out["extra"] == 1
    assert torch.equal(out.predictions, torch.ones(2)) and set(out) == {
        "loss",
        "predictions",
        "targets",
        "extra",
    }
    assert out.metadata == dict(out) and len(out) == 4
    with pytest.raises(AttributeError, match="no key 'embeddings'"):
        _ = out.embeddings
    assert DictStepOutput({"metadata": {"lr": 0.1}}).metadata == {"lr": 0.1}
    assert DictStepOutput({}).loss is None


def test_dataclass_outputs_are_kept_as_is_and_meet_the_protocol() -> None:
    out = SupervisedStepOutput(torch.tensor(1.0), torch.zeros(2, 2), torch.zeros(2))
    state = Engine(lambda e, b, c: out, ctx()).loop([1])
    assert state.output is out and out.metadata == {}
    unsupervised = UnsupervisedStepOutput(torch.tensor(1.0), embeddings=torch.zeros(2, 4))
    for kind in (out, unsupervised, DictStepOutput({"loss": None})):
        assert isinstance(kind, StepOutput)
    assert unsupervised.reconstructions is None and unsupervised.metadata == {}


def test_ordered_dict_outputs_are_wrapped_too() -> None:
    from collections import OrderedDict

    state = Engine(lambda e, b, c: OrderedDict(loss=None, n=b), ctx()).loop([4])
    assert isinstance(state.output, DictStepOutput) and state.output.n == 4


@pytest.mark.parametrize(
    ("data", "kwargs", "match"),
    [
        ([], {}, "empty"),
        ([1], {"max_epochs": 0}, "max_epochs"),
        ([1], {"max_epochs": True}, "max_epochs"),
        ([1], {"epoch_length": 0}, "epoch_length"),
        ([1], {"epoch_length": 2.0}, "epoch_length"),
    ],
)
def test_bad_loop_arguments(data: list[int], kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(EngineError, match=match):
        Engine(noop_step, ctx()).loop(data, **kwargs)


def test_loop_is_not_reentrant() -> None:
    engine = Engine(noop_step, ctx())
    handle = engine.add_event_handler(Events.STEP_END, lambda e, c: e.loop([1]))
    with pytest.raises(EngineError, match="already running"):
        engine.loop([1])
    handle.remove()
    assert engine.loop([1]).global_step == 1  # usable again afterwards


def test_empty_generator_epoch_is_an_error() -> None:
    engine = Engine(noop_step, ctx())
    with pytest.raises(EngineError, match="no batches in epoch 2"):
        engine.loop((i for i in range(3)), max_epochs=2)


def test_epoch_length_shorter_than_data_and_shared_iterator() -> None:
    engine = Engine(noop_step, ctx())
    seen: list[int] = []
    engine.add_event_handler(Events.STEP_END, lambda e, c: seen.append(e.state.batch))
    engine.loop([1, 2, 3, 4], max_epochs=2, epoch_length=2)
    assert seen == [1, 2, 1, 2]
    seen.clear()
    engine.loop(iter(range(100)), max_epochs=3, epoch_length=2)  # one stream across epochs
    assert seen == [0, 1, 2, 3, 4, 5]


def test_unsized_iterable_learns_epoch_length() -> None:
    class Stream:
        def __iter__(self) -> Any:
            return iter([1, 2, 3])

    state = Engine(noop_step, ctx()).loop(Stream(), max_epochs=2)
    assert (state.epoch_length, state.global_step) == (3, 6)


def test_data_running_out_early_ends_the_epoch() -> None:
    state = Engine(noop_step, ctx()).loop(iter([1, 2, 3]), epoch_length=5)
    assert (state.step, state.global_step) == (3, 3)


def test_set_epoch_is_called_with_zero_based_index_before_epoch_start() -> None:
    calls: list[tuple[str, int]] = []

    class Source(list[int]):
        def set_epoch(self, epoch: int) -> None:
            calls.append(("set_epoch", epoch))

    engine = Engine(noop_step, ctx())
    engine.add_event_handler(
        Events.EPOCH_START, lambda e, c: calls.append(("epoch_start", e.state.epoch))
    )
    engine.loop(Source([1, 2]), max_epochs=2)
    assert calls == [("set_epoch", 0), ("epoch_start", 1), ("set_epoch", 1), ("epoch_start", 2)]


def test_dataloader_distributed_sampler_gets_set_epoch() -> None:
    dataset = TensorDataset(torch.arange(8))
    sampler = DistributedSampler(dataset, num_replicas=2, rank=0, shuffle=True, seed=0)
    loader = DataLoader(dataset, batch_size=2, sampler=sampler)
    engine = Engine(noop_step, ctx())
    engine.loop(loader, max_epochs=3)
    assert sampler.epoch == 2


def test_callbacks_added_between_loops_and_duck_typed_callbacks() -> None:
    class Duck:  # not a Callback subclass: met structurally
        def __init__(self) -> None:
            self.steps = 0

        def on_step_end(self, engine: Engine, context: Context) -> None:
            self.steps += 1

    engine = Engine(noop_step, ctx())
    engine.loop([1, 2])
    duck = Duck()
    engine.callbacks.append(duck)  # type: ignore[arg-type]
    engine.loop([1, 2])
    assert duck.steps == 2
    engine.callbacks.remove(duck)  # type: ignore[arg-type]
    engine.loop([1, 2])
    assert duck.steps == 2


def test_callback_added_during_an_epoch_joins_at_the_next_epoch() -> None:
    counts: list[int] = []

    class Counter(Callback):
        def on_step_end(self, engine: Engine, context: Context) -> None:
            counts.append(engine.state.global_step)

    engine = Engine(noop_step, ctx())
    engine.add_event_handler(Events.STEP_END(once=1), lambda e, c: e.callbacks.append(Counter()))
    engine.loop([1, 2], max_epochs=2)
    assert counts == [3, 4]


def test_base_callback_hooks_are_no_ops() -> None:
    cb = Callback()
    engine = Engine(noop_step, ctx(), [cb])
    assert engine.loop([1]).global_step == 1
    assert cb.on_exception(engine, engine.context, RuntimeError()) is None
    assert cb.state_key == "Callback"
