"""Activation nodes (and ``NoopNode``, the identity) for every block's ``activation`` slot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from torch import nn

from legoml.nn._check import Check
from legoml.nn.node import BlockNode

__all__ = [
    "ActivationNode",
    "GELUNode",
    "LeakyReLUNode",
    "NoopNode",
    "ReluNode",
    "SiLUNode",
    "SigmoidNode",
    "TanhNode",
]


class ActivationNode(BlockNode, register=False):
    """Base of activation nodes: a field typed ``ActivationNode`` accepts any of them.

    >>> ReluNode().build()
    ReLU()
    """


@dataclass(frozen=True)
class ReluNode(ActivationNode):
    """``nn.ReLU``."""

    inplace: bool = False

    def build(self) -> nn.Module:
        return nn.ReLU(inplace=self.inplace)


@dataclass(frozen=True)
class GELUNode(ActivationNode):
    """``nn.GELU`` (exact, or the tanh approximation)."""

    approximate: Literal["none", "tanh"] = "none"

    def build(self) -> nn.Module:
        return nn.GELU(approximate=self.approximate)


@dataclass(frozen=True)
class SiLUNode(ActivationNode):
    """``nn.SiLU`` (swish)."""

    inplace: bool = False

    def build(self) -> nn.Module:
        return nn.SiLU(inplace=self.inplace)


@dataclass(frozen=True)
class LeakyReLUNode(ActivationNode):
    """``nn.LeakyReLU``."""

    negative_slope: Annotated[float, Check(ge=0.0)] = 0.01
    inplace: bool = False

    def build(self) -> nn.Module:
        return nn.LeakyReLU(self.negative_slope, inplace=self.inplace)


@dataclass(frozen=True)
class TanhNode(ActivationNode):
    """``nn.Tanh``."""

    def build(self) -> nn.Module:
        return nn.Tanh()


@dataclass(frozen=True)
class SigmoidNode(ActivationNode):
    """``nn.Sigmoid``."""

    def build(self) -> nn.Module:
        return nn.Sigmoid()


@dataclass(frozen=True)
class NoopNode(ActivationNode):
    """``nn.Identity``: "no activation" where a block requires one."""

    def build(self) -> nn.Module:
        return nn.Identity()
