"""Exact resume: stop mid-epoch, save to disk, reload into fresh objects, finish bit-identically."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from core_helpers import Accuracy, DropoutNet, MeanLoss, ResumableBatches, toy_data, train_step
from torch.utils.data import DataLoader, TensorDataset

from legoml.core import (
    Callback,
    CheckpointCallback,
    Context,
    EarlyStopping,
    Engine,
    Events,
    LRSchedulerCallback,
    MetricsCallback,
    ResumeError,
)

EPOCHS = 3
BATCH = 8  # 40 examples -> 5 steps per epoch


def make_source(kind: str) -> Any:
    x, y = toy_data(n=40)
    if kind == "resumable":
        return ResumableBatches(x, y, BATCH, seed=3)
    if kind == "list":
        return [(x[i : i + BATCH], y[i : i + BATCH]) for i in range(0, 40, BATCH)]
    if kind == "dataloader":  # shuffles from the global torch RNG at every iter()
        return DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True)
    raise AssertionError(kind)


class RandomTouch(Callback):
    """Consumes Python's RNG at each step so its state has to be restored too."""

    def __init__(self) -> None:
        self.draws: list[float] = []

    def on_step_end(self, engine: Engine, context: Context) -> None:
        self.draws.append(random.random())


def build(seed: int) -> tuple[Engine, Context]:
    torch.manual_seed(seed)
    random.seed(seed)
    model = DropoutNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    context = Context(model, optimizer, scheduler=scheduler)
    callbacks = [
        MetricsCallback([Accuracy()], loss=MeanLoss()),
        LRSchedulerCallback(interval="epoch"),
        RandomTouch(),
        EarlyStopping("train/loss", patience=50),
    ]
    return Engine(train_step, context, callbacks), context


def params(context: Context) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in context.model.state_dict().items()}


def run_uninterrupted(kind: str) -> tuple[dict[str, torch.Tensor], Engine]:
    engine, context = build(seed=0)
    engine.loop(make_source(kind), max_epochs=EPOCHS)
    return params(context), engine


def run_interrupted(
    kind: str, stop_at: int, tmp_path: Path
) -> tuple[dict[str, torch.Tensor], Engine, Any]:
    engine, context = build(seed=0)
    engine.add_event_handler(Events.STEP_END(once=stop_at), lambda e, c: e.terminate())
    engine.loop(make_source(kind), max_epochs=EPOCHS)
    assert engine.state.global_step == stop_at
    path = tmp_path / "state.pt"
    torch.save({"engine": engine.state_dict(), "context": context.state_dict()}, path)
    saved = torch.load(path, weights_only=True)

    fresh, fresh_context = build(
        seed=1234
    )  # different init and RNG: everything must come from the file
    torch.rand(17)
    random.random()
    fresh_context.load_state_dict(saved["context"])
    fresh.load_state_dict(saved["engine"])
    assert fresh.state.global_step == stop_at
    source = make_source(kind)
    fresh.loop(source)  # max_epochs comes from the saved state
    return params(fresh_context), fresh, source


@pytest.mark.parametrize("kind", ["resumable", "list", "dataloader"])
@pytest.mark.parametrize("stop_at", [7, 5, 10, 1])
def test_resume_is_bit_identical(kind: str, stop_at: int, tmp_path: Path) -> None:
    expected, full = run_uninterrupted(kind)
    got, resumed, source = run_interrupted(kind, stop_at, tmp_path)
    assert resumed.state.global_step == full.state.global_step == 15
    assert resumed.state.epoch == EPOCHS
    for name, tensor in expected.items():
        assert torch.equal(got[name], tensor), name
    assert resumed.context.optimizer is not None and full.context.optimizer is not None
    assert (
        resumed.context.optimizer.param_groups[0]["lr"]
        == full.context.optimizer.param_groups[0]["lr"]
    )
    full_draws = full.callbacks[2].draws  # type: ignore[attr-defined]
    resumed_draws = resumed.callbacks[2].draws  # type: ignore[attr-defined]
    assert resumed_draws == full_draws[stop_at:]
    if kind == "resumable":
        # the resumed epoch started at the saved position: no batch was replayed
        assert source.iterated_from[0] == stop_at % 5


def test_resume_mid_epoch_reports_the_right_positions(tmp_path: Path) -> None:
    _, resumed, _ = run_interrupted("resumable", 7, tmp_path)
    assert resumed.state.metrics["train/lr"] == pytest.approx(0.01 * 0.7**3)


def test_state_dict_is_weights_only_safe_and_small(tmp_path: Path) -> None:
    engine, context = build(seed=0)
    engine.callbacks.append(
        CheckpointCallback(tmp_path, every_n_epochs=1, best_metric="train/accuracy")
    )
    engine.loop(make_source("dataloader"), max_epochs=1)
    state = engine.state_dict()
    path = tmp_path / "engine.pt"
    torch.save(state, path)
    loaded = torch.load(path, weights_only=True)
    assert set(loaded) == {
        "version",
        "epoch",
        "step",
        "global_step",
        "max_epochs",
        "max_steps",
        "epoch_length",
        "epoch_complete",
        "metrics",
        "rng",
        "epoch_rng",
        "data",
        "callbacks",
    }
    assert loaded["epoch_complete"] is True and loaded["epoch_rng"] is None
    assert set(loaded["callbacks"]) == {
        "EarlyStopping",
        "CheckpointCallback",
        "LRSchedulerCallback",
        "MetricsCallback",
    }
    assert isinstance(loaded["rng"]["torch"], torch.Tensor)


def test_duplicate_callbacks_get_stable_distinct_keys() -> None:
    first, second = EarlyStopping("a"), EarlyStopping("b")
    second.wait = 2
    engine = Engine(train_step, Context(torch.nn.Identity()), [first, second])
    keys = engine.state_dict()["callbacks"]
    assert (
        set(keys) == {"EarlyStopping", "EarlyStopping#1"} and keys["EarlyStopping#1"]["wait"] == 2
    )

    class Keyed(Callback):
        state_key = "custom"  # type: ignore[assignment]

        def state_dict(self) -> dict[str, int]:
            return {"x": 1}

        def load_state_dict(self, state: dict[str, int]) -> None:
            self.loaded = state

    keyed = Keyed()
    engine = Engine(lambda e, b, c: {"loss": None}, Context(torch.nn.Identity()), [keyed])
    sd = engine.state_dict()
    assert sd["callbacks"] == {"custom": {"x": 1}}
    engine.load_state_dict(sd)
    engine.loop([1])
    assert keyed.loaded == {"x": 1}


def test_resume_from_a_checkpoint_file_written_by_the_callback(tmp_path: Path) -> None:
    expected, _ = run_uninterrupted("resumable")
    engine, context = build(seed=0)
    engine.callbacks.append(
        CheckpointCallback(tmp_path, every_n_steps=4, every_n_epochs=None, keep_last=2)
    )
    engine.add_event_handler(Events.STEP_END(once=9), lambda e, c: e.terminate())
    engine.loop(make_source("resumable"), max_epochs=EPOCHS)
    ckpt = torch.load(tmp_path / "step-00000008.pt", weights_only=True)
    assert ckpt["global_step"] == 8 and ckpt["epoch"] == 2

    fresh, fresh_context = build(seed=99)
    fresh.callbacks.append(
        CheckpointCallback(tmp_path, every_n_steps=4, every_n_epochs=None, keep_last=2)
    )
    fresh_context.load_state_dict(ckpt["context"])
    fresh.load_state_dict(ckpt["engine"])
    fresh.loop(make_source("resumable"))
    assert all(torch.equal(params(fresh_context)[k], v) for k, v in expected.items())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000008.pt", "step-00000012.pt"]


def test_resuming_a_finished_run_runs_nothing_more_unless_extended() -> None:
    engine, context = build(seed=0)
    engine.loop(make_source("list"), max_epochs=1)
    state = engine.state_dict()
    steps: list[int] = []
    fresh, _ = build(seed=0)
    fresh.add_event_handler(Events.STEP_END, lambda e, c: steps.append(e.state.global_step))
    fresh.load_state_dict(state)
    fresh.loop(make_source("list"))
    assert steps == []
    fresh.load_state_dict(state)
    fresh.loop(make_source("list"), max_epochs=2)  # extend the run by one epoch
    assert steps == [6, 7, 8, 9, 10] and fresh.state.epoch == 2


def corrupt(key: str, value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def apply(state: dict[str, Any]) -> dict[str, Any]:
        state = dict(state)
        if value is KeyError:
            del state[key]
        else:
            state[key] = value
        return state

    return apply


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (corrupt("version", 99), "version"),
        (corrupt("step", -1), "'step'"),
        (corrupt("epoch", "2"), "'epoch'"),
        (corrupt("global_step", KeyError), "'global_step'"),
        (corrupt("epoch_length", 0), "epoch_length"),
        (corrupt("epoch_complete", None), "epoch_complete"),
        (corrupt("rng", None), "'rng'"),
        (corrupt("callbacks", []), "'callbacks'"),
    ],
)
def test_bad_engine_state_is_refused(
    change: Callable[[dict[str, Any]], dict[str, Any]], match: str
) -> None:
    engine, _ = build(seed=0)
    good = engine.state_dict()
    with pytest.raises(ResumeError, match=match):
        engine.load_state_dict(change(good))
    with pytest.raises(ResumeError, match="mapping"):
        engine.load_state_dict([1, 2])  # type: ignore[arg-type]


def test_resume_with_shorter_data_is_refused(tmp_path: Path) -> None:
    engine, _ = build(seed=0)
    engine.add_event_handler(Events.STEP_END(once=4), lambda e, c: e.terminate())
    engine.loop(make_source("list"), max_epochs=2)
    fresh, _ = build(seed=0)
    fresh.load_state_dict(engine.state_dict())
    with pytest.raises(ResumeError, match="step 4 of epoch 1"):
        fresh.loop(make_source("list")[:2])


def test_context_state_skips_what_an_eval_context_lacks() -> None:
    engine, context = build(seed=0)
    engine.loop(make_source("list"))
    eval_context = Context(DropoutNet())
    eval_context.load_state_dict(context.state_dict())
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            eval_context.model.state_dict().values(),
            context.model.state_dict().values(),
            strict=True,
        )
    )
    with pytest.raises(ResumeError, match="'model'"):
        eval_context.load_state_dict({"optimizer": {}})
