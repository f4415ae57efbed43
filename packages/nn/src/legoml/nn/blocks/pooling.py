"""Pooling nodes for a conv block's ``pool`` slot, or standalone."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from legoml.nn._deprecated import moved_names
from legoml.nn.node import BlockNode
from legoml.nn.types import NonNegative, Positive

__all__ = [
    "AdaptiveAvgPool2dNode",
    "AdaptiveMaxPool2dNode",
    "AvgPool2dNode",
    "GlobalAvgPoolNode",
    "MaxPool2dNode",
    "PoolingNode",
]


class PoolingNode(BlockNode, register=False):
    """Base of pooling nodes: a field typed ``PoolingNode`` accepts any of them.

    >>> MaxPool2dNode(kernel_size=2).build()
    MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)
    """


@dataclass(frozen=True)
class MaxPool2dNode(PoolingNode):
    """``nn.MaxPool2d``; ``stride=None`` means ``stride = kernel_size``."""

    kernel_size: Positive = 2
    stride: Positive | None = None
    padding: NonNegative = 0

    def build(self) -> nn.Module:
        return nn.MaxPool2d(self.kernel_size, self.stride, self.padding)


@dataclass(frozen=True)
class AvgPool2dNode(PoolingNode):
    """``nn.AvgPool2d``; ``stride=None`` means ``stride = kernel_size``."""

    kernel_size: Positive = 2
    stride: Positive | None = None
    padding: NonNegative = 0

    def build(self) -> nn.Module:
        return nn.AvgPool2d(self.kernel_size, self.stride, self.padding)


@dataclass(frozen=True)
class AdaptiveAvgPool2dNode(PoolingNode):
    """``nn.AdaptiveAvgPool2d`` to a fixed (height, width)."""

    output_size: tuple[Positive, Positive] = (1, 1)

    def build(self) -> nn.Module:
        return nn.AdaptiveAvgPool2d(self.output_size)


@dataclass(frozen=True)
class AdaptiveMaxPool2dNode(PoolingNode):
    """``nn.AdaptiveMaxPool2d`` to a fixed (height, width)."""

    output_size: tuple[Positive, Positive] = (1, 1)

    def build(self) -> nn.Module:
        return nn.AdaptiveMaxPool2d(self.output_size)


@dataclass(frozen=True)
class GlobalAvgPoolNode(PoolingNode):
    """Average over all spatial positions: (N, C, H, W) -> (N, C), or (N, C, 1, 1)."""

    flatten: bool = True

    def build(self) -> nn.Module:
        pool = nn.AdaptiveAvgPool2d(1)
        return nn.Sequential(pool, nn.Flatten(1)) if self.flatten else pool


__getattr__ = moved_names(__name__, {"PoolNode": "legoml.nn.blocks.pooling.PoolingNode"})
