"""Block nodes: activations, pooling, normalization, conv/linear/residual blocks, containers."""

from legoml.nn.blocks.activations import (
    ActivationNode,
    GELUNode,
    LeakyReLUNode,
    NoopNode,
    ReluNode,
    SigmoidNode,
    SiLUNode,
    TanhNode,
)
from legoml.nn.blocks.container import DropoutNode, FlattenNode, SequentialNode
from legoml.nn.blocks.conv import ConvBlockNode, StageNode
from legoml.nn.blocks.linear import LinearBlockNode
from legoml.nn.blocks.normalization import (
    BatchNorm1dNode,
    BatchNorm2dNode,
    GroupNormNode,
    LayerNormNode,
    NormNode,
)
from legoml.nn.blocks.pooling import (
    AdaptiveAvgPool2dNode,
    AdaptiveMaxPool2dNode,
    AvgPool2dNode,
    GlobalAvgPoolNode,
    MaxPool2dNode,
    PoolNode,
)
from legoml.nn.blocks.residual import ResidualBlock, ResidualBlockNode

__all__ = [
    "ActivationNode",
    "AdaptiveAvgPool2dNode",
    "AdaptiveMaxPool2dNode",
    "AvgPool2dNode",
    "BatchNorm1dNode",
    "BatchNorm2dNode",
    "ConvBlockNode",
    "DropoutNode",
    "FlattenNode",
    "GELUNode",
    "GlobalAvgPoolNode",
    "GroupNormNode",
    "LayerNormNode",
    "LeakyReLUNode",
    "LinearBlockNode",
    "MaxPool2dNode",
    "NoopNode",
    "NormNode",
    "PoolNode",
    "ReluNode",
    "ResidualBlock",
    "ResidualBlockNode",
    "SequentialNode",
    "SiLUNode",
    "SigmoidNode",
    "StageNode",
    "TanhNode",
]
