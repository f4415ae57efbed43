"""Conv stages: ``StageNode`` (what an encoder stacks) and ``ConvBlockNode``."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from torch import nn

from legoml.nn._sizes import resolve_size
from legoml.nn.blocks.activations import ActivationNode, ReluNode
from legoml.nn.blocks.normalization import NormNode, check_block_norm
from legoml.nn.blocks.pooling import PoolingNode
from legoml.nn.node import BlockNode
from legoml.nn.types import NonNegative, Positive, Probability

__all__ = ["ConvBlockNode", "StageNode"]


class StageNode(BlockNode, register=False):
    """A stage of a conv encoder: maps (N, C_in, H, W) to (N, C_out, H', W').

    The encoder passes each stage the channel count of the stage before it.
    """

    def build(self, in_channels: int | None = None) -> nn.Module:
        raise NotImplementedError(f"{type(self).__name__} does not define build()")

    def output_channels(self, in_channels: int | None) -> int | None:
        """Channels this stage outputs for ``in_channels`` inputs (refuses a mismatch)."""
        raise NotImplementedError(f"{type(self).__name__} does not define output_channels()")


@dataclass(frozen=True)
class ConvBlockNode(StageNode):
    """Conv2d -> optional norm -> activation -> optional pool -> optional channel dropout.

    ``pool_first`` pools right after the conv instead (conv -> pool -> norm -> activation):
    the norm and activation then work on a quarter of the values, a large saving on CPU.

    ``in_channels=None`` takes the previous stage's width (``nn.LazyConv2d`` when built
    alone); ``padding=None`` keeps the size for odd kernels (``kernel_size // 2``);
    ``bias=None`` means a bias only when there is no norm.

    >>> block = ConvBlockNode(out_channels=8, in_channels=1, pool=MaxPool2dNode())
    >>> block.build()(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 8, 14, 14])
    """

    out_channels: Positive = 32
    in_channels: Positive | None = None
    kernel_size: Positive = 3
    stride: Positive = 1
    padding: NonNegative | None = None
    bias: bool | None = None
    norm: NormNode | None = None
    activation: ActivationNode = ReluNode()
    pool: PoolingNode | None = None
    dropout: Probability = 0.0
    pool_first: bool = False

    def validate(self) -> None:
        check_block_norm(self.norm, self.out_channels, feature_maps=True)

    def output_channels(self, in_channels: int | None) -> int | None:
        resolve_size(self.in_channels, in_channels, "in_channels")
        return self.out_channels

    def build(self, in_channels: int | None = None) -> nn.Module:
        size = resolve_size(self.in_channels, in_channels, "in_channels")
        padding = self.kernel_size // 2 if self.padding is None else self.padding
        bias = self.norm is None if self.bias is None else self.bias
        geometry = (self.kernel_size, self.stride, padding)
        conv = (
            nn.LazyConv2d(self.out_channels, *geometry, bias=bias)
            if size is None
            else nn.Conv2d(size, self.out_channels, *geometry, bias=bias)
        )
        layers: OrderedDict[str, nn.Module] = OrderedDict(conv=conv)
        if self.pool is not None and self.pool_first:
            layers["pool"] = self.pool.build()
        if self.norm is not None:
            layers["norm"] = self.norm.build(self.out_channels)
        layers["act"] = self.activation.build()
        if self.pool is not None and not self.pool_first:
            layers["pool"] = self.pool.build()
        if self.dropout > 0:
            layers["drop"] = nn.Dropout2d(self.dropout)
        return nn.Sequential(layers)
