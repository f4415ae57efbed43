"""The default ``legoml-mnist train`` recipe in plain PyTorch, for the end-to-end peers.

``e2e_hand.py`` and ``e2e_lightning.py`` import this (and nothing from LegoML: the Lightning
script runs in ``.venv-peers``). Same model, optimizer, schedule, loss, precision, memory
format, batches and evaluation as the app's default ``TrainerNode``; the data is the MNIST
under ``data/mnist`` read as a hand-written script reads it (gunzip + IDX header, no
checksum). Each script prints one JSON line: phase seconds, training seconds, accuracy.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
BATCH = 128
EVAL_BATCH = 10_000
EPOCHS = 0.65
MAX_LR = 1e-2
WEIGHT_DECAY = 5e-4
LABEL_SMOOTHING = 0.1
MEAN, STD = 0.1307, 0.3081


def process_age() -> float:
    """Seconds since this process started (Linux ``/proc``; 0 elsewhere)."""
    try:
        stat = Path("/proc/self/stat").read_text()
        start = int(stat.rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
        return max(0.0, float(Path("/proc/uptime").read_text().split()[0]) - start)
    except (OSError, ValueError, IndexError):
        return 0.0


class Phases:
    """Wall seconds per phase; the first phase counts from the process's start."""

    def __init__(self) -> None:
        self.last = time.perf_counter() - process_age()
        self.phases: dict[str, float] = {}

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = self.phases.get(name, 0.0) + now - self.last
        self.last = now

    def emit(self, **extra: Any) -> None:
        phases = {k: round(v, 4) for k, v in self.phases.items()}
        sys.stdout.write(json.dumps({"phases": phases, **extra}) + "\n")
        sys.stdout.flush()


def read_idx(path: Path) -> torch.Tensor:
    """An unsigned-byte IDX file (gzipped) as a uint8 tensor."""
    payload = gzip.decompress(path.read_bytes())
    ndim = payload[3]
    dims = struct.unpack(f">{ndim}I", payload[4 : 4 + 4 * ndim])
    return torch.frombuffer(bytearray(payload[4 + 4 * ndim :]), dtype=torch.uint8).reshape(dims)


def load_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    folder = Path(os.environ.get("LEGOML_DATA_DIR") or ROOT / "data") / "mnist"
    return (
        read_idx(folder / "train-images-idx3-ubyte.gz"),
        read_idx(folder / "train-labels-idx1-ubyte.gz").long(),
        read_idx(folder / "t10k-images-idx3-ubyte.gz"),
        read_idx(folder / "t10k-labels-idx1-ubyte.gz").long(),
    )


def normalize(images: torch.Tensor) -> torch.Tensor:
    return ((images.float() - MEAN * 255) / (STD * 255)).unsqueeze(1)


def build_model() -> nn.Module:
    """The app's default TinyCNN: stride-2 stem, pool right after each later conv."""

    def block(cin: int, cout: int, stride: int = 1, pool: bool = False) -> list[nn.Module]:
        conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        return [conv, *([nn.MaxPool2d(2)] if pool else []), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(1, 16, stride=2), *block(16, 32, pool=True), *block(32, 64, pool=True),
        nn.Flatten(), nn.Linear(576, 128), nn.ReLU(), nn.Linear(128, 10),
    ).to(memory_format=torch.channels_last)


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """AdamW (fused), weight decay on conv/linear weights only."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=MAX_LR, fused=True)


def make_scheduler(optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=MAX_LR, total_steps=total_steps, pct_start=0.25, div_factor=25.0,
        final_div_factor=1e4, anneal_strategy="cos", cycle_momentum=False,
    )


def amp_dtype() -> torch.dtype | None:
    """bf16 autocast where the CPU has native bf16 (as the app's ``precision="auto"``)."""
    try:
        return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None
    except (AttributeError, RuntimeError):
        return None


class Batches:
    """Shuffled (seed + epoch), normalized, channels_last training batches, drop_last."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> None:
        self.images, self.labels, self.seed, self.epoch = images, labels, seed, 0

    def __len__(self) -> int:
        return len(self.labels) // BATCH

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.labels), generator=torch.Generator().manual_seed(self.seed + self.epoch))
        self.epoch += 1
        for k in range(len(self)):
            index = order[k * BATCH : (k + 1) * BATCH]
            x = normalize(self.images.index_select(0, index)).contiguous(memory_format=torch.channels_last)
            yield x, self.labels.index_select(0, index)


def total_steps(batches: Batches) -> int:
    return max(1, round(EPOCHS * len(batches)))


@torch.inference_mode()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Test accuracy in evaluation batches, same autocast and layout as training."""
    model.eval()
    dtype, correct = amp_dtype(), 0
    for start in range(0, len(labels), EVAL_BATCH):
        x = normalize(images[start : start + EVAL_BATCH]).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            logits = model(x)
        correct += int((logits.argmax(1) == labels[start : start + EVAL_BATCH]).sum())
    return correct / len(labels)
