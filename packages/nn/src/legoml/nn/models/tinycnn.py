"""``TinyCNNNode``: a small image classifier (conv encoder + MLP head), MNIST-sized by default."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Annotated, Literal

from torch import nn

from legoml.nn._check import Check
from legoml.nn._lazy import materialize
from legoml.nn.blocks.activations import ActivationNode, ReluNode
from legoml.nn.blocks.conv import ConvBlockNode, StageNode
from legoml.nn.blocks.normalization import BatchNorm2dNode
from legoml.nn.blocks.pooling import AvgPool2dNode, MaxPool2dNode
from legoml.nn.errors import BuildError
from legoml.nn.models.encoder import EncoderNode
from legoml.nn.models.mlp import MLPNode
from legoml.nn.node import ModelNode
from legoml.nn.types import Positive, Probability

__all__ = ["TinyCNNNode"]


@dataclass(frozen=True)
class TinyCNNNode(ModelNode):
    """Conv blocks (each: conv, optional batch norm, activation, 2x2 pool) then an MLP head.

    The head's first layer is an ``nn.LazyLinear``, so the flatten size is never computed by
    hand; with ``input_size`` set, ``build()`` sizes it with one dummy forward pass, so the
    model is ready for an optimizer. The default maps (N, 1, 28, 28) to (N, 10) logits.

    Fields: ``channels`` are the conv widths (one block each), ``hidden`` the head's hidden
    widths, ``dropout`` applies after each hidden layer, ``conv_dropout`` (channel dropout)
    after each conv block. ``stem_stride > 1`` makes the first conv downsample by its
    stride instead of a pool; ``pool_first`` pools straight after each conv, before the norm
    and activation (see ``ConvBlockNode``), which is much cheaper on CPU.

    >>> TinyCNNNode().build()(torch.zeros(4, 1, 28, 28)).shape
    torch.Size([4, 10])
    >>> TinyCNNNode(channels=(16, 32, 64), batch_norm=True).encoder().output_channels(1)
    64
    """

    in_channels: Positive = 1
    num_classes: Positive = 10
    channels: Annotated[tuple[Positive, ...], Check(min_len=1)] = (32, 64)
    kernel_size: Positive = 3
    batch_norm: bool = False
    activation: ActivationNode = ReluNode()
    pool: Literal["max", "avg"] = "max"
    hidden: tuple[Positive, ...] = (128,)
    dropout: Probability = 0.0
    conv_dropout: Probability = 0.0
    input_size: tuple[Positive, Positive] | None = (28, 28)
    stem_stride: Positive = 1
    pool_first: bool = False

    def encoder(self) -> EncoderNode:
        """The conv part as an ``EncoderNode``."""
        pool = MaxPool2dNode() if self.pool == "max" else AvgPool2dNode()
        blocks: list[StageNode] = [
            ConvBlockNode(
                out_channels=width,
                kernel_size=self.kernel_size,
                stride=self.stem_stride if index == 0 else 1,
                norm=BatchNorm2dNode() if self.batch_norm else None,
                activation=self.activation,
                pool=None if index == 0 and self.stem_stride > 1 else pool,
                dropout=self.conv_dropout,
                pool_first=self.pool_first,
            )
            for index, width in enumerate(self.channels)
        ]
        return EncoderNode(in_channels=self.in_channels, blocks=blocks)

    def head(self) -> MLPNode:
        """The classifier part as an ``MLPNode`` (flatten, lazy first layer)."""
        return MLPNode(
            out_features=self.num_classes,
            in_features=None,
            hidden=self.hidden,
            activation=self.activation,
            dropout=self.dropout,
            flatten=True,
        )

    def build(self) -> nn.Module:
        model = nn.Sequential(
            OrderedDict(features=self.encoder().build(), classifier=self.head().build())
        )
        if self.input_size is not None:
            shape = (1, self.in_channels, *self.input_size)
            try:
                materialize(model, shape)
            except RuntimeError as err:
                raise BuildError(
                    f"TinyCNNNode: a {self.input_size} input does not fit {len(self.channels)} "
                    f"pooled conv blocks (a batch of shape {shape}, from in_channels and "
                    f"input_size); use fewer channels entries or a larger input_size ({err})"
                ) from err
        return model
