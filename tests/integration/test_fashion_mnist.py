"""The dataset seam end to end: Fashion-MNIST classification with class names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_mnist_cli import cli, run_dir_of

pytestmark = pytest.mark.integration

SMALL = ["--limit-train", "1024", "--limit-test", "256", "--no-progress", "--device", "cpu"]
FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot")


def test_fashion_mnist_trains_and_reports_class_names(tmp_path: Path) -> None:
    result = cli("train", "--dataset", "fashion-mnist", *SMALL, "--epochs", "3",
                 "--runs-root", str(tmp_path / "runs"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run_dir = run_dir_of(result)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["dataset"]["type"] == "legoml_mnist.FashionMNIST"
    accuracy = json.loads((run_dir / "meta.json").read_text())["final_metrics"]["test/accuracy"]
    assert 0.5 < accuracy <= 1.0  # far above the 10% of chance after 24 small steps
    for name in FASHION_NAMES:
        assert name in result.stdout  # report rows and confusion rows name the clothes
    assert "true digit" not in result.stdout
    evaluated = cli("eval", "--checkpoint", str(run_dir), "--limit-test", "256", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"test accuracy {accuracy:.4f}" in evaluated.stdout and "Ankle boot" in evaluated.stdout
