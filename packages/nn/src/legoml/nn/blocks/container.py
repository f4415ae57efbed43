"""``SequentialNode`` and the small layers that make it useful (flatten, dropout)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from legoml.nn.node import BlockNode, ModuleNode
from legoml.nn.types import Probability

__all__ = ["DropoutNode", "FlattenNode", "SequentialNode"]


@dataclass(frozen=True)
class FlattenNode(BlockNode):
    """``nn.Flatten``."""

    start_dim: int = 1
    end_dim: int = -1

    def build(self) -> nn.Module:
        return nn.Flatten(self.start_dim, self.end_dim)


@dataclass(frozen=True)
class DropoutNode(BlockNode):
    """``nn.Dropout``."""

    p: Probability = 0.5

    def build(self) -> nn.Module:
        return nn.Dropout(self.p)


@dataclass(frozen=True)
class SequentialNode(BlockNode):
    """``nn.Sequential`` of any module nodes, built in order (sizes left ``None`` become lazy).

    >>> SequentialNode([FlattenNode(), LinearBlockNode(out_features=3)]).build()(
    ...     torch.zeros(2, 1, 4, 4)).shape
    torch.Size([2, 3])
    """

    layers: list[ModuleNode] = field(default_factory=list)

    def build(self) -> nn.Module:
        return nn.Sequential(*(layer.build() for layer in self.layers))
