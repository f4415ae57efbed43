"""Write failures (ENOSPC, EIO, a read-only run directory, a full disk) during checkpoint and
scalar writes: a clear error naming the file, the previous checkpoint intact and loadable,
nothing already logged lost, and the run can be resumed once the disk is healthy again.

In-process tests drive legoml.track and legoml-core directly with injected faults
(fault_helpers.py); the tmpfs tests fill or freeze a real file system under a real
``legoml-mnist train`` process (they need mount rights and are skipped without them).
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fault_helpers import FailingWrites, FullDisk, ReadOnlyTree
from torch import nn

from legoml.core import (
    CheckpointCallback,
    Context,
    Engine,
    Events,
    MetricsCallback,
    make_supervised_train_step,
)
from legoml.metrics import MeanLoss
from legoml.track import (
    CheckpointError,
    Run,
    TrackError,
    TrackingCallback,
    find_latest_checkpoint,
    load_checkpoint,
    read_scalars,
    run,
    save_checkpoint,
)

ERRNOS = [errno.ENOSPC, errno.EIO]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text and text, repr(text)
    return text


# --------------------------------------------------------------------- checkpoint writes


@pytest.mark.parametrize("code", ERRNOS)
@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_checkpoint_write_failure_keeps_the_previous_file(
    tmp_path: Path, code: int, where: str
) -> None:
    path = tmp_path / "step-00000002.pt"
    save_checkpoint(path, {"global_step": 2, "w": torch.arange(4.0)})
    before = digest(path)
    with FailingWrites(tmp_path, code, where=where) as faults, pytest.raises(CheckpointError) as info:
        save_checkpoint(path, {"global_step": 4, "w": torch.zeros(100_000)})
    assert faults.hits >= 1
    message = one_line(info.value)
    assert str(path) in message and os.strerror(code) in message
    assert digest(path) == before
    assert load_checkpoint(path)["global_step"] == 2
    assert leftovers(tmp_path) == []  # the temporary file went away


# --------------------------------------------------------------------- scalar writes


@pytest.mark.parametrize("code", ERRNOS)
def test_scalar_write_failure_is_clear_and_keeps_earlier_rows(tmp_path: Path, code: int) -> None:
    with run("faults", root=tmp_path) as tracker:
        for step in range(1, 4):
            tracker.log_scalars({"train/loss": 1.0 / step}, step=step, epoch=1)
        with FailingWrites(tracker.dir, code, match="scalars.csv"), pytest.raises(
            (TrackError, OSError)
        ) as info:
            tracker.log_scalars({"train/loss": 0.1, "train/lr": 0.5}, step=4, epoch=1)
        message = one_line(info.value)
        assert os.strerror(code) in message
        assert "scalars.csv" in message, f"the error does not name the file: {message}"
        tracker.log_scalars({"train/loss": 0.2}, step=5, epoch=1)  # the disk recovered
    rows = [(row.step, row.name, row.value) for row in read_scalars(tracker.dir)]
    assert rows == [
        (1, "train/loss", 1.0),
        (2, "train/loss", 0.5),
        (3, "train/loss", 1.0 / 3),
        (5, "train/loss", 0.2),
    ]
    text = (tracker.dir / "logs" / "scalars.csv").read_text()
    assert text.endswith("\n") and all(line.count(",") == 4 for line in text.splitlines())


def test_scalar_write_cut_short_by_a_full_disk_leaves_no_torn_row(tmp_path: Path) -> None:
    with run("full", root=tmp_path) as tracker:
        tracker.log_scalars({"a": 1.0}, step=1)
        csv = tracker.dir / "logs" / "scalars.csv"
        with FullDisk(tracker.dir, free_bytes=30), pytest.raises((TrackError, OSError)):
            tracker.log_scalars({"a": 2.0, "b": 3.0, "c": 4.0}, step=2)
        assert csv.read_text().endswith("\n")
        tracker.log_scalars({"a": 5.0}, step=3)
    assert [(row.step, row.name, row.value) for row in read_scalars(tracker.dir)] == [
        (1, "a", 1.0),
        (3, "a", 5.0),
    ]


# --------------------------------------------------------------------- a training run


def _data() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(160, 20, generator=generator)
    y = torch.randint(0, 4, (160,), generator=generator)
    return [(x[i : i + 16], y[i : i + 16]) for i in range(0, 160, 16)]  # 10 steps an epoch


def _training(tracker: object, folder: Path) -> tuple[Engine, Context]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 4))
    context = Context(model, torch.optim.AdamW(model.parameters(), lr=1e-2), nn.CrossEntropyLoss())
    callbacks = [
        MetricsCallback(loss=MeanLoss()),
        TrackingCallback(tracker, log_every_n_steps=1, loss_name="train/step_loss"),  # type: ignore[arg-type]
        CheckpointCallback(  # wired as legoml-mnist does: the scalars size rides along
            folder, saver=save_checkpoint, every_n_steps=2, keep_last=2,
            extra=lambda: {"scalars_size": tracker.scalars_size},  # type: ignore[attr-defined]
        ),
    ]
    return Engine(make_supervised_train_step(), context, callbacks), context


def _resume_and_finish(run_dir: Path) -> list[tuple[int, str]]:
    latest = find_latest_checkpoint(run_dir / "checkpoints")
    assert latest is not None
    state = load_checkpoint(latest)
    size = state["extra"]["scalars_size"]
    with run(resume=run_dir, rewind_to_step=state["global_step"], rewind_to_size=size) as tracker:
        engine, context = _training(tracker, tracker.checkpoints_dir)
        context.load_state_dict(state["context"])
        engine.load_state_dict(state["engine"])
        engine.loop(_data())
    rows = [(row.step, row.name) for row in read_scalars(run_dir)]
    assert len(rows) == len(set(rows)), "a step was logged twice"
    assert [s for s, n in rows if n == "train/step_loss"] == list(range(1, 31))
    return rows


def _snapshot(run_dir: Path) -> tuple[dict[str, str], list[tuple[int, str, float]]]:
    folder = run_dir / "checkpoints"
    files = {p.name: digest(p) for p in folder.iterdir() if p.name.startswith("step-")}
    rows = [(row.step, row.name, row.value) for row in read_scalars(run_dir)]
    return files, rows


@pytest.mark.parametrize(
    ("code", "what"),
    [(errno.ENOSPC, "checkpoint"), (errno.EIO, "checkpoint"), (errno.ENOSPC, "scalars"), (errno.EIO, "scalars")],
)
def test_write_failure_mid_training_stops_clearly_and_resumes(
    tmp_path: Path, code: int, what: str
) -> None:
    """Step 7's write fails: training stops with the error, the step-6 checkpoint and the rows
    of steps 1-6 are intact, and resuming after the fault finishes the run with every step."""
    tracker = run("mid", root=tmp_path)
    engine, _ = _training(tracker, tracker.checkpoints_dir)
    state: dict[str, object] = {}

    def fault(engine: Engine, context: Context) -> None:
        state["snapshot"] = _snapshot(tracker.dir)
        match = "checkpoints" if what == "checkpoint" else "scalars.csv"
        faults = FailingWrites(tracker.dir, code, match=match)
        faults.__enter__()
        state["faults"] = faults

    step = 8 if what == "checkpoint" else 7  # checkpoints every 2 steps
    engine.add_event_handler(Events.STEP_START(once=step), fault)
    try:
        with pytest.raises((TrackError, OSError)) as info:
            engine.loop(_data(), max_epochs=3)
    finally:
        state["faults"].__exit__(None, None, None)  # type: ignore[attr-defined]
    tracker.close(info.value)
    message = one_line(info.value)
    assert os.strerror(code) in message
    assert ("checkpoint" in message) if what == "checkpoint" else ("scalars.csv" in message), message

    files, rows = state["snapshot"]  # type: ignore[misc]
    now_files, now_rows = _snapshot(tracker.dir)
    for name, sha in files.items():
        assert now_files.get(name) == sha, f"{name} changed or vanished"
    assert now_rows[: len(rows)] == rows, "rows logged before the fault were lost"
    assert leftovers(tracker.checkpoints_dir) == []
    latest = find_latest_checkpoint(tracker.checkpoints_dir)
    assert latest is not None and load_checkpoint(latest)["global_step"] == 6
    _resume_and_finish(tracker.dir)


def test_full_disk_during_training_then_resume(tmp_path: Path) -> None:
    """The disk fills up part-way through training (every writer shares one byte budget)."""
    with run("dry", root=tmp_path / "dry") as dry:  # how big a checkpoint is
        dry_engine, _ = _training(dry, dry.checkpoints_dir)
        dry_engine.loop(_data()[:2], max_epochs=1)
    size = (dry.checkpoints_dir / "step-00000002.pt").stat().st_size
    tracker = run("disk", root=tmp_path)
    engine, _ = _training(tracker, tracker.checkpoints_dir)
    with FullDisk(tracker.dir, free_bytes=int(size * 3.5)) as disk, pytest.raises(
        (TrackError, OSError)
    ) as info:
        engine.loop(_data(), max_epochs=3)
    tracker.close(info.value)
    assert disk.failures, "the disk never filled"
    message = one_line(info.value)
    assert os.strerror(errno.ENOSPC) in message
    latest = find_latest_checkpoint(tracker.checkpoints_dir)
    assert latest is not None
    step = load_checkpoint(latest)["global_step"]
    assert 2 <= step < 30
    assert leftovers(tracker.checkpoints_dir) == []
    logged = [s for s, n in ((r.step, r.name) for r in read_scalars(tracker.dir)) if n == "train/step_loss"]
    assert logged == list(range(1, len(logged) + 1)) and logged[-1] >= step, "rows were lost"
    _resume_and_finish(tracker.dir)


# --------------------------------------------------------------------- read-only run directory


def test_read_only_run_directory_refuses_resume_clearly(tmp_path: Path) -> None:
    tracker = run("ro", root=tmp_path)
    engine, _ = _training(tracker, tracker.checkpoints_dir)
    engine.loop(_data(), max_epochs=1)
    tracker.close()
    before = {p: digest(p) for p in tracker.dir.rglob("*") if p.is_file()}
    with ReadOnlyTree(tracker.dir) as frozen, pytest.raises((TrackError, OSError)) as info:
        run(resume=tracker.dir, rewind_to_step=6)
    assert frozen.refused
    message = one_line(info.value)
    assert str(tracker.dir) in message or "read-only" in message.lower(), message
    assert {p: digest(p) for p in tracker.dir.rglob("*") if p.is_file()} == before


def test_run_directory_turning_read_only_mid_training(tmp_path: Path) -> None:
    tracker = run("ro-mid", root=tmp_path)
    engine, _ = _training(tracker, tracker.checkpoints_dir)
    frozen = ReadOnlyTree(tracker.dir)
    seen: dict[str, object] = {}

    def freeze(engine: Engine, context: Context) -> None:
        seen["snapshot"] = _snapshot(tracker.dir)
        frozen.__enter__()

    engine.add_event_handler(Events.STEP_START(once=5), freeze)
    try:
        with pytest.raises((TrackError, OSError)) as info:
            engine.loop(_data(), max_epochs=3)
    finally:
        frozen.__exit__(None, None, None)
    tracker.close(info.value)
    one_line(info.value)
    assert os.strerror(errno.EROFS) in str(info.value)
    files, rows = seen["snapshot"]  # type: ignore[misc]
    now_files, now_rows = _snapshot(tracker.dir)
    assert now_files == files and now_rows[: len(rows)] == rows
    assert load_checkpoint(tracker.checkpoints_dir / "step-00000004.pt")["global_step"] == 4


# --------------------------------------------------------------------- seeded sweeps (slow)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(24))
def test_seeded_write_fault_anywhere_in_the_run_directory(tmp_path: Path, seed: int) -> None:
    """The k-th write, fsync or rename of any file in the run (checkpoints, scalars, events,
    meta) fails with ENOSPC or EIO: the error is one line, whatever was complete before is
    intact, and the run resumes to the end afterwards."""
    rng = random.Random(seed)
    code = rng.choice(ERRNOS)
    where = rng.choice(["write", "write", "fsync", "replace"])
    after = rng.randint(0, 60)
    tracker = run("sweep", root=tmp_path)
    engine, _ = _training(tracker, tracker.checkpoints_dir)
    faults = FailingWrites(tracker.dir, code, where=where, after=after)
    failure = _train_under(faults, engine, tracker)
    if failure is None:
        assert faults.hits == 0 or where == "fsync", f"a failed {where} went unnoticed"
        return
    one_line(failure)
    assert os.strerror(code) in str(failure)
    assert leftovers(tracker.checkpoints_dir) == []
    if find_latest_checkpoint(tracker.checkpoints_dir) is None:
        return  # it failed before the first checkpoint: nothing to resume
    _resume_and_finish(tracker.dir)


def _train_under(
    faults: FailingWrites | FullDisk, engine: Engine, tracker: Run
) -> BaseException | None:
    """Three epochs with ``faults`` injected, then close the run; the error, if any."""
    failure: BaseException | None = None
    with faults:
        try:
            engine.loop(_data(), max_epochs=3)
        except (TrackError, OSError) as exc:
            failure = exc
    try:
        tracker.close(failure)
    except OSError:
        pass
    return failure


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(12))
def test_seeded_full_disk_sizes(tmp_path: Path, seed: int) -> None:
    with run("dry", root=tmp_path / "dry") as dry:
        dry_engine, _ = _training(dry, dry.checkpoints_dir)
        dry_engine.loop(_data()[:2], max_epochs=1)
    size = (dry.checkpoints_dir / "step-00000002.pt").stat().st_size
    free = int(size * random.Random(seed).uniform(0.2, 6.0))
    tracker = run("disk", root=tmp_path)
    engine, _ = _training(tracker, tracker.checkpoints_dir)
    failure = _train_under(FullDisk(tracker.dir, free_bytes=free), engine, tracker)
    assert failure is not None, "the disk never filled"
    assert os.strerror(errno.ENOSPC) in one_line(failure)
    assert leftovers(tracker.checkpoints_dir) == []
    for checkpoint in tracker.checkpoints_dir.glob("step-*.pt"):
        load_checkpoint(checkpoint)
    if find_latest_checkpoint(tracker.checkpoints_dir) is not None:
        _resume_and_finish(tracker.dir)
