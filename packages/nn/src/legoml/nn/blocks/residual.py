"""``ResidualBlockNode``: two convs with a skip connection (ResNet basic block)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from legoml.nn._sizes import resolve_size
from legoml.nn.blocks.activations import ActivationNode, ReluNode
from legoml.nn.blocks.conv import StageNode
from legoml.nn.blocks.normalization import BatchNorm2dNode, NormNode, check_block_norm
from legoml.nn.errors import ConfigError
from legoml.nn.types import Positive

__all__ = ["ResidualBlock", "ResidualBlockNode"]


class ResidualBlock(nn.Module):
    """``activation(body(x) + shortcut(x))``."""

    def __init__(self, body: nn.Module, shortcut: nn.Module, activation: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut
        self.act = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.act(self.body(x) + self.shortcut(x))
        return out


@dataclass(frozen=True)
class ResidualBlockNode(StageNode):
    """conv-norm-act-conv-norm plus a shortcut (a 1x1 conv when the shape changes).

    ``in_channels=None`` takes the previous stage's width, or ``out_channels`` when built
    alone. ``stride=2`` halves the spatial size.

    >>> ResidualBlockNode(out_channels=8, in_channels=4, stride=2).build()(
    ...     torch.zeros(2, 4, 16, 16)).shape
    torch.Size([2, 8, 8, 8])
    """

    out_channels: Positive = 32
    in_channels: Positive | None = None
    kernel_size: Positive = 3
    stride: Positive = 1
    norm: NormNode | None = BatchNorm2dNode()
    activation: ActivationNode = ReluNode()

    def validate(self) -> None:
        check_block_norm(self.norm, self.out_channels, feature_maps=True)
        if self.kernel_size % 2 == 0:
            raise ConfigError(
                f"must be odd so the skip connection keeps the shape, got {self.kernel_size}",
                "kernel_size",
            )

    def output_channels(self, in_channels: int | None) -> int | None:
        resolve_size(self.in_channels, in_channels, "in_channels")
        return self.out_channels

    def _norm(self) -> nn.Module:
        return nn.Identity() if self.norm is None else self.norm.build(self.out_channels)

    def build(self, in_channels: int | None = None) -> nn.Module:
        size = resolve_size(self.in_channels, in_channels, "in_channels")
        cin = self.out_channels if size is None else size
        cout, k, bias = self.out_channels, self.kernel_size, self.norm is None
        body = nn.Sequential(
            nn.Conv2d(cin, cout, k, self.stride, k // 2, bias=bias),
            self._norm(),
            self.activation.build(),
            nn.Conv2d(cout, cout, k, 1, k // 2, bias=bias),
            self._norm(),
        )
        shortcut: nn.Module = nn.Identity()
        if cin != cout or self.stride != 1:
            shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, self.stride, bias=bias), self._norm())
        return ResidualBlock(body, shortcut, self.activation.build())
