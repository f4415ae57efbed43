"""In-process: scalars.csv holds each (step, name) once, also when the per-step rows and the
epoch metrics land on the same step and when a run resumes from the last step of an epoch
(before its end-of-epoch metrics were logged)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from torch import nn

from legoml.core import (
    Context,
    Engine,
    Events,
    LRSchedulerCallback,
    MetricsCallback,
    make_supervised_train_step,
)
from legoml.metrics import MeanLoss, MultiClassAccuracy
from legoml.track import TrackingCallback, read_scalars, run

STEPS = 4  # steps an epoch
EPOCHS = 2


def _data() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(STEPS * 8, 5, generator=generator)
    y = torch.randint(0, 3, (STEPS * 8,), generator=generator)
    return [(x[i : i + 8], y[i : i + 8]) for i in range(0, STEPS * 8, 8)]


def _engine(tracker: object) -> tuple[Engine, Context]:
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)
    context = Context(model, optimizer, nn.CrossEntropyLoss(), scheduler=scheduler)
    callbacks = [
        MetricsCallback({"accuracy": MultiClassAccuracy()}, loss=MeanLoss()),
        LRSchedulerCallback(interval="step"),
        # as legoml-mnist wires it: the per-step loss apart from the epoch-mean train/loss
        TrackingCallback(tracker, log_every_n_steps=1, loss_name="train/step_loss"),  # type: ignore[arg-type]
    ]
    return Engine(make_supervised_train_step(), context, callbacks), context


def _rows(run_dir: Path) -> list[tuple[int, str, float]]:
    return [(row.step, row.name, row.value) for row in read_scalars(run_dir)]


def _uninterrupted(root: Path) -> list[tuple[int, str, float]]:
    with run("full", root=root) as tracker:
        engine, _ = _engine(tracker)
        engine.loop(_data(), max_epochs=EPOCHS)
    return _rows(tracker.dir)


def test_each_step_and_name_is_logged_once(tmp_path: Path) -> None:
    rows = _uninterrupted(tmp_path)
    counts = Counter((step, name) for step, name, _ in rows)
    assert max(counts.values()) == 1, [key for key, n in counts.items() if n > 1]
    assert {name for _, name, _ in rows} >= {"train/step_loss", "train/loss", "train/lr", "train/accuracy"}


@pytest.mark.parametrize("stop_at", [STEPS, STEPS + 1, 2 * STEPS - 1])
def test_resume_at_an_epoch_boundary_logs_each_row_once(stop_at: int, tmp_path: Path) -> None:
    expected = _uninterrupted(tmp_path / "full")
    with run("cut", root=tmp_path / "cut") as tracker:
        engine, context = _engine(tracker)
        engine.add_event_handler(Events.STEP_END(once=stop_at), lambda e, c: e.terminate())
        engine.loop(_data(), max_epochs=EPOCHS)
        saved = {"engine": engine.state_dict(), "context": context.state_dict()}
    path = tmp_path / "state.pt"
    torch.save(saved, path)
    state = torch.load(path, weights_only=True)
    with run(resume=tracker.dir, rewind_to_step=stop_at) as resumed:
        engine, context = _engine(resumed)
        context.load_state_dict(state["context"])
        engine.load_state_dict(state["engine"])
        engine.loop(_data())
    assert _rows(resumed.dir) == expected
