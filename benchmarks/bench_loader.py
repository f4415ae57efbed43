"""Loader throughput: legoml BatchLoader vs torchvision datasets.MNIST + DataLoader.

Both read the same verified MNIST training files (torchvision gets the decompressed IDX files
in the ``root/MNIST/raw`` layout it expects, in a temporary folder; nothing is downloaded),
use batch size 128 with shuffling, and run in this one process (torchvision with
``num_workers=0``, its per-sample PIL + ToTensor + Normalize path). Samples/s over one epoch
of training batches; the BatchLoader figure is the median of a few epochs after a warm-up one
(a single epoch takes a few hundredths of a second, too short to time once). Rates per
process-CPU-second are reported beside the wall-clock ones: on shared cores they move less.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from legoml.data import MNIST, BatchLoader, RandomAffine, RandomShift, load_mnist, prepare_mnist

REPO = Path(__file__).resolve().parents[1]
BATCH_SIZE = 128
FAST_EPOCHS = 5


def _data_root() -> Path:
    return Path(os.environ.get("LEGOML_DATA_DIR") or REPO / "data")


def _epoch_seconds(loader: Iterable[Any]) -> tuple[float, float, int]:
    """Wall and process-CPU seconds for one pass, and the samples seen."""
    wall, cpu = time.perf_counter(), time.process_time()
    seen = 0
    for images, labels in loader:
        seen += int(labels.shape[0])
        assert images.dtype == torch.float32
    return time.perf_counter() - wall, time.process_time() - cpu, seen


def _median_rates(loader: BatchLoader, epochs: int = FAST_EPOCHS) -> tuple[float, float]:
    """Median wall and CPU samples/s over ``epochs`` passes after a warm-up pass."""
    _epoch_seconds(loader)  # warm-up: allocator, kernels
    walls, cpus = [], []
    for _ in range(epochs):
        wall, cpu, seen = _epoch_seconds(loader)
        walls.append(seen / wall)
        cpus.append(seen / max(cpu, 1e-9))
    return statistics.median(walls), statistics.median(cpus)


def _torchvision_layout(folder: Path, target: Path) -> None:
    """Decompressed IDX files as torchvision wants them: ``target/MNIST/raw/<name>``."""
    raw = target / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST.files():
        plain, packed = folder / name, folder / f"{name}.gz"
        if plain.is_file():
            os.symlink(plain.resolve(), raw / name)
        else:
            with gzip.open(packed, "rb") as src, (raw / name).open("wb") as dst:
                shutil.copyfileobj(src, dst)


def _torchvision_rates(folder: Path) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="legoml-bench-") as tmp:
        _torchvision_layout(folder, Path(tmp))
        tfm = transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
        )
        dataset = datasets.MNIST(tmp, train=True, transform=tfm, download=False)
        loader = DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True, num_workers=0)
        wall, cpu, seen = _epoch_seconds(loader)
    return seen / wall, seen / max(cpu, 1e-9)


def run(results_dir: Path) -> dict[str, Any]:
    """Measure both loaders, write ``results_dir/loader.json``, return the figures."""
    root = _data_root()
    folder = prepare_mnist(root)
    train = load_mnist("train", root=root)
    torch.manual_seed(0)

    fast, fast_cpu = _median_rates(BatchLoader.from_split(train, BATCH_SIZE, seed=0))
    shifted, _ = _median_rates(
        BatchLoader.from_split(train, BATCH_SIZE, seed=0, transform=RandomShift(2)), epochs=2
    )
    affine, _ = _median_rates(
        BatchLoader.from_split(train, BATCH_SIZE, seed=0, transform=RandomAffine()), epochs=2
    )
    reference, reference_cpu = _torchvision_rates(folder)
    result: dict[str, Any] = {
        "loader_speedup": fast / reference,
        "batchloader_samples_per_s": fast,
        "torchvision_samples_per_s": reference,
        # Per CPU-second of this process: less sensitive to other work on shared cores.
        "loader_speedup_cpu_time": fast_cpu / reference_cpu,
        "batchloader_samples_per_cpu_s": fast_cpu,
        "torchvision_samples_per_cpu_s": reference_cpu,
        "batchloader_random_shift_samples_per_s": shifted,
        "batchloader_random_affine_samples_per_s": affine,
        "random_shift_speedup": shifted / reference,
        "random_affine_speedup": affine / reference,
        "batch_size": BATCH_SIZE,
        "examples": len(train),
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0],
        "torch_version": torch.__version__,
        "reference": "torchvision datasets.MNIST + DataLoader(num_workers=0) + ToTensor+Normalize",
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    target = results_dir / "loader.json"
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, target)
    return result


if __name__ == "__main__":
    figures = run(REPO / "benchmarks" / "results")
    for key, value in figures.items():
        shown = f"{value:,.1f}" if isinstance(value, float) else value
        print(f"{key:42s} {shown}")
