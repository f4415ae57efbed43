"""Shared helpers of the reliability suite: run the real CLI, kill it on observed progress,
compare runs bit for bit.

Kills are driven only by what the training process leaves on disk (checkpoint names, a
temporary checkpoint file, rows of ``logs/scalars.csv``); the poll interval is a courtesy to
the CPU, never a timing assumption.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "DATA_DIR",
    "ROOT",
    "SLOW_WRITER",
    "TRAIN_FLAGS",
    "KillOutcome",
    "assert_same_tree",
    "checkpoint_steps",
    "cli",
    "cli_env",
    "latest_checkpoint",
    "only_run_dir",
    "run_until_killed",
    "scalar_rows",
    "scalars_row_count",
    "temp_checkpoints",
]

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("LEGOML_DATA_DIR") or ROOT / "data")
SLOW_WRITER = Path(__file__).with_name("slow_checkpoint_writer.py")

# A small, deterministic CPU run: 512 examples in batches of 32 (16 steps an epoch), a
# checkpoint every 2 steps, the loss logged every step, one thread, deterministic kernels.
TRAIN_FLAGS: tuple[str, ...] = (
    "--limit-train", "512",
    "--limit-test", "128",
    "--no-progress",
    "--device", "cpu",
    "--seed", "7",
    "--checkpoint-every-steps", "2",
    "--set", "loader.batch_size=32",
    "--set", "loader.eval_batch_size=128",
    "--set", "log_every_steps=1",
    "--set", "threads=1",
    "--set", "deterministic=true",
)


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("LEGOML_DATA_DIR", str(DATA_DIR))
    env["LEGOML_LOG_LEVEL"] = "warning"
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


def _command(args: Sequence[str], slow_writer: bool) -> list[str]:
    if slow_writer:
        return [sys.executable, str(SLOW_WRITER), *args]
    return [sys.executable, "-m", "legoml_mnist", *args]


def cli(
    *args: str,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
    faulty: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run ``legoml-mnist ARGS`` to completion (``faulty``: under slow_checkpoint_writer.py,
    which reads LEGOML_TEST_FAULT / LEGOML_TEST_FSYNC_DELAY from ``env``)."""
    return subprocess.run(
        _command(args, slow_writer=faulty),
        cwd=cwd,
        env=dict(env) if env is not None else cli_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def only_run_dir(runs_root: Path) -> Path:
    """The single run directory under ``runs_root`` (a killed process prints nothing)."""
    runs = [path for path in runs_root.iterdir() if path.is_dir()]
    assert len(runs) == 1, f"expected exactly one run directory under {runs_root}, got {runs}"
    return runs[0]


def checkpoint_steps(run_dir: Path) -> list[int]:
    """Global steps of the complete ``step-*.pt`` checkpoints of a run, ascending."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    steps = []
    for entry in os.scandir(folder):
        name = entry.name
        if name.startswith("step-") and name.endswith(".pt"):
            steps.append(int(name[5:-3]))
    return sorted(steps)


def temp_checkpoints(run_dir: Path) -> list[str]:
    """Names of checkpoint temporary files being written (``.step-*.pt.*.tmp``)."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    return [e.name for e in os.scandir(folder) if e.name.startswith(".") and e.name.endswith(".tmp")]


def scalars_row_count(run_dir: Path) -> int:
    path = run_dir / "logs" / "scalars.csv"
    try:
        return max(0, path.read_bytes().count(b"\n") - 1)
    except FileNotFoundError:
        return 0


def latest_checkpoint(run_dir: Path) -> Path:
    steps = checkpoint_steps(run_dir)
    assert steps, f"{run_dir} has no checkpoint"
    return run_dir / "checkpoints" / f"step-{steps[-1]:08d}.pt"


def scalar_rows(run_dir: Path) -> list[tuple[int, str, str]]:
    """``(step, name, value)`` of every row of logs/scalars.csv (wall time left out)."""
    with open(run_dir / "logs" / "scalars.csv", newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        assert header == ["step", "epoch", "name", "value", "time"], header
        return [(int(row[0]), row[2], row[3]) for row in reader]


@dataclass
class KillOutcome:
    """What happened to a process we meant to kill."""

    killed: bool  # False: it finished before the trigger fired
    trigger: str  # what was observed when the kill was sent
    run_dir: Path | None
    stderr: str


def run_until_killed(
    args: Sequence[str],
    *,
    cwd: Path,
    runs_root: Path,
    trigger: Callable[[Path], str | None],
    slow_writer: bool = False,
    timeout: float = 600,
) -> KillOutcome:
    """Start ``legoml-mnist ARGS`` and SIGKILL it as soon as ``trigger(run_dir)`` returns a
    description (polled on the file system); returns how it ended."""
    env = cli_env()
    proc = subprocess.Popen(
        _command(args, slow_writer),
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    fired: str | None = None
    run_dir: Path | None = None
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"training did not reach the kill trigger in {timeout} s")
            if run_dir is None and runs_root.is_dir():
                runs = [p for p in runs_root.iterdir() if p.is_dir()]
                run_dir = runs[0] if runs else None
            if run_dir is not None:
                fired = trigger(run_dir)
                if fired is not None:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
            time.sleep(0.001)
    finally:
        if proc.poll() is None and fired is None:
            proc.kill()
        _, stderr = proc.communicate()
    return KillOutcome(killed=fired is not None and proc.returncode == -signal.SIGKILL,
                       trigger=fired or "finished", run_dir=run_dir, stderr=stderr)


def assert_same_tree(left: Any, right: Any, where: str = "") -> None:
    """Nested dicts/lists/tuples of tensors and plain values are equal, tensors bit for bit."""
    if isinstance(left, torch.Tensor):
        assert isinstance(right, torch.Tensor), f"{where}: tensor vs {type(right).__name__}"
        assert left.dtype == right.dtype and left.shape == right.shape, f"{where}: dtype/shape"
        assert torch.equal(left, right), f"{where}: tensors differ"
    elif isinstance(left, Mapping):
        assert isinstance(right, Mapping), f"{where}: mapping vs {type(right).__name__}"
        assert list(left) == list(right), f"{where}: keys {list(left)} != {list(right)}"
        for key in left:
            assert_same_tree(left[key], right[key], f"{where}.{key}")
    elif isinstance(left, (list, tuple)):
        assert isinstance(right, (list, tuple)) and len(left) == len(right), f"{where}: length"
        for index, (a, b) in enumerate(zip(left, right, strict=True)):
            assert_same_tree(a, b, f"{where}[{index}]")
    elif isinstance(left, float) and left != left:
        assert isinstance(right, float) and right != right, f"{where}: nan vs {right!r}"
    else:
        assert left == right, f"{where}: {left!r} != {right!r}"
