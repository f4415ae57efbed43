"""Deterministic views of a split: train/validation split, first-N limit, index subset."""

from __future__ import annotations

import torch
from torch import Tensor

from legoml.data._seeding import derive_seed
from legoml.data.errors import DataConfigError
from legoml.data.mnist import Split

__all__ = ["limit", "subset", "train_val_split"]

_SPLIT_STREAM = 0x5641_4C53


def train_val_split(split: Split, val_size: int = 5000, seed: int = 0) -> tuple[Split, Split]:
    """Hold out ``val_size`` examples chosen by ``seed``; both parts keep the original order.

    The same (split, val_size, seed) always gives the same two parts, on any machine.

    Example:
        >>> import torch
        >>> data = Split(torch.zeros(10, 2, 2, dtype=torch.uint8), torch.arange(10))
        >>> train, val = train_val_split(data, val_size=3, seed=0)
        >>> len(train), len(val)
        (7, 3)
    """
    if not 0 <= val_size <= len(split):
        raise DataConfigError(
            f"val_size must lie in [0, {len(split)}] for a split of {len(split)} examples, "
            f"got {val_size}"
        )
    generator = torch.Generator().manual_seed(derive_seed(seed, _SPLIT_STREAM, len(split)))
    order = torch.randperm(len(split), generator=generator)
    val_indices, _ = order[:val_size].sort()
    train_indices, _ = order[val_size:].sort()
    return subset(split, train_indices), subset(split, val_indices)


def limit(split: Split, count: int | None) -> Split:
    """The first ``count`` examples (all of them when ``count`` is None or larger)."""
    if count is None or count >= len(split):
        return split
    if count < 0:
        raise DataConfigError(f"limit needs count >= 0, got {count}")
    return Split(images=split.images[:count], labels=split.labels[:count])


def subset(split: Split, indices: Tensor) -> Split:
    """The examples at ``indices`` (an integer tensor), in that order."""
    if indices.is_floating_point():
        raise DataConfigError(f"subset indices must be integers, got {indices.dtype}")
    index = indices.to(device=split.labels.device, dtype=torch.int64)
    return Split(
        images=split.images.index_select(0, index), labels=split.labels.index_select(0, index)
    )
