"""The second task end to end: the convolutional auto-encoder trains on a real MNIST subset,
writes its reconstruction grid, and a SIGKILLed run resumes to the same bits."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
import torch
from reliability_helpers import cli, only_run_dir, run_until_killed

from legoml.track import load_checkpoint

pytestmark = pytest.mark.integration

SMALL = ["--limit-train", "4096", "--limit-test", "256", "--no-progress", "--device", "cpu"]


def run_dir_of(result: subprocess.CompletedProcess[str]) -> Path:
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("run directory: "), result.stdout
    return Path(last.removeprefix("run directory: "))


def _rows(run_dir: Path) -> list[tuple[str, str, str]]:
    with (run_dir / "logs" / "scalars.csv").open() as handle:
        return [(r["step"], r["name"], r["value"]) for r in csv.DictReader(handle)]


def test_autoencoder_trains_resumes_bit_identically_and_writes_its_grid(tmp_path: Path) -> None:
    flags = [*SMALL, "--task", "reconstruction", "--epochs", "2", "--seed", "5",
             "--checkpoint-every-steps", "16", "--set", "loader.batch_size=64",
             "--set", "threads=1", "--set", "deterministic=true", "--set", "log_every_steps=10"]
    whole = cli("train", *flags, "--runs-root", str(tmp_path / "whole"), cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    reference = run_dir_of(whole)
    meta = json.loads((reference / "meta.json").read_text())
    mse = meta["final_metrics"]["test/mse"]
    assert 0.0 < mse < 0.05  # well below the 0.067 of predicting the mean training image
    assert "test mse" in whole.stdout
    png = reference / "artifacts" / "reconstructions.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    names = {name for _, name, _ in _rows(reference)}
    assert {"train/mse", "train/loss", "test/mse", "test/mae", "train/step_loss"} <= names

    # the same run killed with SIGKILL once its step-48 checkpoint exists, then resumed
    parts = tmp_path / "parts"
    outcome = run_until_killed(
        ["train", *flags, "--runs-root", str(parts)], cwd=tmp_path, runs_root=parts,
        trigger=lambda run_dir: "step 48" if (run_dir / "checkpoints" / "step-00000048.pt").is_file() else None,
    )
    assert outcome.killed, outcome
    part = only_run_dir(parts)
    resumed = cli("train", "--resume", str(part), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    last = max(p.name for p in (reference / "checkpoints").glob("step-*.pt"))
    want, got = (load_checkpoint(d / "checkpoints" / last) for d in (reference, part))
    for key, tensor in want["context"]["model"].items():
        assert torch.equal(tensor, got["context"]["model"][key]), key
    assert json.loads((part / "meta.json").read_text())["final_metrics"]["test/mse"] == mse
    assert sorted(_rows(part)) == sorted(_rows(reference))
    assert (part / "artifacts" / "reconstructions.png").is_file()
