"""The classic MNIST recipe as a hand-written PyTorch loop: the baseline LegoML is compared to.

torchvision ``datasets.MNIST`` (built from the local IDX files, never downloaded) +
``DataLoader`` (batch 128, shuffled, ToTensor + Normalize, no workers), the classic TinyCNN
(conv 32/64 3x3, max-pool, dropout, FC 128, dropout, FC 10), Adam 1e-3, fp32. The full test
set is evaluated after every epoch; only training seconds are counted, and the time to 99%
is the cumulative training time at the first epoch whose test accuracy reaches 99.0%.
Process CPU seconds are recorded beside wall seconds: on a shared machine they are the
steadier measure of the work done.

Run: ``.venv/bin/python benchmarks/bench_classic.py --max-epochs 6``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ClassicCNN", "run", "main"]

REPO = Path(__file__).resolve().parent.parent
MNIST_GZ = REPO / "data" / "mnist"
TARGET = 0.99


class ClassicCNN(nn.Module):
    """The Keras/PyTorch MNIST example network."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.drop1 = nn.Dropout(0.25)
        self.fc1 = nn.Linear(9216, 128)
        self.drop2 = nn.Dropout(0.5)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.drop1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.drop2(x)
        logits: torch.Tensor = self.fc2(x)
        return logits


def _torchvision_root(tmp: Path) -> Path:
    """Lay the local gzipped IDX files out the way torchvision's MNIST expects them."""
    raw = tmp / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in sorted(MNIST_GZ.glob("*-ubyte.gz")):
        with gzip.open(gz, "rb") as src, open(raw / gz.name[: -len(".gz")], "wb") as dst:
            shutil.copyfileobj(src, dst)
    return tmp


def _evaluate(model: nn.Module, loader: torch.utils.data.DataLoader[Any]) -> float:
    model.eval()
    correct = 0
    total = 0
    with torch.inference_mode():
        for x, y in loader:
            correct += int((model(x).argmax(1) == y).sum())
            total += int(y.numel())
    model.train()
    return correct / total


def run(results_dir: Path | str = REPO / "benchmarks" / "results", max_epochs: int = 6,
        seed: int = 0, threads: int = 2, stop_at_target: bool = True) -> dict[str, Any]:
    """Train the classic recipe for up to ``max_epochs`` and write ``classic.json``.

    With ``stop_at_target`` training ends at the first epoch that reaches 99%.
    """
    from torchvision import datasets, transforms

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    tfm = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    with tempfile.TemporaryDirectory(prefix="legoml-classic-") as tmp:
        root = _torchvision_root(Path(tmp))
        train_set = datasets.MNIST(str(root), train=True, download=False, transform=tfm)
        test_set = datasets.MNIST(str(root), train=False, download=False, transform=tfm)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=128, shuffle=True,
                                               num_workers=0)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=1000, shuffle=False,
                                              num_workers=0)
    model = ClassicCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    accuracies: list[float] = []
    seconds: list[float] = []
    cpu_seconds: list[float] = []
    time_to_99: float | None = None
    cpu_to_99: float | None = None
    elapsed = 0.0
    cpu_elapsed = 0.0
    for epoch in range(1, max_epochs + 1):
        model.train()
        start = time.perf_counter()
        cpu_start = time.process_time()
        for x, y in train_loader:
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
        epoch_s = time.perf_counter() - start
        epoch_cpu = time.process_time() - cpu_start
        elapsed += epoch_s
        cpu_elapsed += epoch_cpu
        acc = _evaluate(model, test_loader)
        accuracies.append(acc)
        seconds.append(epoch_s)
        cpu_seconds.append(epoch_cpu)
        print(json.dumps({"classic_epoch": epoch, "train_s": round(epoch_s, 2),
                          "train_cpu_s": round(epoch_cpu, 2), "test_acc": round(acc, 4)}),
              flush=True)
        if time_to_99 is None and acc >= TARGET:
            time_to_99 = elapsed
            cpu_to_99 = cpu_elapsed
            if stop_at_target:
                break

    result: dict[str, Any] = {
        "classic_time_to_99_s": time_to_99,
        "classic_epoch_accuracies": accuracies,
        "classic_epoch_train_seconds": seconds,
        "classic_time_to_99_cpu_s": cpu_to_99,
        "classic_epoch_train_cpu_seconds": cpu_seconds,
        "classic_max_epochs": max_epochs,
        "torch": torch.__version__,
        "threads": threads,
    }
    out = Path(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "classic.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=6)
    parser.add_argument("--results-dir", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--all-epochs", action="store_true",
                        help="keep training after 99%% is reached")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.results_dir, args.max_epochs, args.seed, args.threads,
                         stop_at_target=not args.all_epochs)))


if __name__ == "__main__":
    main()
