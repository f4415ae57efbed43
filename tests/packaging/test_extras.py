"""Each optional extra installs with pip into a fresh folder and its feature works there.

Like ``test_wheels.py``: LegoML wheels come from ``dist/`` (``--no-deps``); the third-party
requirements, the extra's included, are resolved by pip with their own dependencies; torch
and torchvision come from the torch-only ``.venv-pkg``.
"""

from __future__ import annotations

import email.parser
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "dist"
PKG_PYTHON = Path(os.environ.get("LEGOML_PKG_PYTHON", ROOT / ".venv-pkg" / "bin" / "python"))
PROVIDED_BY_BASE = {"torch", "torchvision"}


def _wheel(dist_name: str) -> Path:
    (found,) = sorted(DIST.glob(f"{dist_name}-*.whl"))
    return found


def _requirements(wheel: Path, extras: set[str]) -> list[str]:
    """Full requirement strings: the unconditional ones and those of ``extras``."""
    with zipfile.ZipFile(wheel) as zf:
        meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.parser.Parser().parsestr(zf.read(meta_name).decode())
    chosen = []
    for req in meta.get_all("Requires-Dist") or []:
        spec, _, marker = req.partition(";")
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
        if extra is None or extra.group(1) in extras:
            chosen.append(spec.strip())
    return chosen


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _install(dist_name: str, extras: set[str], target: Path) -> None:
    wheels, third_party, pending, seen = [], [], [(dist_name, extras)], set()
    while pending:
        name, wanted = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        wheel = _wheel(name)
        wheels.append(str(wheel))
        for req in _requirements(wheel, wanted):
            if _name(req).startswith("legoml-"):
                pending.append((_name(req).replace("-", "_"), set()))
            elif _name(req) not in PROVIDED_BY_BASE:
                third_party.append(req)
    pip = [sys.executable, "-m", "pip", "install", "-q", "--target", str(target)]
    subprocess.run([*pip, "--no-deps", *wheels], check=True)
    subprocess.run([*pip, *third_party], check=True)
    leaked = sorted(p.name for p in target.iterdir() if p.name.split("-")[0] in PROVIDED_BY_BASE)
    assert not leaked, f"an extra pulled its own torch: {leaked}"


def _run(script: str, target: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert PKG_PYTHON.exists(), f"{PKG_PYTHON} is missing: run `make test-packaging`"
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(target), "HOME": str(tmp_path),
           "LEGOML_DATA_DIR": str(ROOT / "data"), "LEGOML_LOG_LEVEL": "warning"}
    return subprocess.run([str(PKG_PYTHON), "-c", script, *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=False, timeout=600)


TORCHVISION = """
from torchvision.datasets import FakeData
from legoml.data import BatchLoader, from_dataset
split = from_dataset(FakeData(size=40, image_size=(3, 12, 10), num_classes=4), cache_dir="cache")
assert tuple(split.images.shape) == (40, 3, 12, 10), split.images.shape
again = from_dataset(FakeData(size=40, image_size=(3, 12, 10), num_classes=4), cache_dir="cache")
assert (again.images == split.images).all()
images, labels = next(iter(BatchLoader(split.images, split.labels, batch_size=8)))
assert tuple(images.shape) == (8, 3, 12, 10)
"""

MLFLOW = """
import mlflow
from legoml.track import run
with run(name="extra", root="runs", config={"lr": 0.1}, mlflow=True) as r:
    r.log_scalar("train/loss", 0.5, step=3)
client = mlflow.MlflowClient("sqlite:///" + str(r.dir.parent.resolve() / "mlflow.db"))
(found,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
assert found.info.status == "FINISHED" and found.data.metrics["train/loss"] == 0.5
assert found.data.params["lr"] == "0.1"
"""

APP = """
import sys
from legoml_mnist.cli import main
sys.exit(main(sys.argv[1:]))
"""
ONNX_RUN = """
import sys
import numpy as np
import onnxruntime
session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
images = np.zeros((5, 1, 28, 28), dtype=np.uint8)
outputs = session.run(None, {session.get_inputs()[0].name: images})
print(*outputs[0].shape)
"""
TINY = ["--limit-train", "256", "--limit-test", "128", "--epochs", "1", "--device", "cpu"]


def test_data_torchvision_extra(tmp_path: Path) -> None:
    _install("legoml_data", {"torchvision"}, tmp_path / "site")
    result = _run(TORCHVISION, tmp_path / "site", tmp_path)
    assert result.returncode == 0, result.stderr


def test_track_mlflow_extra(tmp_path: Path) -> None:
    _install("legoml_track", {"mlflow"}, tmp_path / "site")
    result = _run(MLFLOW, tmp_path / "site", tmp_path)
    assert result.returncode == 0, result.stderr


def test_mnist_sweep_and_export_extras(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _install("legoml_mnist", {"sweep", "export"}, site)
    space = tmp_path / "space.yaml"
    space.write_text("optimizer.lr:\n  low: 0.001\n  high: 0.01\n  log: true\nn_trials: 1\n")
    swept = _run(APP, site, tmp_path, "sweep", str(space), "--runs-root", "runs", *TINY)
    assert swept.returncode == 0, swept.stderr[-3000:]
    trial_dir = Path(swept.stdout.strip().splitlines()[-1].removeprefix("run directory: "))
    meta = json.loads((tmp_path / trial_dir / "meta.json").read_text())
    assert meta["status"] == "completed"
    exported = _run(APP, site, tmp_path, "export", "--format", "onnx", "--checkpoint",
                    str(tmp_path / trial_dir))
    assert exported.returncode == 0, exported.stderr[-3000:]
    model = tmp_path / exported.stdout.strip().splitlines()[-1]
    ran = _run(ONNX_RUN, site, tmp_path, str(model))
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.split() == ["5", "10"]
