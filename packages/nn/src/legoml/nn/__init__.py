"""legoml-nn: serializable config Nodes for PyTorch blocks, models, optimizers and schedulers.

Depends on torch only. A ``Node`` is a frozen, validated dataclass; ``build()`` makes the
module/optimizer/scheduler, ``to_dict()``/``Node.from_dict()`` round-trip it through JSON
(only registered node types can be named), ``fork()`` changes a copy.

The public face holds what a config needs; every other piece lives in a named submodule:
``legoml.nn.blocks`` (all blocks), ``legoml.nn.models``, ``legoml.nn.node`` (``node_fields``,
``FORMAT_VERSION``, ``MAX_DEPTH``), ``legoml.nn.types`` (field types), ``legoml.nn.optim``
(``param_groups``), ``legoml.nn.schedulers``, ``legoml.nn.summary``, ``legoml.nn.errors``.
"""

from typing import TYPE_CHECKING

from legoml.nn._check import Check
from legoml.nn._deprecated import moved_names
from legoml.nn._lazy import materialize
from legoml.nn.blocks import (
    ActivationNode,
    ConvBlockNode,
    LinearBlockNode,
    NoopNode,
    PoolingNode,
    ReluNode,
    ResidualBlockNode,
    SequentialNode,
)
from legoml.nn.errors import BuildError, ConfigError, NNError
from legoml.nn.models import ConvAutoencoderNode, EncoderNode, MLPNode, TinyCNNNode
from legoml.nn.node import (
    BlockNode,
    ModelNode,
    ModuleNode,
    Node,
    apply_overrides,
    registered_nodes,
)
from legoml.nn.optim import AdamNode, AdamWNode, OptimizerNode, SGDNode
from legoml.nn.schedulers import (
    CosineNode,
    OneCycleNode,
    SchedulerNode,
    StepLRNode,
    WarmupCosineNode,
)
from legoml.nn.summary import summarize

__all__ = [
    "ActivationNode",
    "AdamNode",
    "AdamWNode",
    "BlockNode",
    "BuildError",
    "Check",
    "ConfigError",
    "ConvAutoencoderNode",
    "ConvBlockNode",
    "CosineNode",
    "EncoderNode",
    "LinearBlockNode",
    "MLPNode",
    "ModelNode",
    "ModuleNode",
    "NNError",
    "Node",
    "NoopNode",
    "OneCycleNode",
    "OptimizerNode",
    "PoolingNode",
    "ReluNode",
    "ResidualBlockNode",
    "SGDNode",
    "SchedulerNode",
    "SequentialNode",
    "StepLRNode",
    "TinyCNNNode",
    "WarmupCosineNode",
    "apply_overrides",
    "materialize",
    "registered_nodes",
    "summarize",
]

#: Names that left the top level, and where they live now (deprecated aliases, one release).
_MOVED = {
    **{
        name: f"legoml.nn.blocks.{name}"
        for name in (
            "AdaptiveAvgPool2dNode",
            "AdaptiveMaxPool2dNode",
            "AvgPool2dNode",
            "BatchNorm1dNode",
            "BatchNorm2dNode",
            "DropoutNode",
            "FlattenNode",
            "GELUNode",
            "GlobalAvgPoolNode",
            "GroupNormNode",
            "LayerNormNode",
            "LeakyReLUNode",
            "MaxPool2dNode",
            "NormNode",
            "ResidualBlock",
            "SiLUNode",
            "SigmoidNode",
            "StageNode",
            "TanhNode",
        )
    },
    "PoolNode": "legoml.nn.PoolingNode",
    "FORMAT_VERSION": "legoml.nn.node.FORMAT_VERSION",
    "MAX_DEPTH": "legoml.nn.node.MAX_DEPTH",
    "node_fields": "legoml.nn.node.node_fields",
    "ParamsLike": "legoml.nn.optim.ParamsLike",
    "param_groups": "legoml.nn.optim.param_groups",
    "LayerInfo": "legoml.nn.summary.LayerInfo",
    "ModelSummary": "legoml.nn.summary.ModelSummary",
    "count_parameters": "legoml.nn.summary.count_parameters",
    "has_lazy": "legoml.nn.summary.has_lazy",
}

__getattr__ = moved_names(__name__, _MOVED)

if TYPE_CHECKING:  # the deprecated names keep their types for mypy users
    from legoml.nn.blocks import AdaptiveAvgPool2dNode as AdaptiveAvgPool2dNode
    from legoml.nn.blocks import AdaptiveMaxPool2dNode as AdaptiveMaxPool2dNode
    from legoml.nn.blocks import AvgPool2dNode as AvgPool2dNode
    from legoml.nn.blocks import BatchNorm1dNode as BatchNorm1dNode
    from legoml.nn.blocks import BatchNorm2dNode as BatchNorm2dNode
    from legoml.nn.blocks import DropoutNode as DropoutNode
    from legoml.nn.blocks import FlattenNode as FlattenNode
    from legoml.nn.blocks import GELUNode as GELUNode
    from legoml.nn.blocks import GlobalAvgPoolNode as GlobalAvgPoolNode
    from legoml.nn.blocks import GroupNormNode as GroupNormNode
    from legoml.nn.blocks import LayerNormNode as LayerNormNode
    from legoml.nn.blocks import LeakyReLUNode as LeakyReLUNode
    from legoml.nn.blocks import MaxPool2dNode as MaxPool2dNode
    from legoml.nn.blocks import NormNode as NormNode
    from legoml.nn.blocks import ResidualBlock as ResidualBlock
    from legoml.nn.blocks import SigmoidNode as SigmoidNode
    from legoml.nn.blocks import SiLUNode as SiLUNode
    from legoml.nn.blocks import StageNode as StageNode
    from legoml.nn.blocks import TanhNode as TanhNode
    from legoml.nn.node import FORMAT_VERSION as FORMAT_VERSION
    from legoml.nn.node import MAX_DEPTH as MAX_DEPTH
    from legoml.nn.node import node_fields as node_fields
    from legoml.nn.optim import ParamsLike as ParamsLike
    from legoml.nn.optim import param_groups as param_groups
    from legoml.nn.summary import LayerInfo as LayerInfo
    from legoml.nn.summary import ModelSummary as ModelSummary
    from legoml.nn.summary import count_parameters as count_parameters
    from legoml.nn.summary import has_lazy as has_lazy

    PoolNode = PoolingNode
