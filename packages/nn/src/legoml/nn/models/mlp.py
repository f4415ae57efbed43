"""``MLPNode``: hidden linear blocks and an output layer."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from torch import nn

from legoml.nn.blocks.activations import ActivationNode, ReluNode
from legoml.nn.blocks.linear import LinearBlockNode
from legoml.nn.blocks.normalization import NormNode
from legoml.nn.node import ModelNode
from legoml.nn.types import Positive, Probability

__all__ = ["MLPNode"]


@dataclass(frozen=True)
class MLPNode(ModelNode):
    """[Flatten ->] (Linear -> norm -> activation -> dropout) per hidden width -> Linear.

    ``in_features=None`` makes the first layer an ``nn.LazyLinear`` (sized by the first batch).

    >>> MLPNode(in_features=784, hidden=(64,), out_features=10).build()(
    ...     torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    out_features: Positive = 10
    in_features: Positive | None = None
    hidden: tuple[Positive, ...] = (128,)
    activation: ActivationNode = ReluNode()
    norm: NormNode | None = None
    dropout: Probability = 0.0
    flatten: bool = True

    def validate(self) -> None:
        self.hidden_blocks()  # the norm must fit every hidden width

    def hidden_blocks(self) -> list[LinearBlockNode]:
        """The hidden layers as linear block nodes."""
        sizes = (self.in_features, *self.hidden)
        return [
            LinearBlockNode(
                out_features=width,
                in_features=sizes[i],
                norm=self.norm,
                activation=self.activation,
                dropout=self.dropout,
            )
            for i, width in enumerate(self.hidden)
        ]

    def build(self) -> nn.Module:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if self.flatten:
            layers["flatten"] = nn.Flatten(1)
        for i, block in enumerate(self.hidden_blocks()):
            layers[f"fc{i}"] = block.build()
        width = self.hidden[-1] if self.hidden else self.in_features
        layers["out"] = (
            nn.LazyLinear(self.out_features)
            if width is None
            else nn.Linear(width, self.out_features)
        )
        return nn.Sequential(layers)
