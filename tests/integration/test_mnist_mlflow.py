"""`legoml-mnist train --mlflow`: the run is mirrored to MLflow and read back with the real
client (a SQLite store in the runs root by default, or any URI)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from test_mnist_cli import cli, run_dir_of

mlflow = pytest.importorskip("mlflow")
pytestmark = pytest.mark.integration

TINY = ["--limit-train", "600", "--limit-test", "200", "--epochs", "1", "--no-progress"]


def _runs(uri: str) -> list:  # type: ignore[type-arg]
    client = mlflow.MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_runs(experiments))


def test_train_mirrors_scalars_params_and_status_to_the_default_store(tmp_path: Path) -> None:
    result = cli("train", *TINY, "--runs-root", str(tmp_path / "runs"), "--mlflow", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run_dir = run_dir_of(result)
    (mirrored,) = _runs(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    assert mirrored.info.status == "FINISHED"
    meta = json.loads((run_dir / "meta.json").read_text())
    for name, value in meta["final_metrics"].items():
        assert mirrored.data.metrics[name] == pytest.approx(value)
    with (run_dir / "logs" / "scalars.csv").open() as handle:
        names = {row["name"] for row in csv.DictReader(handle)}
    assert names <= set(mirrored.data.metrics)
    assert mirrored.data.params["loader.batch_size"] == "128"
    assert mirrored.data.params["dataset.limit_train"] == "600"


def test_a_given_uri_is_used_and_nothing_is_written_in_the_runs_root(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    result = cli("train", *TINY, "--runs-root", str(tmp_path / "runs"), "--mlflow", uri, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "runs" / "mlflow.db").exists()
    (mirrored,) = _runs(uri)
    assert mirrored.info.status == "FINISHED" and "test/accuracy" in mirrored.data.metrics
