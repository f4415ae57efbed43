"""Builder helpers: turn the experiment's nodes into live objects from the LegoML libraries."""

from __future__ import annotations

import os
import random
from pathlib import Path

import torch
from torch import nn

from legoml.core import cpu_supports_bf16, detect_device
from legoml.data import (
    FASHION_MNIST,
    MNIST,
    BatchLoader,
    BatchTransform,
    RandomAffine,
    RandomShift,
    Split,
    limit,
    load_mnist,
)
from legoml.metrics import F1Score, Metric, MultiClassAccuracy
from legoml.nn import ModuleNode, OptimizerNode, SchedulerNode
from legoml.track import load_model_from_checkpoint
from legoml_mnist.errors import AppError
from legoml_mnist.nodes import AugmentNode, DatasetNode, LoaderNode, MetricsNode

__all__ = [
    "build_augmentation",
    "build_dataloader",
    "build_metrics",
    "build_model",
    "build_optimizer_and_scheduler",
    "load_splits",
    "resolve_device",
    "resolve_precision",
    "seed_everything",
]


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python and torch; ``deterministic`` also asks torch for deterministic kernels."""
    random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an explicit device must be available."""
    if name == "auto":
        return detect_device()
    if name == "cuda" and not torch.cuda.is_available():
        raise AppError("device 'cuda' is not available here: use --device auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise AppError("device 'mps' is not available here: use --device auto or cpu")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: ``auto`` is bf16 on CPUs with native bf16 and on CUDA that has it,
    fp16 on other CUDA devices, fp32 (no autocast) elsewhere."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_supports_bf16():
        return torch.bfloat16
    return None


def load_splits(node: DatasetNode) -> tuple[Split, Split]:
    """The (train, test) splits in memory, cut to ``limit_*`` examples when set."""
    dataset = FASHION_MNIST if node.name == "fashion-mnist" else MNIST
    train = load_mnist("train", root=node.root, dataset=dataset)
    test = load_mnist("test", root=node.root, dataset=dataset)
    if node.limit_train is not None:
        train = limit(train, node.limit_train)
    if node.limit_test is not None:
        test = limit(test, node.limit_test)
    return train, test


def build_augmentation(node: AugmentNode) -> BatchTransform | None:
    """A batched transform for training batches, or ``None`` when augmentation is off."""
    if not node.enabled():
        return None
    if node.degrees == 0 and node.scale == 0:
        return RandomShift(max_shift=node.max_shift)
    return RandomAffine(
        degrees=node.degrees,
        translate=(node.max_shift / 28.0, node.max_shift / 28.0),
        scale=(1.0 - node.scale, 1.0 + node.scale),
    )


def build_dataloader(
    split: Split,
    node: LoaderNode,
    *,
    train: bool,
    seed: int = 0,
    device: torch.device | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> BatchLoader:
    """An in-memory loader over ``split``: shuffled and augmented for training, plain and
    in large batches for evaluation; sharded per rank when ``world_size > 1`` (evaluation
    shards are not padded: each example is counted once across the ranks)."""
    return BatchLoader(
        split.images,
        split.labels,
        batch_size=node.batch_size if train else node.eval_batch_size,
        shuffle=node.shuffle if train else False,
        seed=seed,
        drop_last=node.drop_last if train else False,
        transform=build_augmentation(node.augment) if train else None,
        device=device,
        rank=rank,
        world_size=world_size,
        even_shards=train,
        mean=node.collator.mean,
        std=node.collator.std,
    )


def build_model(
    node: ModuleNode,
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    device: torch.device | None = None,
    channels_last: bool = False,
) -> nn.Module:
    """Build the model, load weights from ``checkpoint`` when given, place it on ``device``."""
    model = node.build()
    if checkpoint is not None:
        load_model_from_checkpoint(model, Path(checkpoint))
    if device is not None:
        model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def build_optimizer_and_scheduler(
    model: nn.Module,
    optimizer: OptimizerNode,
    scheduler: SchedulerNode | None,
    total_steps: int,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    """The optimizer over ``model``'s parameter groups and its per-step schedule."""
    opt = optimizer.build(model)
    sched = scheduler.build(opt, total_steps) if scheduler is not None else None
    return opt, sched


def build_metrics(node: MetricsNode) -> dict[str, Metric]:
    """Named metrics for training and evaluation (``accuracy``, ``top<k>``, ``f1``)."""
    metrics: dict[str, Metric] = {"accuracy": MultiClassAccuracy()}
    for k in node.top_k:
        if k > 1:
            metrics[f"top{k}_accuracy"] = MultiClassAccuracy(top_k=k)
    if node.f1:
        metrics["f1"] = F1Score(num_classes=node.num_classes, average="macro")
    return metrics
