"""Loader nodes: batch sizes, augmentation and input scaling, and the loaders they build."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import torch

from legoml.data import BatchLoader, BatchTransform, RandomAffine, RandomShift, Split
from legoml.nn import Check, Node
from legoml.nn.types import NonNegative, Positive
from legoml_mnist.errors import AppError

__all__ = ["AugmentNode", "CollatorNode", "DataLoaderNode", "LoaderNode", "Scaling", "rank_share"]

Scaling = tuple[tuple[float, ...], tuple[float, ...]]
"""Per-channel (mean, std) of pixels in [0, 1]: the model sees ``(x / 255 - mean) / std``."""


@dataclass(frozen=True)
class AugmentNode(Node, tag="legoml_mnist.Augment"):
    """Batched random affine augmentation of training images (off when all are zero).

    ``max_shift`` is in pixels, whatever the image size."""

    max_shift: NonNegative = 0
    degrees: Annotated[float, Check(ge=0.0, le=180.0)] = 0.0
    scale: Annotated[float, Check(ge=0.0, lt=1.0)] = 0.0

    def enabled(self) -> bool:
        return self.max_shift > 0 or self.degrees > 0 or self.scale > 0

    def build(self, image_size: tuple[int, int] = (28, 28)) -> BatchTransform | None:
        """The transform for ``image_size`` (H, W) images, or ``None`` when off."""
        if not self.enabled():
            return None
        if self.degrees == 0 and self.scale == 0:
            return RandomShift(max_shift=self.max_shift)
        height, width = image_size
        return RandomAffine(
            degrees=self.degrees,
            translate=(self.max_shift / width, self.max_shift / height),
            scale=(1.0 - self.scale, 1.0 + self.scale),
        )


@dataclass(frozen=True)
class CollatorNode(Node, tag="legoml_mnist.Collator"):
    """How uint8 images become the model's input: ``(x / 255 - mean) / std`` per channel.

    ``None`` leaves the choice to the task: the dataset's statistics for classification,
    plain [0, 1] pixels for reconstruction."""

    mean: tuple[Annotated[float, Check(ge=0.0, le=1.0)], ...] | None = None
    std: tuple[Annotated[float, Check(gt=0.0)], ...] | None = None

    def scaling(self, default: Scaling) -> Scaling:
        return (self.mean or default[0], self.std or default[1])


@dataclass(frozen=True)
class DataLoaderNode(Node, tag="legoml_mnist.Loader"):
    """In-memory batch loader settings (training batches and evaluation batches)."""

    batch_size: Positive = 128
    eval_batch_size: Positive = 10000
    shuffle: bool = True
    drop_last: bool = True
    augment: AugmentNode = field(default_factory=AugmentNode)
    collator: CollatorNode = field(default_factory=CollatorNode)

    def build(
        self,
        split: Split,
        scaling: Scaling,
        *,
        train: bool,
        seed: int = 0,
        device: torch.device | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> BatchLoader:
        """An in-memory loader over ``split``: shuffled and augmented for training, plain and
        in large batches for evaluation; sharded per rank when ``world_size > 1``
        (evaluation shards are not padded: each example is counted once across the ranks)."""
        mean, std = self.collator.scaling(scaling)
        height, width = split.images.shape[-2:]
        return BatchLoader(
            split.images,
            split.labels,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=self.shuffle if train else False,
            seed=seed,
            drop_last=self.drop_last if train else False,
            transform=self.augment.build((int(height), int(width))) if train else None,
            device=device,
            rank=rank,
            world_size=world_size,
            even_shards=train,
            mean=mean,
            std=std,
        )


LoaderNode = DataLoaderNode
"""The name ``DataLoaderNode`` had before the seed's names came back; configs are unchanged
(the tag is ``legoml_mnist.Loader`` under either name)."""


def rank_share(loader: DataLoaderNode, world_size: int) -> DataLoaderNode:
    """``loader.batch_size`` is the global batch: each of ``world_size`` ranks takes an equal
    share, so a DDP run takes the same steps over the same examples as one process."""
    size = loader.batch_size
    if world_size == 1:
        return loader
    if size % world_size:
        raise AppError(
            f"loader.batch_size={size} is the global batch and must split evenly over "
            f"{world_size} ranks: use a multiple of {world_size} (e.g. "
            f"--set loader.batch_size={max(world_size, size - size % world_size)}) "
            "or another --nproc_per_node"
        )
    return loader.fork(batch_size=size // world_size)
