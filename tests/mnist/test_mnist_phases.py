"""The phase clock behind ``LEGOML_PROFILE`` and the command-line-only collector freeze."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from legoml_mnist import logs

ROOT = Path(__file__).resolve().parents[2]


def test_marks_add_up_per_phase_in_wall_and_cpu_seconds() -> None:
    clock = logs.PhaseClock()
    clock.mark("data")
    sum(range(20_000))
    clock.mark("train")
    clock.mark("data")
    snap = clock.snapshot()
    assert list(snap["phases"]) == ["data", "train"] == list(snap["phases_cpu"])
    assert all(v >= 0 for v in [*snap["phases"].values(), *snap["phases_cpu"].values()])
    assert snap["last_mark_unix"] >= snap["process_started_unix"]


def test_the_first_phase_counts_from_the_process_start() -> None:
    age = logs.process_age()
    if age is None:
        pytest.skip("no /proc on this system")
    clock = logs.PhaseClock()
    clock.mark("imports")
    assert clock.phases["imports"] >= age > 0  # pytest itself has run before this test


def test_publish_writes_the_file_named_by_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = logs.PhaseClock()
    clock.mark("train")
    target = tmp_path / "phases.json"
    monkeypatch.delenv(logs.PROFILE_ENV, raising=False)
    clock.publish(train_seconds=1.5)
    assert not target.exists()
    monkeypatch.setenv(logs.PROFILE_ENV, str(target))
    clock.publish(train_seconds=1.5)
    data = json.loads(target.read_text())
    assert data["train_seconds"] == 1.5 and set(data["phases"]) == {"train"}


def test_a_library_caller_keeps_its_collector() -> None:
    logs.configure_logging()  # in-process, as tests and notebooks call the CLI's set-up
    before = gc.get_freeze_count()
    logs.freeze_startup_objects()
    assert gc.get_freeze_count() == before


@pytest.mark.integration
def test_a_training_run_reports_every_phase(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.setdefault("LEGOML_DATA_DIR", str(ROOT / "data"))
    env.update(LEGOML_PROFILE=str(tmp_path / "phases.json"), LEGOML_LOG_LEVEL="warning")
    subprocess.run(
        [sys.executable, "-m", "legoml_mnist", "train", "--no-progress", "--limit-train", "512",
         "--limit-test", "200", "--runs-root", str(tmp_path / "runs"), "--epochs", "1", "--set", "threads=1"],
        check=True, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    data = json.loads((tmp_path / "phases.json").read_text())
    assert set(data["phases"]) == {"imports", "config", "data", "build", "writes", "train", "eval"}
    assert data["steps"] == 512 // 128  # one epoch of the default batch of 128
    assert 0 <= data["final_metrics"]["test/accuracy"] <= 1
    assert data["train_seconds"] <= data["phases"]["train"]


def test_only_the_train_command_enables_the_freeze(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A sweep's process trains many trials: freezing there would keep every trial's cyclic
    # garbage alive, so only `train` (one run per process) turns the freeze on.
    from legoml_mnist import cli

    calls: list[str] = []
    monkeypatch.setattr(cli, "enable_startup_freeze", lambda: calls.append("train"))
    assert cli.main(["config"]) == 0
    space = tmp_path / "space.json"
    space.write_text('{"optimizer.lrr": {"low": 0.001, "high": 0.01}}')
    assert cli.main(["sweep", str(space), "--runs-root", str(tmp_path)]) != 0
    assert calls == []
    assert cli.main(["train", "--config", str(tmp_path / "missing.json")]) != 0
    assert calls == ["train"]
    capsys.readouterr()
