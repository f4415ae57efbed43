"""The legoml-mnist command end to end on a small real-MNIST subset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--limit-train", "1200", "--limit-test", "400", "--epochs", "1", "--no-progress"]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.setdefault("LEGOML_DATA_DIR", str(ROOT / "data"))
    env["LEGOML_LOG_LEVEL"] = "warning"
    return subprocess.run(
        [sys.executable, "-m", "legoml_mnist", *args],
        cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=600,
    )


def run_dir_of(result: subprocess.CompletedProcess[str]) -> Path:
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("run directory: "), result.stdout
    return Path(last.removeprefix("run directory: "))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    work = tmp_path_factory.mktemp("cli")
    result = cli("train", *SMALL, "--runs-root", str(work / "runs"), "--seed", "3", cwd=work)
    assert result.returncode == 0, result.stderr
    return work, result


def test_train_writes_a_complete_run_directory(trained: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    work, result = trained
    run_dir = run_dir_of(result)
    assert run_dir.parent == work / "runs"
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["status"] == "completed"
    assert list(meta)[-1] == "final_metrics"
    accuracy = meta["final_metrics"]["test/accuracy"]
    assert 0.5 < accuracy <= 1.0
    assert meta["final_metrics"]["test/loss"] > 0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["type"] == "legoml_mnist.TrainerForImageClassification"
    assert config["dataset"]["limit_train"] == 1200
    rows = (run_dir / "logs" / "scalars.csv").read_text().splitlines()
    assert rows[0] == "step,epoch,name,value,time"
    names = {row.split(",")[2] for row in rows[1:]}
    assert {"train/loss", "train/accuracy", "test/accuracy", "test/loss"} <= names
    report = (run_dir / "logs" / "eval_report.txt").read_text()
    assert "precision" in report and "recall" in report and "f1-score" in report
    png = run_dir / "artifacts" / "confusion_matrix.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    checkpoints = sorted((run_dir / "checkpoints").glob("step-*.pt"))
    assert checkpoints, "training left no checkpoint"
    assert f"test accuracy {accuracy:.4f}" in result.stdout
    assert "confusion matrix" in result.stdout


def test_eval_reports_the_same_accuracy_from_the_checkpoint(
    trained: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    work, result = trained
    run_dir = run_dir_of(result)
    accuracy = json.loads((run_dir / "meta.json").read_text())["final_metrics"]["test/accuracy"]
    evaluated = cli("eval", "--runs-root", str(work / "runs"), "--limit-test", "400", cwd=work)
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"test accuracy {accuracy:.4f}" in evaluated.stdout
    assert "macro avg" in evaluated.stdout
    assert (run_dir / "artifacts" / "eval_confusion_matrix.png").is_file()


def test_printed_config_reproduces_the_run(
    trained: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    _, first = trained
    expected = json.loads((run_dir_of(first) / "meta.json").read_text())["final_metrics"]
    printed = cli("config", cwd=tmp_path)
    assert printed.returncode == 0
    config = tmp_path / "config.json"
    config.write_text(printed.stdout)
    again = cli("train", "--config", str(config), *SMALL, "--seed", "3",
                "--runs-root", str(tmp_path / "runs"), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    got = json.loads((run_dir_of(again) / "meta.json").read_text())["final_metrics"]
    assert got == expected


def _assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0]


def test_set_with_an_unknown_key(tmp_path: Path) -> None:
    result = cli("train", "--set", "optimizer.lrr=0.1", cwd=tmp_path)
    _assert_one_line_error(result, "lrr")


def test_set_with_a_wrong_type(tmp_path: Path) -> None:
    result = cli("train", "--set", "loader.batch_size=big", cwd=tmp_path)
    _assert_one_line_error(result, "loader.batch_size", "expected int")


def test_missing_config_file(tmp_path: Path) -> None:
    result = cli("train", "--config", str(tmp_path / "nope.json"), cwd=tmp_path)
    _assert_one_line_error(result, "nope.json", "does not exist")


def test_malformed_json_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "legoml_mnist.TrainerForImageClassification", "epochs": ')
    result = cli("train", "--config", str(bad), cwd=tmp_path)
    _assert_one_line_error(result, "bad.json", "JSON")


def test_eval_with_a_missing_checkpoint(tmp_path: Path) -> None:
    result = cli("eval", "--checkpoint", str(tmp_path / "gone.pt"), cwd=tmp_path)
    _assert_one_line_error(result, "gone.pt")


def test_eval_with_no_runs_at_all(tmp_path: Path) -> None:
    result = cli("eval", "--runs-root", str(tmp_path / "empty"), cwd=tmp_path)
    _assert_one_line_error(result, "no checkpoint")


def test_eval_with_a_corrupt_checkpoint(tmp_path: Path) -> None:
    corrupt = tmp_path / "step-00000010.pt"
    torch.save({"context": {"model": {}}}, corrupt)
    corrupt.write_bytes(corrupt.read_bytes()[:40])
    result = cli("eval", "--checkpoint", str(corrupt), cwd=tmp_path)
    _assert_one_line_error(result, "step-00000010.pt")


def test_bad_flag_value(tmp_path: Path) -> None:
    result = cli("train", "--epochs", "many", cwd=tmp_path)
    _assert_one_line_error(result, "--epochs")
