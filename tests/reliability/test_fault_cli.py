"""Write failures under a real ``legoml-mnist train`` process: an EIO on a checkpoint fsync, a
real full tmpfs, a real read-only mount (root with mount rights) or a chmod-ed run directory
(non-root). Each ends with exit code 1 and one ``error:`` line, no traceback; the checkpoints
already written stay intact and loadable, no logged row is lost, and the run resumes to the
end once the disk is healthy again."""

from __future__ import annotations

import hashlib
import math
import os
import stat
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_helpers import remount, tmpfs
from reliability_helpers import (
    TRAIN_FLAGS,
    checkpoint_steps,
    cli,
    cli_env,
    only_run_dir,
    scalar_rows,
)

from legoml.track import find_latest_checkpoint, load_checkpoint

pytestmark = pytest.mark.integration

EPOCHS = 3
TOTAL_STEPS = 48
FLAGS = (*TRAIN_FLAGS, "--epochs", str(EPOCHS), "--runs-root", "runs")


def error_line(stderr: str) -> str:
    """The single ``error:`` line of a failed command (log lines may precede it)."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def check_intact(run_dir: Path) -> int:
    """Every checkpoint loads, the latest is found, scalars.csv has whole rows only;
    returns the latest checkpoint's step."""
    steps = checkpoint_steps(run_dir)
    assert steps, "no checkpoint survived"
    for step in steps:
        assert load_checkpoint(run_dir / "checkpoints" / f"step-{step:08d}.pt")["global_step"] == step
    assert find_latest_checkpoint(run_dir / "checkpoints") is not None
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    assert (run_dir / "logs" / "scalars.csv").read_text().endswith("\n")
    logged = [s for s, name, _ in scalar_rows(run_dir) if name == "train/step_loss"]
    assert logged == list(range(1, len(logged) + 1)) and logged[-1] >= steps[-1]
    return steps[-1]


def check_complete(run_dir: Path) -> None:
    rows = scalar_rows(run_dir)
    counts = Counter((step, name) for step, name, _ in rows)
    assert max(counts.values()) == 1, "a (step, name) row is repeated"
    assert [s for s, n, _ in rows if n == "train/step_loss"] == list(range(1, TOTAL_STEPS + 1))
    assert checkpoint_steps(run_dir)[-1] == TOTAL_STEPS
    assert '"status": "completed"' in (run_dir / "meta.json").read_text()


def test_eio_on_a_checkpoint_fsync_stops_clearly_then_resumes(tmp_path: Path) -> None:
    env = cli_env(LEGOML_TEST_FAULT="EIO:fsync:/checkpoints/.step-:3", LEGOML_TEST_FSYNC_DELAY="0")
    failed = cli("train", *FLAGS, cwd=tmp_path, env=env, faulty=True)
    assert failed.returncode == 1
    line = error_line(failed.stderr)
    assert "Input/output error" in line and "step-00000008.pt" in line, line
    run_dir = only_run_dir(tmp_path / "runs")
    assert check_intact(run_dir) == 6
    assert '"status": "failed"' in (run_dir / "meta.json").read_text()
    resumed = cli("train", "--resume", str(run_dir), "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    check_complete(run_dir)


def _checkpoint_bytes() -> int:
    """About what one checkpoint of the default model takes: weights and two AdamW moments."""
    from legoml_mnist import TrainerForImageClassificationNode

    params = sum(p.numel() for p in TrainerForImageClassificationNode().model.build().parameters())
    return 12 * params + 64 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real tmpfs with room for about 2.6 checkpoints (needs root and mount rights)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the in-process FullDisk tests cover this")
    size_kb = math.ceil(2.6 * _checkpoint_bytes() / 1024)
    try:
        with tmpfs(tmp_path / "disk", f"{size_kb}k") as disk:
            yield disk
    except OSError as exc:
        pytest.skip(f"cannot mount a tmpfs here ({exc}); the in-process FullDisk tests cover this")


def test_real_full_disk_then_resume_then_read_only_mount(small_disk: Path) -> None:
    # 1. the disk fills up while the third checkpoint is written
    full = cli("train", *FLAGS, cwd=small_disk)
    assert full.returncode == 1, full.stderr
    line = error_line(full.stderr)
    assert "No space left on device" in line and "checkpoint" in line, line
    run_dir = only_run_dir(small_disk / "runs")
    kept = check_intact(run_dir)
    assert 2 <= kept < TOTAL_STEPS

    # 2. more room: the run resumes and ends as if nothing happened
    remount(small_disk, "size=256m")
    resumed = cli("train", "--resume", str(run_dir), "--no-progress", cwd=small_disk)
    assert resumed.returncode == 0, resumed.stderr
    check_complete(run_dir)

    # 3. the same run directory on a read-only mount: a clear refusal, nothing changed
    before = tree_digest(run_dir)
    remount(small_disk, "ro")
    try:
        refused = cli("train", "--resume", str(run_dir), "--no-progress", cwd=small_disk.parent)
    finally:
        remount(small_disk, "rw")
    assert refused.returncode == 1
    assert "Read-only file system" in error_line(refused.stderr)
    assert tree_digest(run_dir) == before


def test_read_only_run_directory_by_permissions(tmp_path: Path) -> None:
    """Non-root: chmod a-w binds, so resuming into the frozen run is refused cleanly."""
    if os.geteuid() == 0:
        pytest.skip("root ignores file permissions; covered by the read-only tmpfs mount and "
                    "the in-process ReadOnlyTree tests")
    done = cli("train", *TRAIN_FLAGS, "--epochs", "0.25", "--runs-root", "runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run_dir = only_run_dir(tmp_path / "runs")
    before = tree_digest(run_dir)
    folders = [run_dir, *[p for p in run_dir.rglob("*") if p.is_dir()]]
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    for path in files + folders:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        refused = cli("train", "--resume", str(run_dir), "--no-progress", cwd=tmp_path)
    finally:
        for path in folders + files:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    assert refused.returncode == 1
    assert "Permission denied" in error_line(refused.stderr)
    assert tree_digest(run_dir) == before
