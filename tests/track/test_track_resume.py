"""resume_run: one idempotent call that starts, resumes exactly, or reopens a finished run,
with the real legoml-core Engine, a shuffling DataLoader and the track callbacks."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import structlog
import torch
from conftest import read_json
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from legoml.core import (
    CheckpointCallback,
    Context,
    Engine,
    Events,
    MetricsCallback,
    Priority,
    make_supervised_train_step,
)
from legoml.metrics import MeanLoss
from legoml.track import (
    CheckpointError,
    RunError,
    TrackingCallback,
    load_checkpoint,
    read_scalars,
    resume_run,
    save_checkpoint,
)

EPOCHS = 3
STEPS = 5  # an epoch: 40 samples in batches of 8; checkpoints every 3 steps and epoch
TOTAL = EPOCHS * STEPS


class Killed(Exception):
    """Stands for the process dying."""


def _parts(in_features: int = 4) -> tuple[Context, Engine]:
    torch.manual_seed(0)
    model = nn.Linear(in_features, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    context = Context(model, optimizer, nn.CrossEntropyLoss())
    engine = Engine(make_supervised_train_step(), context, [MetricsCallback(loss=MeanLoss())])
    return context, engine


def _loader() -> DataLoader[Any]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(STEPS * 8, 4, generator=generator)
    y = torch.randint(0, 3, (STEPS * 8,), generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)


def _kill(engine: Any, context: Any) -> None:
    raise Killed(f"killed at step {engine.state.global_step}")


def _script(path: Path, *, kill_at: int | None = None, **options: Any) -> tuple[Any, Context, int]:
    """The user's script: the same call whether the run is new, killed or finished."""
    context, engine = _parts()
    steps = []
    engine.add_event_handler(Events.STEP_END, lambda e, c: steps.append(e.state.global_step))
    with resume_run(path, context, engine, config={"lr": 0.1}, **options) as r:
        engine.callbacks += [
            TrackingCallback(r, log_every_n_steps=1),
            CheckpointCallback(r.checkpoints_dir, saver=save_checkpoint, every_n_steps=3),
        ]
        if kill_at is not None:  # after every callback, so step kill_at's rows are logged
            engine.add_event_handler(
                Events.STEP_END(once=kill_at), _kill, priority=Priority.CHECKPOINT + 1
            )
        state = engine.loop(_loader(), max_epochs=EPOCHS)
        # logged after the last checkpoint at its own step: only a byte-exact rewind drops it
        score = sum(float(p.detach().sum()) for p in context.model.parameters())
        r.log_scalars({"test/score": score}, state.global_step)
    return r, context, len(steps)


def _rows(run_dir: Path) -> list[tuple[int, int | None, str, float]]:
    return [(row.step, row.epoch, row.name, row.value) for row in read_scalars(run_dir)]


def _same_weights(a: Context, b: Context) -> bool:
    left, right = a.model.state_dict(), b.model.state_dict()
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Context]:
    """An uninterrupted run."""
    r, context, trained = _script(tmp_path_factory.mktemp("reference") / "run")
    assert trained == TOTAL
    return r, context


def test_a_missing_directory_starts_a_fresh_run_there(
    tmp_path: Path, reference: tuple[Any, Context]
) -> None:
    path = tmp_path / "runs" / "exp"
    r, context, trained = _script(path)
    assert r.dir == path.resolve() and not r.is_resumed
    assert trained == TOTAL
    meta = read_json(path / "meta.json")
    assert (meta["name"], meta["id"], meta["status"], meta["resumes"]) == (
        "exp",
        "exp",
        "completed",
        [],
    )
    assert read_json(path / "config.json") == {"lr": 0.1}
    assert _rows(path) == _rows(reference[0].dir)
    assert _same_weights(context, reference[1])


def test_a_fresh_run_takes_the_given_name(tmp_path: Path) -> None:
    context, engine = _parts()
    with resume_run(tmp_path / "x", context, engine, name="mnist", seed=3) as r:
        pass
    assert (r.name, r.meta["seed"], r.meta["id"]) == ("mnist", 3, "x")


@pytest.mark.parametrize("kill_at", [5, 8])  # last step of epoch 1 / mid-epoch 2
def test_a_killed_run_resumes_exactly(
    kill_at: int, tmp_path: Path, reference: tuple[Any, Context]
) -> None:
    path = tmp_path / "exp"
    with pytest.raises(Killed):
        _script(path, kill_at=kill_at)
    assert read_json(path / "meta.json")["status"] == "failed"
    steps_logged = {row.step for row in read_scalars(path)}
    assert max(steps_logged) == kill_at  # rows after the checkpoint were on disk
    r, context, trained = _script(path)
    last_checkpoint = kill_at - kill_at % 3
    assert trained == TOTAL - last_checkpoint
    assert r.is_resumed and read_json(path / "meta.json")["status"] == "completed"
    rows = _rows(path)
    counts = Counter((step, name) for step, _, name, _ in rows)
    assert max(counts.values()) == 1
    assert rows == _rows(reference[0].dir)
    assert _same_weights(context, reference[1])


def test_a_run_without_a_checkpoint_restarts_from_step_0(
    tmp_path: Path, reference: tuple[Any, Context]
) -> None:
    path = tmp_path / "exp"
    with pytest.raises(Killed):
        _script(path, kill_at=2)  # before the first checkpoint (step 3)
    assert not list((path / "checkpoints").iterdir())
    assert [row.step for row in read_scalars(path)][-1] == 2
    with structlog.testing.capture_logs() as logs:
        r, context, trained = _script(path)
    assert "no checkpoint yet; starting from step 0" in [entry["event"] for entry in logs]
    assert trained == TOTAL
    assert _rows(path) == _rows(reference[0].dir)
    assert _same_weights(context, reference[1])


def test_resuming_a_finished_run_trains_and_logs_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "exp"
    _, first, _ = _script(path)
    before = _rows(path)
    r, again, trained = _script(path)
    assert trained == 0
    assert _rows(path) == before  # test/score was dropped, then written once more
    assert _same_weights(again, first)
    meta = read_json(path / "meta.json")
    assert meta["status"] == "completed" and len(meta["resumes"]) == 1


def test_a_checkpoint_file_in_the_run_resumes_from_that_file(
    tmp_path: Path, reference: tuple[Any, Context]
) -> None:
    path = tmp_path / "exp"
    _script(path)
    r, context, trained = _script(path / "checkpoints" / "step-00000012.pt")
    assert trained == TOTAL - 12
    assert _rows(path) == _rows(reference[0].dir)
    assert _same_weights(context, reference[1])


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


def test_a_checkpoint_of_another_model_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    path = tmp_path / "exp"
    _script(path)
    before = _snapshot(path)
    context, engine = _parts(in_features=5)
    with pytest.raises(CheckpointError) as caught:
        resume_run(path, context, engine, config={"lr": 0.2})
    message = str(caught.value)
    assert "the checkpoint does not fit this model/optimizer (" in message
    assert "step-00000015.pt" in message and "\n" not in message and len(message) < 600
    assert _snapshot(path) == before  # scalars.csv, meta.json, config.json byte for byte


def test_create_false_refuses_a_missing_path_and_an_empty_directory(tmp_path: Path) -> None:
    context, engine = _parts()
    with pytest.raises(RunError, match=r"^no such run directory or checkpoint: .*missing"):
        resume_run(tmp_path / "missing", context, engine, create=False)
    assert not (tmp_path / "missing").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="no such run directory or checkpoint"):
        resume_run(tmp_path / "empty", context, engine, create=False)
    with resume_run(tmp_path / "empty", context, engine) as r:  # create=True: a run in it
        pass
    assert r.dir == (tmp_path / "empty").resolve() and (r.dir / "meta.json").is_file()


@pytest.mark.parametrize(("record", "score_rows"), [("callback", 1), ("extra", 1), ("none", 2)])
def test_old_checkpoints_with_extra_scalars_size_still_rewind_exactly(
    record: str, score_rows: int, tmp_path: Path
) -> None:
    path = tmp_path / "exp"
    _script(path)
    latest = path / "checkpoints" / f"step-{TOTAL:08d}.pt"
    checkpoint = load_checkpoint(latest)
    tracking = checkpoint["engine"]["callbacks"]["TrackingCallback"]
    assert tracking["scalars_size"] > 0
    if record != "callback":  # as written before TrackingCallback recorded it
        size = tracking.pop("scalars_size")
        if record == "extra":
            checkpoint["extra"] = {"scalars_size": size}
        save_checkpoint(latest, checkpoint)
    _script(path)
    rows = [row for row in read_scalars(path) if row.name == "test/score"]
    assert len(rows) == score_rows  # without a size, the step alone cannot drop it


def test_a_checkpoint_outside_a_run_is_refused(tmp_path: Path) -> None:
    context, engine = _parts()
    path = tmp_path / "loose.pt"
    save_checkpoint(path, {"context": context.state_dict(), "engine": engine.state_dict()})
    with pytest.raises(RunError, match="not inside a run directory; pass the run directory"):
        resume_run(path, context, engine)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        resume_run(tmp_path / "nope.pt", context, engine)


def test_directories_that_are_not_runs_are_refused(tmp_path: Path) -> None:
    context, engine = _parts()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    with pytest.raises(RunError, match="not a run directory .* and not empty"):
        resume_run(tmp_path / "busy", context, engine)
    with resume_run(tmp_path / "exp", context, engine) as r:
        pass
    with pytest.raises(RunError, match="is inside the run"):
        resume_run(r.dir / "logs", context, engine)
    assert sorted(p.name for p in (r.dir / "logs").iterdir()) == ["events.jsonl", "scalars.csv"]


def test_the_checkpoints_folder_stands_for_its_run(tmp_path: Path) -> None:
    path = tmp_path / "exp"
    _script(path)
    context, engine = _parts()
    with resume_run(path / "checkpoints", context, engine) as r:
        assert engine.state_dict()["global_step"] == TOTAL
    assert r.dir == path.resolve()


def test_bad_arguments_fail_before_anything_is_written(tmp_path: Path) -> None:
    context, engine = _parts()
    with pytest.raises(RunError, match="seed must be an int"):
        resume_run(tmp_path / "a", context, engine, seed="1")  # type: ignore[arg-type]
    with pytest.raises(RunError, match="config must be a mapping"):
        resume_run(tmp_path / "a", context, engine, config=3)
    assert not (tmp_path / "a").exists()
