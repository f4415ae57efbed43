"""``EncoderNode``: a stack of conv stages (conv blocks, residual blocks) with downsampling."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated

from torch import nn

from legoml.nn._check import Check
from legoml.nn._sizes import resolve_size
from legoml.nn.blocks.activations import ActivationNode, ReluNode
from legoml.nn.blocks.conv import ConvBlockNode, StageNode
from legoml.nn.blocks.normalization import NormNode
from legoml.nn.blocks.pooling import MaxPool2dNode, PoolingNode
from legoml.nn.errors import ConfigError
from legoml.nn.node import ModelNode
from legoml.nn.types import Positive

__all__ = ["EncoderNode"]


_RELU = ReluNode()
_MAX_POOL = MaxPool2dNode()


def _default_blocks() -> list[StageNode]:
    return [
        ConvBlockNode(out_channels=32, pool=MaxPool2dNode()),
        ConvBlockNode(out_channels=64, pool=MaxPool2dNode()),
    ]


@dataclass(frozen=True)
class EncoderNode(StageNode, ModelNode):
    """Conv stages applied in order; each stage gets the previous stage's channel count.

    The default halves the size twice: (N, 1, 28, 28) -> (N, 64, 7, 7). A stage's own
    ``in_channels`` may stay ``None``; a set one must match (checked at construction).

    >>> EncoderNode.from_channels((8, 16), in_channels=1).build()(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 16, 7, 7])
    """

    in_channels: Positive | None = 1
    blocks: Annotated[list[StageNode], Check(min_len=1)] = field(default_factory=_default_blocks)

    @classmethod
    def from_channels(
        cls,
        channels: Sequence[int],
        *,
        in_channels: int | None = 1,
        kernel_size: int = 3,
        norm: NormNode | None = None,
        activation: ActivationNode = _RELU,
        pool: PoolingNode | None = _MAX_POOL,
        dropout: float = 0.0,
    ) -> EncoderNode:
        """One ``ConvBlockNode`` per width, all alike (the default 2x2 max pool downsamples)."""
        blocks: list[StageNode] = [
            ConvBlockNode(
                out_channels=c,
                kernel_size=kernel_size,
                norm=norm,
                activation=activation,
                pool=pool,
                dropout=dropout,
            )
            for c in channels
        ]
        return cls(in_channels=in_channels, blocks=blocks)

    def validate(self) -> None:
        self.output_channels(None)

    def output_channels(self, in_channels: int | None) -> int | None:
        width = resolve_size(self.in_channels, in_channels, "in_channels")
        for i, block in enumerate(self.blocks):
            try:
                width = block.output_channels(width)
            except ConfigError as err:
                raise err.under(f"blocks[{i}]") from None
        return width

    def build(self, in_channels: int | None = None) -> nn.Module:
        self.output_channels(in_channels)
        width = resolve_size(self.in_channels, in_channels, "in_channels")
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i, block in enumerate(self.blocks):
            layers[f"block{i}"] = block.build(width)
            width = block.output_channels(width)
        return nn.Sequential(layers)
