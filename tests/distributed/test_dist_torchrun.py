"""``torchrun --nproc_per_node=2 -m legoml_mnist train --distributed`` on a real-MNIST subset:
one run directory, each step logged once, checkpoints from rank 0 only, the same result as one
process, resume with another number of ranks, and a killed rank ending the whole job."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import torch
from dist_helpers import (
    cli_env,
    max_difference,
    meta,
    model_params,
    run_cli,
    run_dirs,
    scalar_rows,
    single_process_args,
    stop_group,
    torchrun_args,
    wait_for,
    worker_pid,
)

from legoml.track import find_latest_checkpoint, load_checkpoint

pytestmark = pytest.mark.integration

STEPS = 16  # 1024 examples, global batch 64
SUBSET = [
    "--limit-train", "1024", "--limit-test", "256", "--epochs", "1", "--no-progress",
    "--checkpoint-every-steps", "2", "--set", "loader.batch_size=64",
    # comparable with one process: fp32, no batch norm (per-rank statistics on CPU),
    # every checkpoint kept, the per-step loss logged at every step
    "--set", "precision=fp32", "--set", "model.batch_norm=false", "--set", "keep_last=100",
    "--set", "log_every_steps=1",
]
# measured on this subset: max abs param difference 4.6e-7 after 16 AdamW + one-cycle steps
PARAM_ATOL = 1e-5


def only_run_dir(root: Path) -> Path:
    dirs: list[Path] = run_dirs(root)
    assert len(dirs) == 1, dirs
    return dirs[0]


def assert_no_abort(stderr: str) -> None:
    """Ranks leave without interpreter teardown, where gloo's threads used to abort them."""
    assert "terminate called" not in stderr and "SIGABRT" not in stderr, stderr[-3000:]


def checkpoint_steps(run_dir: Path) -> list[int]:
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert all(n.startswith("step-") and n.endswith(".pt") for n in names), names
    return [int(n[5:13]) for n in names]


def assert_each_step_logged_once(run_dir: Path, steps: int) -> None:
    rows = scalar_rows(run_dir)
    keys = Counter((step, name) for step, name, _ in rows)
    assert max(keys.values()) == 1, [k for k, v in keys.items() if v > 1]
    assert sorted(s for s, n, _ in rows if n == "train/step_loss") == list(range(1, steps + 1))
    assert [n for _, n, _ in rows].count("test/accuracy") == 1


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    work = tmp_path_factory.mktemp("ddp")
    result = run_cli(torchrun_args(2, [*SUBSET, "--runs-root", "runs"]), cwd=work)
    assert result.returncode == 0, result.stderr[-4000:]
    assert_no_abort(result.stderr)
    return work, result


@pytest.fixture(scope="module")
def single_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("single")
    result = run_cli(single_process_args([*SUBSET, "--runs-root", "runs"]), cwd=work)
    assert result.returncode == 0, result.stderr[-4000:]
    return only_run_dir(work / "runs")


def test_one_run_directory_each_step_once_checkpoints_from_rank_zero(
    ddp_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    work, result = ddp_run
    run_dir = only_run_dir(work / "runs")
    # nothing else under runs/ (the other rank's checkpointer never writes) or in the cwd
    assert [p.name for p in (work / "runs").iterdir()] == [run_dir.name]
    assert sorted(p.name for p in work.iterdir()) == ["runs"]
    # rank 0 alone prints the report
    assert result.stdout.count("run directory: ") == 1
    assert f"trained {STEPS} steps" in result.stdout

    assert_each_step_logged_once(run_dir, STEPS)
    # one file per saved step, no duplicates or temporary leftovers, each loads
    assert checkpoint_steps(run_dir) == list(range(2, STEPS + 1, 2))
    for step in (2, STEPS):
        state = load_checkpoint(run_dir / "checkpoints" / f"step-{step:08d}.pt")
        assert state["global_step"] == step
        data = state["engine"]["data"]
        assert (data["batch_size"], data["world_size"], data["position"]) == (
            32, 2, step if step < STEPS else STEPS
        )
        assert state["config"]["loader"]["batch_size"] == 64  # the config keeps the global batch

    info = meta(run_dir)
    assert info["status"] == "completed"
    assert set(info["final_metrics"]) == {"test/accuracy", "test/loss"}
    assert 0.5 < info["final_metrics"]["test/accuracy"] <= 1.0
    events = (run_dir / "logs" / "events.jsonl").read_text()
    assert events.count('"run started"') == 1 and events.count('"run completed"') == 1


def test_two_ranks_match_one_process_with_the_same_global_batch(
    ddp_run: tuple[Path, subprocess.CompletedProcess[str]], single_run: Path
) -> None:
    ddp_dir = only_run_dir(ddp_run[0] / "runs")
    for step in (2, 8, STEPS):
        name = f"checkpoints/step-{step:08d}.pt"
        assert max_difference(model_params(ddp_dir / name), model_params(single_run / name)) < PARAM_ATOL
    ddp_final = load_checkpoint(ddp_dir / f"checkpoints/step-{STEPS:08d}.pt")["metrics"]
    single_final = load_checkpoint(single_run / f"checkpoints/step-{STEPS:08d}.pt")["metrics"]
    assert ddp_final["train/accuracy"] == single_final["train/accuracy"]
    assert ddp_final["train/loss"] == pytest.approx(single_final["train/loss"], rel=1e-5)
    ddp_test, single_test = meta(ddp_dir)["final_metrics"], meta(single_run)["final_metrics"]
    assert ddp_test["test/accuracy"] == single_test["test/accuracy"]
    assert ddp_test["test/loss"] == pytest.approx(single_test["test/loss"], rel=1e-5)


def test_resume_a_two_rank_run_with_one_rank(
    ddp_run: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    original = only_run_dir(ddp_run[0] / "runs")
    # as if the job had died after step 9: the copy's newest checkpoint is step 8
    copy = tmp_path / "runs" / original.name
    shutil.copytree(original, copy)
    for checkpoint in (copy / "checkpoints").iterdir():
        if int(checkpoint.name[5:13]) > 8:
            checkpoint.unlink()
    result = run_cli(single_process_args(["--resume", str(copy), "--no-progress"]), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"trained {STEPS} steps" in result.stdout
    assert run_dirs(tmp_path / "runs") == [copy]
    assert_each_step_logged_once(copy, STEPS)
    name = f"checkpoints/step-{STEPS:08d}.pt"
    assert max_difference(model_params(copy / name), model_params(original / name)) < PARAM_ATOL
    assert len(meta(copy)["resumes"]) == 1 and meta(copy)["status"] == "completed"


@pytest.mark.parametrize("victim", [1, 0])
def test_killing_one_rank_ends_the_job_and_the_run_resumes(victim: int, tmp_path: Path) -> None:
    args = [
        "--limit-train", "6400", "--limit-test", "256", "--epochs", "1", "--no-progress",
        "--checkpoint-every-steps", "5", "--set", "loader.batch_size=64", "--runs-root", "runs",
    ]  # 100 steps: the kill lands long before the end
    launcher = subprocess.Popen(
        torchrun_args(2, args), cwd=tmp_path, env=cli_env(LEGOML_DIST_TIMEOUT="60"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        wait_for("runs/*/checkpoints/step-00000010.pt", tmp_path, launcher, timeout=180)
        pid = worker_pid(launcher.pid, victim)
        assert pid is not None, "no torchrun worker with that rank"
        os.kill(pid, signal.SIGKILL)
        try:  # the other rank must not wait for a collective timeout
            _, stderr = launcher.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail("the job went on after one rank was killed")
    finally:
        stop_group(launcher)

    assert launcher.returncode != 0
    assert "ChildFailedError" in stderr and "Signal 9 (SIGKILL)" in stderr  # torchrun's summary
    survivor = 1 - victim
    assert f"error: rank {survivor}" in stderr, stderr[-3000:]  # one line from the survivor
    assert_no_abort(stderr)  # the survivor exits with its error code, it does not crash
    run_dir = only_run_dir(tmp_path / "runs")
    if victim == 1:  # rank 0 lived to close the run
        assert meta(run_dir)["status"] == "failed"
        assert not [p for p in (run_dir / "checkpoints").iterdir() if not p.name.startswith("step-")]
    latest = find_latest_checkpoint(run_dir / "checkpoints")
    assert latest is not None
    state = load_checkpoint(latest)
    assert state["global_step"] >= 10 and "engine" in state and "context" in state
    stopped_at = int(state["global_step"])

    resumed = run_cli(torchrun_args(2, ["--resume", str(run_dir), "--no-progress"]), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert_no_abort(resumed.stderr)
    assert "trained 100 steps" in resumed.stdout
    assert only_run_dir(tmp_path / "runs") == run_dir
    info = meta(run_dir)
    assert info["status"] == "completed" and len(info["resumes"]) == 1
    rows = scalar_rows(run_dir)
    keys = Counter((step, name) for step, name, _ in rows)
    assert max(keys.values()) == 1
    assert stopped_at < 100 and checkpoint_steps(run_dir)[-1] == 100
    final = model_params(run_dir / "checkpoints" / "step-00000100.pt")
    assert all(torch.isfinite(t).all() for t in final.values())
