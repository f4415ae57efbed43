"""Block nodes: activations, pooling, normalization, conv/linear/residual blocks, containers.

Every block is a ``BlockNode``; ``ActivationNode``, ``PoolingNode``, ``NormNode`` and
``StageNode`` are the bases a block's slots are typed with.
"""

from legoml.nn._deprecated import moved_names
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
    PoolingNode,
)
from legoml.nn.blocks.residual import ResidualBlock, ResidualBlockNode
from legoml.nn.node import BlockNode

__all__ = [
    "ActivationNode",
    "AdaptiveAvgPool2dNode",
    "AdaptiveMaxPool2dNode",
    "AvgPool2dNode",
    "BatchNorm1dNode",
    "BatchNorm2dNode",
    "BlockNode",
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
    "PoolingNode",
    "ReluNode",
    "ResidualBlock",
    "ResidualBlockNode",
    "SequentialNode",
    "SiLUNode",
    "SigmoidNode",
    "StageNode",
    "TanhNode",
]

__getattr__ = moved_names(__name__, {"PoolNode": "legoml.nn.blocks.PoolingNode"})
