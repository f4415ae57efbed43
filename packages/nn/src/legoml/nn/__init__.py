"""legoml-nn: serializable config Nodes for PyTorch blocks, models, optimizers and schedulers.

Depends on torch only. A ``Node`` is a frozen, validated dataclass; ``build()`` makes the
module/optimizer/scheduler, ``to_dict()``/``Node.from_dict()`` round-trip it through JSON
(only registered node types can be named), ``fork()`` changes a copy.
"""

from legoml.nn._check import Check
from legoml.nn._lazy import has_lazy, materialize
from legoml.nn._schema import MAX_DEPTH
from legoml.nn.blocks import (
    ActivationNode,
    AdaptiveAvgPool2dNode,
    AdaptiveMaxPool2dNode,
    AvgPool2dNode,
    BatchNorm1dNode,
    BatchNorm2dNode,
    ConvBlockNode,
    DropoutNode,
    FlattenNode,
    GELUNode,
    GlobalAvgPoolNode,
    GroupNormNode,
    LayerNormNode,
    LeakyReLUNode,
    LinearBlockNode,
    MaxPool2dNode,
    NoopNode,
    NormNode,
    PoolNode,
    ReluNode,
    ResidualBlock,
    ResidualBlockNode,
    SequentialNode,
    SigmoidNode,
    SiLUNode,
    StageNode,
    TanhNode,
)
from legoml.nn.errors import BuildError, ConfigError, NNError
from legoml.nn.models import EncoderNode, MLPNode, TinyCNNNode
from legoml.nn.node import (
    FORMAT_VERSION,
    ModuleNode,
    Node,
    apply_overrides,
    node_fields,
    registered_nodes,
)
from legoml.nn.optim import AdamNode, AdamWNode, OptimizerNode, ParamsLike, SGDNode, param_groups
from legoml.nn.schedulers import (
    CosineNode,
    OneCycleNode,
    SchedulerNode,
    StepLRNode,
    WarmupCosineNode,
)
from legoml.nn.summary import LayerInfo, ModelSummary, count_parameters, summarize

__all__ = [
    "FORMAT_VERSION",
    "MAX_DEPTH",
    "ActivationNode",
    "AdamNode",
    "AdamWNode",
    "AdaptiveAvgPool2dNode",
    "AdaptiveMaxPool2dNode",
    "AvgPool2dNode",
    "BatchNorm1dNode",
    "BatchNorm2dNode",
    "BuildError",
    "Check",
    "ConfigError",
    "ConvBlockNode",
    "CosineNode",
    "DropoutNode",
    "EncoderNode",
    "FlattenNode",
    "GELUNode",
    "GlobalAvgPoolNode",
    "GroupNormNode",
    "LayerInfo",
    "LayerNormNode",
    "LeakyReLUNode",
    "LinearBlockNode",
    "MLPNode",
    "MaxPool2dNode",
    "ModelSummary",
    "ModuleNode",
    "NNError",
    "Node",
    "NoopNode",
    "NormNode",
    "OneCycleNode",
    "OptimizerNode",
    "ParamsLike",
    "PoolNode",
    "ReluNode",
    "ResidualBlock",
    "ResidualBlockNode",
    "SGDNode",
    "SchedulerNode",
    "SequentialNode",
    "SiLUNode",
    "SigmoidNode",
    "StageNode",
    "StepLRNode",
    "TanhNode",
    "TinyCNNNode",
    "WarmupCosineNode",
    "apply_overrides",
    "count_parameters",
    "has_lazy",
    "materialize",
    "node_fields",
    "param_groups",
    "registered_nodes",
    "summarize",
]
