"""loop(max_steps=...): exact global step limits, the partial last epoch, and resume."""

from __future__ import annotations

import io
import itertools
import random
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from core_helpers import DropoutNet, ResumableBatches, toy_data, train_step
from torch.utils.data import DataLoader, TensorDataset

from legoml.core import (
    CheckpointCallback,
    Context,
    EarlyStopping,
    Engine,
    EvalOnEpochEndCallback,
    Events,
    LRSchedulerCallback,
    MetricsCallback,
    ProgressBarCallback,
    ResumeError,
    State,
    TimerCallback,
    make_supervised_train_step,
)
from legoml.core.errors import EngineError

BATCH = 8  # 40 examples -> 5 steps per epoch
EVENTS = (
    Events.ENGINE_START,
    Events.EPOCH_START,
    Events.STEP_END,
    Events.EPOCH_END,
    Events.ENGINE_END,
)


def noop_step(engine: Engine, batch: Any, context: Context) -> dict[str, Any]:
    return {"loss": None, "predictions": batch, "targets": batch}


def record(engine: Engine) -> list[tuple[str, int, int, int]]:
    """(event, epoch, step, global_step) for the main events, in firing order."""
    log: list[tuple[str, int, int, int]] = []
    for event in EVENTS:

        def handler(e: Engine, c: Context, name: str = event.name) -> None:
            log.append((name, e.state.epoch, e.state.step, e.state.global_step))

        engine.add_event_handler(event, handler)
    return log


def epoch_ends(log: list[tuple[str, int, int, int]]) -> list[tuple[int, int, int]]:
    return [entry[1:] for entry in log if entry[0] == "EPOCH_END"]


class Count:
    """How many items were seen since the last reset."""

    def reset(self) -> None:
        self.n = 0

    def update(self, predictions: Any, targets: torch.Tensor) -> None:
        self.n += len(targets)

    def compute(self) -> int:
        return self.n


# --------------------------------------------------------------------- the loop


def test_limit_inside_an_epoch_ends_that_epoch_there() -> None:
    engine = Engine(noop_step, Context(torch.nn.Identity()))
    log = record(engine)
    state = engine.loop([1, 2, 3], max_epochs=10, max_steps=5)
    assert (state.epoch, state.step, state.global_step, state.max_steps) == (2, 2, 5, 5)
    assert epoch_ends(log) == [(1, 3, 3), (2, 2, 5)]
    assert [entry[0] for entry in log[-2:]] == ["EPOCH_END", "ENGINE_END"]
    assert state.epoch_length == 3  # the cut epoch does not shorten the data's length


def test_limit_on_an_epoch_boundary_starts_no_extra_epoch() -> None:
    engine = Engine(noop_step, Context(torch.nn.Identity()))
    log = record(engine)
    state = engine.loop([1, 2, 3], max_epochs=10, max_steps=6)
    assert (state.epoch, state.step, state.global_step) == (2, 3, 6)
    assert [entry[0] for entry in log].count("EPOCH_START") == 2
    assert epoch_ends(log) == [(1, 3, 3), (2, 3, 6)]


def test_max_epochs_still_wins_when_it_comes_first() -> None:
    state = Engine(noop_step, Context(torch.nn.Identity())).loop([1, 2], max_epochs=2, max_steps=9)
    assert (state.epoch, state.global_step) == (2, 4)


def test_max_steps_alone_runs_as_many_epochs_as_needed() -> None:
    engine = Engine(noop_step, Context(torch.nn.Identity()))
    log = record(engine)
    state = engine.loop([1, 2], max_steps=7)
    assert state.max_epochs is None
    assert (state.epoch, state.step, state.global_step) == (4, 1, 7)
    assert epoch_ends(log)[-1] == (4, 1, 7)


def test_max_steps_on_unsized_and_endless_data() -> None:
    engine = Engine(noop_step, Context(torch.nn.Identity()))
    log = record(engine)
    state = engine.loop(itertools.count(), max_steps=5)  # one endless epoch, cut at 5
    assert (state.epoch, state.global_step, state.epoch_length) == (1, 5, None)
    assert epoch_ends(log) == [(1, 5, 5)]
    seen: list[int] = []
    engine.add_event_handler(Events.STEP_END, lambda e, c: seen.append(e.state.batch))
    state = engine.loop(itertools.count(), epoch_length=3, max_steps=7)
    assert (state.epoch, state.step, state.global_step) == (3, 1, 7) and seen == list(range(7))


@pytest.mark.parametrize("bad", [0, -1, True, 2.0, "3"])
def test_bad_max_steps_is_refused(bad: Any) -> None:
    with pytest.raises(EngineError, match=r"loop\(max_steps=\.\.\.\) must be an int >= 1"):
        Engine(noop_step, Context(torch.nn.Identity())).loop([1], max_steps=bad)


def test_metrics_of_the_partial_epoch_cover_its_steps() -> None:
    data = [torch.zeros(4)] * 5
    engine = Engine(noop_step, Context(torch.nn.Identity()), [MetricsCallback({"seen": Count()})])
    per_epoch: list[float] = []
    engine.add_event_handler(
        Events.EPOCH_END, lambda e, c: per_epoch.append(e.state.metrics["train/seen"])
    )
    engine.loop(data, max_steps=7)
    assert per_epoch == [20.0, 8.0]


def test_terminate_at_the_last_step_still_skips_epoch_end() -> None:
    engine = Engine(noop_step, Context(torch.nn.Identity()))
    log = record(engine)
    engine.add_event_handler(Events.STEP_END(once=5), lambda e, c: e.terminate())
    engine.loop([1, 2, 3], max_steps=5)
    assert epoch_ends(log) == [(1, 3, 3)] and log[-1][0] == "ENGINE_END"


def test_state_helpers_place_the_epoch_end() -> None:
    state = State(epoch=1, step=0, global_step=0, epoch_length=5, max_epochs=None, max_steps=12)
    assert state.epoch_end_step() == 5 and not state.is_last_epoch()
    state = State(epoch=3, step=1, global_step=11, epoch_length=5, max_epochs=None, max_steps=12)
    assert state.epoch_end_step() == 2 and state.is_last_epoch()
    unknown = State(epoch=1, step=2, global_step=2, max_epochs=None, max_steps=4)
    assert unknown.epoch_end_step() == 4 and not unknown.is_last_epoch()
    assert State(epoch=1, max_epochs=1).is_last_epoch()
    assert State(epoch_length=5).epoch_end_step() == 5 and State().epoch_end_step() is None


def test_grad_accumulation_window_closes_at_max_steps() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 3)
    big = torch.nn.Linear(8, 3)
    big.load_state_dict(model.state_dict())
    x, y = toy_data(n=48)
    batches = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 48, 8)]
    big_opt = torch.optim.SGD(big.parameters(), lr=0.1)
    F.cross_entropy(big(x[:24]), y[:24]).backward()  # the 3 steps before max_steps, as one
    big_opt.step()
    context = Context(model, torch.optim.SGD(model.parameters(), lr=0.1), F.cross_entropy)
    Engine(make_supervised_train_step(grad_accum_steps=4), context).loop(batches, max_steps=3)
    torch.testing.assert_close(model.weight, big.weight, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------- state and resume


def make_source(kind: str) -> Any:
    x, y = toy_data(n=40)
    if kind == "resumable":
        return ResumableBatches(x, y, BATCH, seed=3)
    if kind == "list":
        return [(x[i : i + BATCH], y[i : i + BATCH]) for i in range(0, 40, BATCH)]
    if kind == "dataloader":  # shuffles from the global torch RNG at every iter()
        return DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True)
    raise AssertionError(kind)


def build(seed: int) -> tuple[Engine, Context]:
    torch.manual_seed(seed)
    random.seed(seed)
    model = DropoutNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    context = Context(model, optimizer, scheduler=scheduler)
    engine = Engine(train_step, context, [LRSchedulerCallback(interval="epoch")])
    return engine, context


def params(context: Context) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in context.model.state_dict().items()}


def reload(state: dict[str, Any], tmp_path: Path) -> tuple[Engine, Context]:
    """A fresh Engine + Context (other seed) loaded from ``state`` through a file."""
    path = tmp_path / "state.pt"
    torch.save(state, path)
    saved = torch.load(path, weights_only=True)
    engine, context = build(seed=1234)
    context.load_state_dict(saved["context"])
    engine.load_state_dict(saved["engine"])
    return engine, context


@pytest.mark.parametrize("kind", ["resumable", "list", "dataloader"])
@pytest.mark.parametrize("stop_at", [3, 7, 11])
def test_killed_mid_epoch_and_resumed_stops_at_exactly_max_steps(
    kind: str, stop_at: int, tmp_path: Path
) -> None:
    full, full_context = build(seed=0)
    full.loop(make_source(kind), max_steps=12)  # epochs of 5, 5 and 2 steps
    assert (full.state.epoch, full.state.global_step) == (3, 12)

    engine, context = build(seed=0)
    engine.add_event_handler(Events.STEP_END(once=stop_at), lambda e, c: e.terminate())
    engine.loop(make_source(kind), max_steps=12)
    state = {"engine": engine.state_dict(), "context": context.state_dict()}
    assert state["engine"]["max_steps"] == 12 and state["engine"]["max_epochs"] is None

    resumed, resumed_context = reload(state, tmp_path)
    steps: list[int] = []
    resumed.add_event_handler(Events.STEP_END, lambda e, c: steps.append(e.state.global_step))
    resumed.loop(make_source(kind))  # max_steps (and no epoch limit) from the state
    assert steps == list(range(stop_at + 1, 13))
    assert (resumed.state.epoch, resumed.state.step, resumed.state.global_step) == (3, 2, 12)
    expected = params(full_context)
    assert all(torch.equal(params(resumed_context)[k], v) for k, v in expected.items())
    assert resumed_context.optimizer is not None and full_context.optimizer is not None
    lr = resumed_context.optimizer.param_groups[0]["lr"]
    assert lr == full_context.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 0.7**3)


@pytest.mark.parametrize("kind", ["resumable", "list"])
@pytest.mark.parametrize("when", ["mid_epoch", "after_epoch_end"])
def test_resumed_run_already_at_max_steps_trains_nothing(
    kind: str, when: str, tmp_path: Path
) -> None:
    engine, context = build(seed=0)
    if when == "mid_epoch":  # saved at the last step, before the partial epoch's end
        engine.add_event_handler(Events.STEP_END(once=7), lambda e, c: e.terminate())
    engine.loop(make_source(kind), max_steps=7)
    saved = {"engine": engine.state_dict(), "context": context.state_dict()}
    assert saved["engine"]["epoch_complete"] is (when == "after_epoch_end")

    resumed, resumed_context = reload(saved, tmp_path)
    before = params(resumed_context)
    log = record(resumed)
    source = make_source(kind)
    state = resumed.loop(source)
    assert [entry[0] for entry in log] == ["ENGINE_START", "ENGINE_END"]
    assert (state.epoch, state.step, state.global_step) == (2, 2, 7)
    assert all(torch.equal(params(resumed_context)[k], v) for k, v in before.items())
    if kind == "resumable":
        assert source.iterated_from == []  # not even replayed
    # Saving the no-op run again keeps the position (a finished epoch's data state does
    # not matter: the next epoch starts from set_epoch()).
    again, first = resumed.state_dict(), saved["engine"]
    for key in ("epoch", "step", "global_step", "epoch_complete", "max_steps"):
        assert again[key] == first[key], key
    if when == "mid_epoch":
        assert again["data"] == first["data"]
        if first["epoch_rng"] is not None:
            assert torch.equal(again["epoch_rng"]["torch"], first["epoch_rng"]["torch"])
        assert (again["epoch_rng"] is None) == (first["epoch_rng"] is None)


def test_extending_max_steps_after_a_partial_last_epoch_starts_a_new_epoch(
    tmp_path: Path,
) -> None:
    engine, context = build(seed=0)
    engine.loop(make_source("list"), max_steps=7)
    resumed, _ = reload({"engine": engine.state_dict(), "context": context.state_dict()}, tmp_path)
    log = record(resumed)
    state = resumed.loop(make_source("list"), max_steps=10)
    assert (state.epoch, state.step, state.global_step, state.max_steps) == (3, 3, 10, 10)
    assert epoch_ends(log) == [(3, 3, 10)]


def test_states_without_max_steps_still_load_and_bad_ones_are_refused() -> None:
    engine, _ = build(seed=0)
    engine.loop(make_source("list"), max_epochs=1)
    old = engine.state_dict()
    del old["max_steps"]  # written before max_steps existed
    fresh, _ = build(seed=0)
    fresh.load_state_dict(old)
    assert fresh.state.max_steps is None
    state = fresh.loop(make_source("list"), max_epochs=2)
    assert (state.epoch, state.global_step, state.max_steps) == (2, 10, None)
    fresh.load_state_dict(old)
    assert fresh.loop(make_source("list"), max_steps=7).global_step == 5  # max_epochs=1 kept
    for key, value, match in [
        ("max_steps", 0, "'max_steps' must be None or an int >= 1"),
        ("max_steps", "5", "'max_steps'"),
        ("max_epochs", -1, "'max_epochs' must be None or an int >= 0"),
    ]:
        with pytest.raises(ResumeError, match=match):
            fresh.load_state_dict({**old, key: value})
    missing = dict(old)
    del missing["max_epochs"]
    with pytest.raises(ResumeError, match="no 'max_epochs'"):
        fresh.load_state_dict(missing)


# --------------------------------------------------------------------- callbacks


def test_checkpoint_callback_saves_the_partial_epoch_and_its_resume_trains_nothing(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "ckpt"
    engine, context = build(seed=0)
    engine.callbacks.append(MetricsCallback({"seen": Count()}))
    engine.callbacks.append(
        CheckpointCallback(
            folder, every_n_epochs=1, keep_last=None, best_metric="train/seen", mode="min"
        )
    )
    engine.loop(make_source("list"), max_steps=7)
    assert sorted(p.name for p in folder.iterdir()) == [
        "best.pt",
        "step-00000005.pt",
        "step-00000007.pt",
    ]
    last = torch.load(folder / "step-00000007.pt", weights_only=True)
    assert (last["epoch"], last["global_step"], last["metrics"]["train/seen"]) == (2, 7, 16.0)
    assert last["engine"]["epoch_complete"] is True and last["engine"]["max_steps"] == 7
    best = torch.load(folder / "best.pt", weights_only=True)
    assert best["global_step"] == 7  # the partial epoch saw fewer items: "better" in min mode

    fresh, fresh_context = build(seed=5)
    fresh.callbacks.append(CheckpointCallback(folder, every_n_epochs=1, keep_last=None))
    fresh_context.load_state_dict(last["context"])
    fresh.load_state_dict(last["engine"])
    log = record(fresh)
    fresh.loop(make_source("list"))
    assert [entry[0] for entry in log] == ["ENGINE_START", "ENGINE_END"]
    assert len(list(folder.iterdir())) == 3  # nothing new written
    assert all(torch.equal(params(fresh_context)[k], v) for k, v in params(context).items())


def test_step_and_epoch_checkpoints_at_the_same_last_step_keep_one_file(tmp_path: Path) -> None:
    engine, _ = build(seed=0)
    saver = CheckpointCallback(tmp_path, every_n_steps=7, every_n_epochs=1, keep_last=None)
    engine.callbacks.append(saver)
    engine.loop(make_source("list"), max_steps=7)
    assert saver.saved == ["step-00000005.pt", "step-00000007.pt"]
    last = torch.load(tmp_path / "step-00000007.pt", weights_only=True)
    assert last["engine"]["epoch_complete"] is True  # the EPOCH_END save replaced the step one


def test_step_checkpoints_resume_from_inside_the_partial_epoch(tmp_path: Path) -> None:
    full, full_context = build(seed=0)
    full.loop(make_source("resumable"), max_steps=8)
    folder = tmp_path / "ckpt"
    engine, _ = build(seed=0)
    engine.callbacks.append(CheckpointCallback(folder, every_n_steps=3, every_n_epochs=None))
    engine.loop(make_source("resumable"), max_steps=8)
    assert sorted(p.name for p in folder.iterdir()) == ["step-00000003.pt", "step-00000006.pt"]
    ckpt = torch.load(folder / "step-00000006.pt", weights_only=True)
    fresh, fresh_context = build(seed=7)
    fresh_context.load_state_dict(ckpt["context"])
    fresh.load_state_dict(ckpt["engine"])
    assert fresh.loop(make_source("resumable")).global_step == 8
    expected = params(full_context)
    assert all(torch.equal(params(fresh_context)[k], v) for k, v in expected.items())


def test_other_callbacks_on_a_partial_last_epoch() -> None:
    engine, context = build(seed=0)
    evaluated: list[int] = []
    evaluator = Engine(noop_step, Context(torch.nn.Identity()))
    evaluator.add_event_handler(Events.ENGINE_START, lambda e, c: evaluated.append(1))
    bar_text = io.StringIO()
    engine.callbacks += [
        EvalOnEpochEndCallback(evaluator, [torch.zeros(2)], every_n_epochs=5),
        EarlyStopping("train/lr", mode="max", patience=1),
        TimerCallback(),
        ProgressBarCallback(file=bar_text, refresh_every=1),
    ]
    epochs: list[int] = []
    engine.add_event_handler(Events.EPOCH_END, lambda e, c: epochs.append(e.state.epoch))
    state = engine.loop(make_source("list"), max_steps=7)
    assert evaluated == [1]  # eval_last: the cut epoch is the last one
    assert context.optimizer is not None  # StepLR stepped at both epoch ends, the cut one too
    assert context.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 0.7**2)
    assert epochs == [1, 2] and state.global_step == 7  # early stopping at the end is harmless
    assert state.timings["steps_per_s"] > 0 and state.timings["step"] > 0
    text = bar_text.getvalue()
    assert "epoch 2: 100%" in text and "2/2" in text  # the last bar ends at the limit
