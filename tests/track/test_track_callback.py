"""TrackingCallback against a fake engine (the agreed interface) and, when present, the real one."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from legoml.track import TrackingCallback, read_scalars, run


def _engine(global_step: int = 0, epoch: int = 1, loss: Any = None, **metrics: float) -> Any:
    output = SimpleNamespace(loss=loss)
    state = SimpleNamespace(
        global_step=global_step, epoch=epoch, output=output, metrics=dict(metrics), timings={}
    )
    return SimpleNamespace(state=state)


def _context(lr: float | None = 0.1) -> Any:
    if lr is None:
        return SimpleNamespace(optimizer=None)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    return SimpleNamespace(optimizer=optimizer)


def _drive(callback: TrackingCallback, steps: int, steps_per_epoch: int) -> None:
    """What an engine does: step hooks every step, epoch hook at each epoch end."""
    context = _context()
    engine = _engine()
    for global_step in range(1, steps + 1):
        engine.state.global_step = global_step
        engine.state.epoch = (global_step - 1) // steps_per_epoch + 1
        engine.state.output = SimpleNamespace(loss=torch.tensor(1.0 / global_step))
        callback.on_step_end(engine, context)
        if global_step % steps_per_epoch == 0:
            engine.state.metrics = {"train/accuracy": global_step / steps, "val/loss": 0.5}
            callback.on_epoch_end(engine, context)


def test_logs_loss_every_n_steps_and_metrics_per_epoch(tmp_path: Path) -> None:
    with run(root=tmp_path) as r:
        _drive(TrackingCallback(r, log_every_n_steps=5), steps=20, steps_per_epoch=10)
    rows = read_scalars(r.dir)
    losses = [(row.step, row.epoch, row.value) for row in rows if row.name == "train/step_loss"]
    assert losses == [
        (5, 1, pytest.approx(0.2)),
        (10, 1, pytest.approx(0.1)),
        (15, 2, pytest.approx(1 / 15)),
        (20, 2, pytest.approx(0.05)),
    ]
    assert [row.step for row in rows if row.name == "train/lr"] == [5, 10, 15, 20]
    epoch_rows = [(row.step, row.epoch, row.name, row.value) for row in rows if row.step % 10 == 0]
    assert (10, 1, "train/accuracy", 0.5) in epoch_rows
    assert (20, 2, "train/accuracy", 1.0) in epoch_rows
    assert (20, 2, "val/loss", 0.5) in epoch_rows


def test_options_and_odd_values(tmp_path: Path) -> None:
    with run(root=tmp_path) as r:
        callback = TrackingCallback(
            r, log_every_n_steps=0, lr_name=None, log_timings=True, loss_name="loss"
        )
        engine = _engine(global_step=3, epoch=2, loss=torch.tensor(0.3), acc=torch.tensor(0.75))
        engine.state.metrics["confusion"] = torch.zeros(3, 3)  # not a scalar: skipped
        engine.state.metrics["flag"] = True  # not a number: skipped
        engine.state.timings = {"epoch": 1.5}
        callback.on_step_end(engine, _context())  # every=0: never per step
        callback.on_epoch_end(engine, _context())
        dict_output = _engine(global_step=4, epoch=2)
        dict_output.state.output = {"loss": 0.25}
        TrackingCallback(r, log_every_n_steps=2).on_step_end(dict_output, _context(lr=None))
    assert [(row.name, row.value) for row in read_scalars(r.dir)] == [
        ("acc", 0.75),
        ("time/epoch", 1.5),
        ("train/step_loss", 0.25),
    ]


@pytest.mark.parametrize("bad", [-1, 1.5, True, "5"])
def test_bad_interval_is_rejected(tmp_path: Path, bad: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="log_every_n_steps"):
        TrackingCallback(object(), log_every_n_steps=bad)  # type: ignore[arg-type]


def test_only_rank_zero_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda group=None: 1)
    with run(root=tmp_path) as r:
        _drive(TrackingCallback(r, log_every_n_steps=1), steps=4, steps_per_epoch=2)
    assert read_scalars(r.dir) == []
    monkeypatch.setattr(torch.distributed, "get_rank", lambda group=None: 0)
    with run(root=tmp_path) as r0:
        _drive(TrackingCallback(r0, log_every_n_steps=1), steps=4, steps_per_epoch=2)
    assert len(read_scalars(r0.dir)) > 0


def test_exception_is_recorded_not_swallowed(tmp_path: Path) -> None:
    with run(root=tmp_path) as r:
        handled = TrackingCallback(r).on_exception(
            _engine(global_step=7, epoch=1), _context(), ValueError("loss is nan")
        )
    assert handled is None
    events = [json.loads(x) for x in (r.dir / "logs" / "events.jsonl").read_text().splitlines()]
    error = next(e for e in events if e["event"] == "engine exception")
    assert error["level"] == "error" and error["error"] == "ValueError: loss is nan"
    assert error["global_step"] == 7
    # After the run closed, recording fails quietly instead of masking the engine's error.
    assert TrackingCallback(r).on_exception(_engine(), _context(), ValueError("x")) is None


def test_accepts_any_scalar_sink() -> None:
    received: list[tuple[dict[str, float], int, int | None]] = []

    class Sink:
        def log_scalars(self, values: Any, step: int, epoch: int | None = None) -> None:
            received.append((dict(values), step, epoch))

    _drive(TrackingCallback(Sink(), log_every_n_steps=2, lr_name=None), steps=2, steps_per_epoch=2)
    assert received[0] == ({"train/step_loss": 0.5}, 2, 1)


def test_with_the_real_engine(tmp_path: Path) -> None:
    core = pytest.importorskip("legoml.core")
    if not hasattr(core, "Engine"):
        pytest.skip("legoml.core.Engine not available yet")
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    data = [(torch.randn(8, 4), torch.randint(0, 2, (8,))) for _ in range(6)]

    def train_step(engine: Any, batch: Any, context: Any) -> Any:
        x, y = batch
        context.optimizer.zero_grad()
        out = context.model(x)
        loss = torch.nn.functional.cross_entropy(out, y)
        loss.backward()
        context.optimizer.step()
        return core.SupervisedStepOutput(
            loss=loss.detach(), predictions=out.detach(), targets=y, metadata={}
        )

    with run(root=tmp_path) as r:
        engine = core.Engine(train_step, core.Context(model=model, optimizer=optimizer))
        engine.callbacks.append(TrackingCallback(r, log_every_n_steps=2))
        engine.loop(data, max_epochs=2)
    losses = [(r.step, r.epoch) for r in read_scalars(r.dir) if r.name == "train/step_loss"]
    assert losses == [(2, 1), (4, 1), (6, 1), (8, 2), (10, 2), (12, 2)]


def test_step_loss_and_epoch_mean_loss_stay_apart(tmp_path: Path) -> None:
    """With MetricsCallback(loss=...) beside it, each (step, name) is logged once: the step
    loss and the epoch's mean loss used to share "train/loss" on the epoch's last step."""
    core = pytest.importorskip("legoml.core")
    from legoml.metrics import MeanLoss

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    context = core.Context(
        model, torch.optim.SGD(model.parameters(), lr=0.05), torch.nn.functional.cross_entropy
    )
    data = [(torch.randn(8, 4), torch.randint(0, 2, (8,))) for _ in range(4)]
    with run(root=tmp_path) as r:
        core.Engine(
            core.make_supervised_train_step(),
            context,
            [core.MetricsCallback(loss=MeanLoss()), TrackingCallback(r, log_every_n_steps=2)],
        ).loop(data, max_epochs=2)
    rows = [(row.step, row.name) for row in read_scalars(r.dir)]
    assert len(rows) == len(set(rows))
    assert [s for s, name in rows if name == "train/loss"] == [4, 8]
    assert [s for s, name in rows if name == "train/step_loss"] == [2, 4, 6, 8]


def test_core_checkpoints_round_trip_through_track(tmp_path: Path) -> None:
    """legoml-core's CheckpointCallback saving through save_checkpoint; track reads them back."""
    core = pytest.importorskip("legoml.core")
    if not hasattr(core, "CheckpointCallback"):
        pytest.skip("legoml.core.CheckpointCallback not available yet")
    from legoml.track import (
        checkpoint_info,
        find_latest_checkpoint,
        load_model_from_checkpoint,
        save_checkpoint,
    )

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    data = [(torch.randn(8, 4), torch.randint(0, 2, (8,))) for _ in range(5)]

    def train_step(engine: Any, batch: Any, context: Any) -> Any:
        x, y = batch
        context.optimizer.zero_grad()
        out = context.model(x)
        loss = torch.nn.functional.cross_entropy(out, y)
        loss.backward()
        context.optimizer.step()
        return core.SupervisedStepOutput(
            loss=loss.detach(), predictions=out.detach(), targets=y, metadata={}
        )

    with run(root=tmp_path) as r:
        engine = core.Engine(train_step, core.Context(model=model, optimizer=optimizer))
        engine.callbacks.append(
            core.CheckpointCallback(
                r.checkpoints_dir, save_checkpoint, every_n_steps=3, keep_last=2
            )
        )
        engine.loop(data, max_epochs=2)
    latest = find_latest_checkpoint(r.dir)
    assert latest is not None
    info = checkpoint_info(latest)
    assert info.global_step == max(
        int(p.stem.split("-")[1]) for p in r.checkpoints_dir.glob("step-*.pt")
    )
    assert info.epoch in (1, 2)
    restored = torch.nn.Linear(4, 2)
    checkpoint = load_model_from_checkpoint(restored, latest)
    assert set(checkpoint) >= {"engine", "context", "epoch", "global_step", "metrics"}
    if info.global_step == 10:  # the final step was saved: weights equal the trained model
        assert torch.equal(restored.weight, model.weight)


def test_state_dict_records_where_the_scalars_file_stood(tmp_path: Path) -> None:
    """Saved inside each checkpoint (engine state), it is what resume_run rewinds to."""
    with run(root=tmp_path) as r:
        callback = TrackingCallback(r, log_every_n_steps=1)
        _drive(callback, steps=3, steps_per_epoch=3)
        state = callback.state_dict()
        assert state["scalars_size"] == r.scalars_size > 0
        assert state["step"] == 3
    restored = TrackingCallback(r)
    restored.load_state_dict(state)  # the extra key is harmless on load
    assert restored.state_dict()["step"] == 3


def test_state_dict_omits_the_size_for_sinks_without_one() -> None:
    class Sink:
        def log_scalars(self, values: Any, step: int, epoch: int | None = None) -> None:
            pass

    class Gone(Sink):
        @property
        def scalars_size(self) -> int:
            raise FileNotFoundError("scalars.csv")

    assert "scalars_size" not in TrackingCallback(Sink()).state_dict()
    assert "scalars_size" not in TrackingCallback(Gone()).state_dict()
