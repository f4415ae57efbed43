"""kill -9 a real ``legoml-mnist train`` at seeded moments, resume it, and demand the very
same run as one that was never interrupted: weights, optimizer, scheduler, engine state and
every logged scalar, bit for bit (CPU, one thread, deterministic kernels).

Each trial is a seeded plan of one or two kills. A kill fires on observed progress only:
the newest checkpoint's step, the number of rows in ``logs/scalars.csv``, or a checkpoint
temporary file appearing (the process then runs under ``slow_checkpoint_writer.py``, whose
slow fsync keeps the half-written file around long enough to be caught mid-save).
"""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from reliability_helpers import (
    TRAIN_FLAGS,
    assert_same_tree,
    checkpoint_steps,
    cli,
    latest_checkpoint,
    only_run_dir,
    run_until_killed,
    scalar_rows,
    scalars_row_count,
    temp_checkpoints,
)

from legoml.track import find_latest_checkpoint, load_checkpoint

pytestmark = pytest.mark.integration

EPOCHS = 2.5  # the last epoch is partial: StopAtStep and the final save are exercised too
STEPS_PER_EPOCH = 16  # 512 examples, batches of 32
TOTAL_STEPS = int(EPOCHS * STEPS_PER_EPOCH)
FLAGS = (*TRAIN_FLAGS, "--epochs", str(EPOCHS))
MODES = ("checkpoint", "scalars", "write", "epoch-end-write")


@dataclass(frozen=True)
class Kill:
    """Kill when ``mode`` reaches ``at``: a global step (checkpoint, write, epoch-end-write)
    or a scalars row count (scalars)."""

    mode: str
    at: int

    def trigger(self, run_dir: Path) -> str | None:
        if self.mode == "scalars":
            rows = scalars_row_count(run_dir)
            return f"{rows} scalar rows" if rows >= self.at else None
        steps = checkpoint_steps(run_dir)
        newest = steps[-1] if steps else 0
        if self.mode == "checkpoint":
            return f"checkpoint of step {newest}" if newest >= self.at else None
        temps = temp_checkpoints(run_dir)
        if not temps:
            return None
        if self.mode == "write":
            writing = [t for t in temps if _temp_step(t) >= self.at]
        else:  # the second save of an epoch's last step: the one made at EPOCH_END
            writing = [t for t in temps if _temp_step(t) == self.at and self.at in steps]
        return f"mid-write of {writing[0]} (checkpoints {steps})" if writing else None


def _temp_step(name: str) -> int:
    # ".step-00000022.pt.abc123.tmp"
    return int(name.split(".")[1].removeprefix("step-"))


def plan(seed: int, kills: int) -> list[Kill]:
    """``kills`` seeded kill points, each later than the previous one."""
    rng = random.Random(seed)
    out: list[Kill] = []
    low = 4  # a checkpoint exists (every 2 steps) before any kill
    for index in range(kills):
        high = TOTAL_STEPS - 4 - 8 * (kills - 1 - index)
        step = rng.randint(low, high)
        mode = rng.choice(MODES)
        if mode == "epoch-end-write":
            ends = [e for e in range(STEPS_PER_EPOCH, TOTAL_STEPS, STEPS_PER_EPOCH) if e >= low]
            step = rng.choice(ends) if ends else step
            mode = mode if ends else "write"
        if mode == "scalars":
            # about two rows a step (loss, lr) plus epoch metrics
            out.append(Kill(mode, 2 * step + rng.randint(0, 1)))
        else:
            out.append(Kill(mode, step))
        low = step + 4
    return out


@dataclass
class Reference:
    run_dir: Path
    checkpoint: dict[str, Any]
    rows: list[tuple[int, str, str]]
    final_metrics: dict[str, float]


def _reference(work: Path) -> Reference:
    result = cli("train", *FLAGS, "--runs-root", "runs", cwd=work)
    assert result.returncode == 0, result.stderr
    run_dir = only_run_dir(work / "runs")
    assert checkpoint_steps(run_dir)[-1] == TOTAL_STEPS
    meta = json.loads((run_dir / "meta.json").read_text())
    return Reference(
        run_dir=run_dir,
        checkpoint=load_checkpoint(latest_checkpoint(run_dir)),
        rows=scalar_rows(run_dir),
        final_metrics=meta["final_metrics"],
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return _reference(tmp_path_factory.mktemp("reference"))


def _check_checkpoints_load(run_dir: Path) -> None:
    """Every complete checkpoint left by a killed process loads; the latest is found."""
    for step in checkpoint_steps(run_dir):
        state = load_checkpoint(run_dir / "checkpoints" / f"step-{step:08d}.pt")
        assert state["global_step"] == step
    assert find_latest_checkpoint(run_dir / "checkpoints") == latest_checkpoint(run_dir)


def _check_scalars(rows: list[tuple[int, str, str]]) -> None:
    counts = Counter((step, name) for step, name, _ in rows)
    duplicated = sorted(key for key, n in counts.items() if n > 1)
    assert not duplicated, f"scalars.csv repeats {duplicated[:5]}"
    loss_steps = [step for step, name, _ in rows if name == "train/step_loss"]
    assert loss_steps == list(range(1, TOTAL_STEPS + 1)), "train/step_loss steps missing or out of order"
    steps = [step for step, _, _ in rows]
    assert steps == sorted(steps), "scalars.csv steps go backwards"


def run_trial(reference: Reference, work: Path, kills: list[Kill]) -> list[str]:
    """Train, kill at each planned point, resume after each kill; compare with the reference."""
    runs_root = work / "runs"
    seen: list[str] = []
    args: list[str] = ["train", *FLAGS, "--runs-root", "runs"]
    for kill in kills:
        slow = kill.mode in ("write", "epoch-end-write")
        outcome = run_until_killed(
            args, cwd=work, runs_root=runs_root, trigger=kill.trigger, slow_writer=slow
        )
        assert outcome.killed, f"{kill} never fired: {outcome.stderr[-2000:]}"
        assert outcome.run_dir == only_run_dir(runs_root)
        seen.append(f"{kill.mode}@{kill.at}: {outcome.trigger}")
        _check_checkpoints_load(outcome.run_dir)
        args = ["train", "--resume", str(outcome.run_dir), "--no-progress"]
    result = cli(*args, cwd=work)
    assert result.returncode == 0, result.stderr
    run_dir = only_run_dir(runs_root)

    final = latest_checkpoint(run_dir)
    assert final.name == latest_checkpoint(reference.run_dir).name
    got = load_checkpoint(final)
    for key in ("context", "engine", "epoch", "global_step", "metrics", "config"):
        assert_same_tree(got[key], reference.checkpoint[key], key)
    model, optimizer = got["context"]["model"], got["context"]["optimizer"]
    for name, tensor in reference.checkpoint["context"]["model"].items():
        assert torch.equal(model[name], tensor), name
    assert optimizer["state"] and optimizer["state"].keys() == reference.checkpoint["context"]["optimizer"]["state"].keys()

    rows = scalar_rows(run_dir)
    _check_scalars(rows)
    assert rows == reference.rows
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["status"] == "completed"
    assert meta["final_metrics"] == reference.final_metrics
    assert len(meta["resumes"]) == len(kills)
    return seen


def test_reference_run_logs_every_step_once(reference: Reference) -> None:
    _check_scalars(reference.rows)
    assert reference.checkpoint["global_step"] == TOTAL_STEPS


def test_killed_twice_mid_write_and_mid_epoch_then_resumed_is_bit_identical(
    reference: Reference, tmp_path: Path
) -> None:
    """Short variant: one kill during a checkpoint write, one on a seeded scalars count."""
    rng = random.Random(2024)
    write_step = rng.randint(6, 14)
    kills = [Kill("write", write_step), Kill("scalars", 2 * rng.randint(write_step + 6, 30))]
    print(run_trial(reference, tmp_path, kills))  # what each kill caught (pytest -rP)


def test_resuming_a_finished_run_logs_nothing_twice(reference: Reference, tmp_path: Path) -> None:
    """``--resume`` on a completed run re-evaluates without repeating its final rows."""
    shutil.copytree(reference.run_dir.parent, tmp_path / "runs")
    run_dir = only_run_dir(tmp_path / "runs")
    result = cli("train", "--resume", str(run_dir), "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert scalar_rows(run_dir) == reference.rows
    got = load_checkpoint(latest_checkpoint(run_dir))
    assert_same_tree(got["context"], reference.checkpoint["context"], "context")


SLOW_TRIALS = 12


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(SLOW_TRIALS))
def test_seeded_kill_trials_resume_bit_identical(
    seed: int, reference: Reference, tmp_path: Path
) -> None:
    """Long variant: 12 seeded trials of one or two kills (every mode appears)."""
    kills = plan(1000 + seed, kills=1 + seed % 2)
    if seed < len(MODES):  # make sure each mode is exercised at least once
        kills[0] = plan_mode(MODES[seed], 1000 + seed)
        kills = [kills[0], *[k for k in kills[1:] if _step_of(k) > _step_of(kills[0]) + 4]]
    print(run_trial(reference, tmp_path, kills))  # what each kill caught (pytest -rP)


def _step_of(kill: Kill) -> int:
    return kill.at // 2 if kill.mode == "scalars" else kill.at


def plan_mode(mode: str, seed: int) -> Kill:
    rng = random.Random(seed)
    if mode == "epoch-end-write":
        return Kill(mode, rng.choice(range(STEPS_PER_EPOCH, TOTAL_STEPS, STEPS_PER_EPOCH)))
    step = rng.randint(4, 20)
    return Kill(mode, 2 * step if mode == "scalars" else step)
