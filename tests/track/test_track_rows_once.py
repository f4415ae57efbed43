"""TrackingCallback writes one row per (step, name), and the lr a step used.

With the real engine and ``LRSchedulerCallback``: the scheduler steps at STEP_END/EPOCH_END
before TrackingCallback runs, so the rate read there is the next step's (or epoch's). These
runs record the rate each step really used inside the step function and compare.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Mapping
from typing import Any, Literal

import pytest
import torch

from legoml.core import (
    Context,
    Engine,
    Events,
    LRSchedulerCallback,
    Priority,
    SupervisedStepOutput,
)
from legoml.track import TrackingCallback

STEPS_PER_EPOCH = 4
EPOCHS = 2
BATCHES = [(torch.full((2, 2), float(i + 1)), torch.full((2, 1), float(i))) for i in range(4)]
Row = tuple[int, int | None, str, float]  # (step, epoch, name, value)


class Sink:
    """An in-memory ``ScalarSink``."""

    def __init__(self) -> None:
        self.rows: list[Row] = []

    def log_scalars(self, values: Mapping[str, float], step: int, epoch: int | None = None) -> None:
        self.rows.extend((step, epoch, name, float(value)) for name, value in values.items())


class Trainer:
    """A tiny model, SGD and a scheduler, with the rate each global step used."""

    def __init__(self, interval: Literal["step", "epoch"], sink: Sink, every: int) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Linear(2, 1)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.8)
        self.scheduler: torch.optim.lr_scheduler.LRScheduler
        if interval == "epoch":
            self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, 1, gamma=0.5)
        else:
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _per_step)
        self.used: dict[int, float] = {}
        self.tracking = TrackingCallback(sink, log_every_n_steps=every)
        self.engine = Engine(
            self._step,
            Context(model=self.model, optimizer=self.optimizer),
            callbacks=[LRSchedulerCallback(self.scheduler, interval), self.tracking],
        )

    def _step(self, engine: Engine, batch: Any, context: Context) -> SupervisedStepOutput:
        x, y = batch
        self.optimizer.zero_grad()
        out = self.model(x)
        loss = torch.nn.functional.mse_loss(out, y)
        loss.backward()
        self.used[engine.state.global_step] = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.step()
        return SupervisedStepOutput(
            loss=loss.detach(), predictions=out.detach(), targets=y, metadata={}
        )


def _per_step(step: int) -> float:
    return 1.0 / (step + 1)


def _expected_lr(interval: str, global_step: int) -> float:
    """The schedule: StepLR halves per epoch; LambdaLR gives 0.8 / n to the n-th step."""
    if interval == "epoch":
        return 0.8 * 0.5 ** ((global_step - 1) // STEPS_PER_EPOCH)
    return 0.8 / global_step


def _lr_rows(rows: list[Row]) -> list[tuple[int, float]]:
    return [(step, value) for step, _, name, value in rows if name == "train/lr"]


def _assert_once(rows: list[Row]) -> None:
    repeats = [key for key, n in Counter((r[0], r[2]) for r in rows).items() if n > 1]
    assert repeats == [], f"(step, name) written more than once: {repeats}"


def _train(interval: Literal["step", "epoch"], every: int) -> tuple[Trainer, Sink]:
    sink = Sink()
    trainer = Trainer(interval, sink, every)
    trainer.engine.loop(BATCHES, max_epochs=EPOCHS)
    return trainer, sink


def test_a_step_row_on_the_epochs_last_step_with_an_epoch_scheduler() -> None:
    """Step interval 2 meets the epoch end at steps 4 and 8: one train/lr there, the rate
    the step used (it was 0.8 then 0.4 in the step row, 0.4 then 0.2 in the epoch row)."""
    trainer, sink = _train("epoch", every=2)
    _assert_once(sink.rows)
    assert _lr_rows(sink.rows) == [(2, 0.8), (4, 0.8), (6, 0.4), (8, 0.4)]
    assert all(trainer.used[step] == lr for step, lr in _lr_rows(sink.rows))


def test_the_epoch_row_has_the_last_steps_rate_not_the_next_epochs() -> None:
    trainer, sink = _train("epoch", every=3)
    _assert_once(sink.rows)
    assert _lr_rows(sink.rows) == [(3, 0.8), (4, 0.8), (6, 0.4), (8, 0.4)]
    epoch_rows = [(r[0], r[3]) for r in sink.rows if r[2] == "train/lr" and r[0] % 4 == 0]
    assert epoch_rows == [(4, trainer.used[4]), (8, trainer.used[8])]


@pytest.mark.parametrize("every", [1, 3])
def test_a_per_step_scheduler_logs_the_rate_each_step_used(every: int) -> None:
    trainer, sink = _train("step", every=every)
    _assert_once(sink.rows)
    logged = _lr_rows(sink.rows)
    steps = sorted({s for s in range(1, 9) if s % every == 0} | {4, 8})
    assert [step for step, _ in logged] == steps
    for step, lr in logged:
        assert lr == pytest.approx(_expected_lr("step", step), rel=1e-12)
        assert lr == trainer.used[step]


def _resumed(
    interval: Literal["step", "epoch"], every: int, stop_at: int
) -> tuple[list[Row], Trainer]:
    """Rows of a run stopped after ``stop_at`` and resumed by a fresh process."""
    first = Sink()
    trainer = Trainer(interval, first, every)
    saved: dict[str, Any] = {}

    def stop(engine: Engine, context: Context) -> None:  # a checkpoint, then a crash
        if engine.state.global_step == stop_at:
            saved["engine"] = copy.deepcopy(engine.state_dict())
            saved["model"] = copy.deepcopy(trainer.model.state_dict())
            saved["optimizer"] = copy.deepcopy(trainer.optimizer.state_dict())
            engine.terminate()

    trainer.engine.add_event_handler(Events.STEP_END, stop, priority=Priority.CHECKPOINT)
    trainer.engine.loop(BATCHES, max_epochs=EPOCHS)
    assert trainer.engine.state.global_step == stop_at

    second = Sink()
    fresh = Trainer(interval, second, every)
    fresh.model.load_state_dict(saved["model"])
    fresh.optimizer.load_state_dict(saved["optimizer"])  # after the scheduler reset the lr
    fresh.engine.load_state_dict(saved["engine"])
    fresh.engine.loop(BATCHES)
    assert fresh.engine.state.global_step == STEPS_PER_EPOCH * EPOCHS
    fresh.used = {**trainer.used, **fresh.used}
    return first.rows + second.rows, fresh


@pytest.mark.parametrize(
    ("interval", "every", "stop_at"),
    [("step", 2, 3), ("epoch", 3, 4), ("epoch", 2, 4), ("step", 3, 6)],
)
def test_a_resumed_run_writes_the_same_rows_once(
    interval: Literal["step", "epoch"], every: int, stop_at: int
) -> None:
    """Stopped mid-epoch or on an epoch's last step (before its EPOCH_END), resumed with a
    fresh TrackingCallback that loads its state: the rows of one uninterrupted run."""
    _, whole = _train(interval, every)
    rows, trainer = _resumed(interval, every, stop_at)
    _assert_once(rows)
    assert _lr_rows(rows) == _lr_rows(whole.rows)
    for step, lr in _lr_rows(rows):
        assert lr == trainer.used[step]
        assert lr == pytest.approx(_expected_lr(interval, step), rel=1e-12)
    untimed = [r for r in rows if not r[2].startswith("time/")]
    assert untimed == [r for r in whole.rows if not r[2].startswith("time/")]


def test_the_step_row_value_is_kept_when_the_epoch_end_repeats_a_name() -> None:
    """Any repeat of a (step, name) already written at that step is dropped, first value kept."""
    sink = Sink()
    trainer = Trainer("epoch", sink, every=4)

    def clash(engine: Engine, context: Context) -> None:
        engine.state.metrics["train/step_loss"] = -1.0  # a name the step row already has

    trainer.engine.add_event_handler(Events.EPOCH_END, clash, priority=0)
    trainer.engine.loop(BATCHES, max_epochs=EPOCHS)
    _assert_once(sink.rows)
    losses = [r[3] for r in sink.rows if r[2] == "train/step_loss"]
    assert len(losses) == 2 and -1.0 not in losses
