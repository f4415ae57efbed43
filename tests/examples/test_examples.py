"""The scripts in examples/ run as a user would run them, on small real data, in seconds;
the kill-safe one is SIGKILLed mid-epoch, resumed, and must match an unbroken run bit for bit."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from legoml.track import load_checkpoint

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

# Runs an example and SIGKILLs itself right before optimizer step KILL_AT_STEP: a real kill
# at a chosen point, between two checkpoints and after rows logged since the last one.
KILL_AT_STEP = """
import os, runpy, signal, sys
import torch
count = 0
original = torch.optim.AdamW.step
def step(self, *args, **kwargs):
    global count
    count += 1
    if count == int(os.environ["KILL_AT_STEP"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, *args, **kwargs)
torch.optim.AdamW.step = step
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def example(name: str, *args: str, cwd: Path, kill_at: int | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.setdefault("LEGOML_DATA_DIR", str(ROOT / "data"))
    env["LEGOML_LOG_LEVEL"] = "warning"
    command = [sys.executable, str(EXAMPLES / name), *args]
    if kill_at is not None:
        env["KILL_AT_STEP"] = str(kill_at)
        command = [sys.executable, "-c", KILL_AT_STEP, *command[1:]]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


def rows(run_dir: Path) -> list[tuple[str, str, str, str]]:
    with (run_dir / "logs" / "scalars.csv").open() as handle:
        return [(r["step"], r["epoch"], r["name"], r["value"]) for r in csv.DictReader(handle)]


def final_checkpoint(run_dir: Path) -> dict[str, object]:
    names = sorted((run_dir / "checkpoints").glob("step-*.pt"))
    return {"name": names[-1].name, **load_checkpoint(names[-1])}


def test_own_model_and_loader_resumes_bit_identically_after_sigkill(tmp_path: Path) -> None:
    args = ["--examples", "1024", "--epochs", "2"]  # 16 steps an epoch, 32 in all
    whole = example("own_model_and_loader.py", "--run-dir", str(tmp_path / "whole"), *args, cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    assert "val/accuracy" in whole.stdout

    broken = tmp_path / "broken"
    killed = example("own_model_and_loader.py", "--run-dir", str(broken), *args, cwd=tmp_path, kill_at=27)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert max(int(step) for step, *_ in rows(broken)) == 25  # logged after the step-20 checkpoint
    resumed = example("own_model_and_loader.py", "--run-dir", str(broken), *args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr

    want, got = final_checkpoint(tmp_path / "whole"), final_checkpoint(broken)
    assert want["name"] == got["name"] == "step-00000032.pt"
    for key, tensor in want["context"]["model"].items():  # type: ignore[index]
        assert torch.equal(tensor, got["context"]["model"][key]), key  # type: ignore[index]
    assert rows(broken) == rows(tmp_path / "whole")  # each (step, name) once, same values
    meta = json.loads((broken / "meta.json").read_text())
    assert meta["status"] == "completed" and len(meta["resumes"]) == 1
    assert meta["final_metrics"] == json.loads((tmp_path / "whole" / "meta.json").read_text())["final_metrics"]

    again = example("own_model_and_loader.py", "--run-dir", str(broken), *args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr  # a finished run trains nothing, logs nothing twice
    assert rows(broken) == rows(tmp_path / "whole")
    assert final_checkpoint(broken)["name"] == "step-00000032.pt"


def test_regression_with_own_metric_fits_the_wave(tmp_path: Path) -> None:
    result = example("regression_with_own_metric.py", "--run-dir", str(tmp_path), "--epochs", "15", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    found = re.search(r"train/mse ([0-9.]+)\s+train/r2 ([0-9.-]+)", result.stdout)
    assert found is not None, result.stdout
    mse, r2 = float(found.group(1)), float(found.group(2))
    assert mse < 0.05 and r2 > 0.9  # noise variance is 0.01; sin(x) has variance 0.5
    run_dir = Path(result.stdout.strip().rsplit("run directory: ", 1)[1])
    names = {name for _, _, name, _ in rows(run_dir)}
    assert {"train/mse", "train/r2", "train/loss"} <= names


def test_custom_node_round_trips_forks_and_trains(tmp_path: Path) -> None:
    out = tmp_path / "digits.json"
    result = example("custom_node.py", "--out", str(out), "--examples", "1024", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    saved = json.loads(out.read_text())
    assert saved["type"] == "examples.DigitsMLP" and saved["hidden"] == [256]
    accuracies = [float(a) for a in re.findall(r"train/accuracy ([0-9.]+)", result.stdout)]
    assert len(accuracies) == 2 and min(accuracies) > 0.6
    assert "hidden=(256, 128)" in result.stdout
