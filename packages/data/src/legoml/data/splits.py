"""A split in memory (``Split``) and its deterministic views: train/val, first N, subset.

Every view keeps the split's facts (mean, std, classes), so a loader built from a view
normalizes exactly like one built from the whole split.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from legoml.data._seeding import derive_seed
from legoml.data.errors import DataConfigError
from legoml.data.normalize import channel_stats

__all__ = ["Split", "limit", "subset", "train_val_split"]

_SPLIT_STREAM = 0x5641_4C53


@dataclass(frozen=True)
class Split:
    """One split in memory, with the facts a loader and a report need.

    Attributes:
        images: uint8 N×H×W (grey) or N×C×H×W.
        labels: int64 N.
        mean, std: per-channel (length 1 or C) statistics of pixels scaled to [0, 1];
            ``BatchLoader.from_split`` normalizes with them. The defaults only rescale.
        classes: class names indexed by label (empty when unknown).

    Example:
        >>> import torch
        >>> data = Split(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.arange(4),
        ...              mean=(0.5, 0.4, 0.3), std=(0.2,))
        >>> len(data), data.std
        (4, (0.2,))
    """

    images: Tensor
    labels: Tensor
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        channels = int(self.images.shape[1]) if self.images.ndim == 4 else 1
        mean, std = channel_stats(self.mean, self.std, channels, "Split")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "classes", tuple(self.classes))

    def __len__(self) -> int:
        return int(self.labels.shape[0])


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
    """The first ``count`` examples (all of them when ``count`` is None or larger), facts kept."""
    if count is None or count >= len(split):
        return split
    if count < 0:
        raise DataConfigError(f"limit needs count >= 0, got {count}")
    return dataclasses.replace(split, images=split.images[:count], labels=split.labels[:count])


def subset(split: Split, indices: Tensor) -> Split:
    """The examples at ``indices`` (an integer tensor), in that order, facts kept."""
    if indices.is_floating_point():
        raise DataConfigError(f"subset indices must be integers, got {indices.dtype}")
    index = indices.to(device=split.labels.device, dtype=torch.int64)
    images = split.images.index_select(0, index)
    return dataclasses.replace(split, images=images, labels=split.labels.index_select(0, index))
