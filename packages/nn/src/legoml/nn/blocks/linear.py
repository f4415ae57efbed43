"""``LinearBlockNode``: Linear -> optional norm -> activation -> optional dropout."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from torch import nn

from legoml.nn._sizes import resolve_size
from legoml.nn.blocks.activations import ActivationNode, ReluNode
from legoml.nn.blocks.normalization import NormNode, check_block_norm
from legoml.nn.node import BlockNode
from legoml.nn.types import Positive, Probability

__all__ = ["LinearBlockNode"]


@dataclass(frozen=True)
class LinearBlockNode(BlockNode):
    """A fully connected layer with its norm, activation and dropout.

    ``in_features=None`` takes the width passed by the container (``nn.LazyLinear`` when
    built alone); ``bias=None`` means a bias only when there is no norm.

    >>> LinearBlockNode(out_features=4, in_features=3).build()(torch.zeros(2, 3)).shape
    torch.Size([2, 4])
    """

    out_features: Positive = 128
    in_features: Positive | None = None
    bias: bool | None = None
    norm: NormNode | None = None
    activation: ActivationNode | None = ReluNode()
    dropout: Probability = 0.0

    def validate(self) -> None:
        check_block_norm(self.norm, self.out_features, feature_maps=False)

    def build(self, in_features: int | None = None) -> nn.Module:
        size = resolve_size(self.in_features, in_features, "in_features")
        bias = self.norm is None if self.bias is None else self.bias
        linear = (
            nn.LazyLinear(self.out_features, bias=bias)
            if size is None
            else nn.Linear(size, self.out_features, bias=bias)
        )
        layers: OrderedDict[str, nn.Module] = OrderedDict(linear=linear)
        if self.norm is not None:
            layers["norm"] = self.norm.build(self.out_features)
        if self.activation is not None:
            layers["act"] = self.activation.build()
        if self.dropout > 0:
            layers["drop"] = nn.Dropout(self.dropout)
        return nn.Sequential(layers)
