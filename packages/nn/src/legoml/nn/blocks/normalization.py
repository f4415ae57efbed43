"""Normalization nodes. Their size may be left ``None``: the enclosing block passes its width.

Blocks call ``norm.build(num_features)``; standalone, a batch norm with no size becomes the
lazy variant, while layer/group norm need their size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

from torch import nn

from legoml.nn._check import Check
from legoml.nn._sizes import resolve_size
from legoml.nn.errors import BuildError, ConfigError
from legoml.nn.node import BlockNode
from legoml.nn.types import Positive, PositiveFloat

__all__ = [
    "BatchNorm1dNode",
    "BatchNorm2dNode",
    "GroupNormNode",
    "LayerNormNode",
    "NormNode",
    "check_block_norm",
]

Momentum = Annotated[float, Check(gt=0.0, le=1.0)]


class NormNode(BlockNode, register=False):
    """Base of normalization nodes: a field typed ``NormNode`` accepts any of them.

    >>> BatchNorm2dNode().build(16).num_features
    16
    """

    def build(self, num_features: int | None = None) -> nn.Module:
        raise NotImplementedError(f"{type(self).__name__} does not define build()")

    def check_width(self, width: int) -> None:
        """Raise ``ConfigError`` if this norm cannot follow a layer of ``width`` features."""
        for name in ("num_features", "num_channels", "normalized_shape"):
            resolve_size(getattr(self, name, None), width, name)


@dataclass(frozen=True)
class _BatchNormNode(NormNode, register=False):
    """Shared fields and build of the batch-norm nodes; a lazy module when the size is unknown."""

    num_features: Positive | None = None
    eps: PositiveFloat = 1e-5
    momentum: Momentum = 0.1
    affine: bool = True
    track_running_stats: bool = True

    _module_classes: ClassVar[tuple[type[nn.Module], type[nn.Module]]]  # (sized, lazy)

    def build(self, num_features: int | None = None) -> nn.Module:
        size = resolve_size(self.num_features, num_features, "num_features")
        args = (self.eps, self.momentum, self.affine, self.track_running_stats)
        sized, lazy = self._module_classes
        return lazy(*args) if size is None else sized(size, *args)


@dataclass(frozen=True)
class BatchNorm2dNode(_BatchNormNode):
    """``nn.BatchNorm2d`` over (N, C, H, W); ``nn.LazyBatchNorm2d`` when the size is unknown."""

    _module_classes = (nn.BatchNorm2d, nn.LazyBatchNorm2d)


@dataclass(frozen=True)
class BatchNorm1dNode(_BatchNormNode):
    """``nn.BatchNorm1d`` over (N, C) or (N, C, L); lazy when the size is unknown."""

    _module_classes = (nn.BatchNorm1d, nn.LazyBatchNorm1d)


@dataclass(frozen=True)
class LayerNormNode(NormNode):
    """``nn.LayerNorm`` over the last dimension (features of a linear block).

    For conv feature maps use ``GroupNormNode(num_groups=1)``, which normalizes (C, H, W).
    """

    normalized_shape: Positive | None = None
    eps: PositiveFloat = 1e-5
    elementwise_affine: bool = True

    def build(self, num_features: int | None = None) -> nn.Module:
        size = resolve_size(self.normalized_shape, num_features, "normalized_shape")
        if size is None:
            raise BuildError("LayerNormNode needs normalized_shape when built on its own")
        return nn.LayerNorm(size, self.eps, self.elementwise_affine)


@dataclass(frozen=True)
class GroupNormNode(NormNode):
    """``nn.GroupNorm``: channels split into ``num_groups`` groups (1 group ~ layer norm)."""

    num_groups: Positive = 8
    num_channels: Positive | None = None
    eps: PositiveFloat = 1e-5
    affine: bool = True

    def validate(self) -> None:
        if self.num_channels is not None:
            self.check_width(self.num_channels)

    def check_width(self, width: int) -> None:
        super().check_width(width)
        if width % self.num_groups:
            raise ConfigError(
                f"{self.num_groups} groups do not divide {width} channels; "
                "pick a divisor of the channel count",
                "num_groups",
            )

    def build(self, num_features: int | None = None) -> nn.Module:
        size = resolve_size(self.num_channels, num_features, "num_channels")
        if size is None:
            raise BuildError("GroupNormNode needs num_channels when built on its own")
        self.check_width(size)
        return nn.GroupNorm(self.num_groups, size, self.eps, self.affine)


def check_block_norm(norm: NormNode | None, width: int, *, feature_maps: bool) -> None:
    """Refuse, under the field ``norm``, a norm that cannot follow a block's layer: the wrong
    size for its ``width``, or the wrong kind of input (``feature_maps``: (N, C, H, W) from a
    conv, else (N, C) from a linear layer). Every block with a ``norm`` slot calls this."""
    if norm is None:
        return
    try:
        norm.check_width(width)
    except ConfigError as err:
        raise err.under("norm") from None
    if feature_maps and isinstance(norm, (LayerNormNode, BatchNorm1dNode)):
        raise ConfigError(
            f"{type(norm).__name__} does not fit conv feature maps; use "
            "BatchNorm2dNode or GroupNormNode (num_groups=1 acts as a layer norm)",
            "norm",
        )
    if not feature_maps and isinstance(norm, BatchNorm2dNode):
        raise ConfigError(
            "BatchNorm2dNode expects (N, C, H, W); use BatchNorm1dNode or LayerNormNode", "norm"
        )
