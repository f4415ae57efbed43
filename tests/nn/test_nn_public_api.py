"""The public face: the documented top-level names, deprecated aliases, seed names, field types."""

from __future__ import annotations

import importlib
import warnings
from typing import Any

import pytest

import legoml.nn as L
from legoml.nn import blocks, models
from legoml.nn.node import FORMAT_VERSION, node_fields
from legoml.nn.types import Positive, Probability, positive_int

TOP_LEVEL = {
    # configs: the base, checks, loading and changing
    "Node",
    "ModuleNode",
    "Check",
    "apply_overrides",
    "registered_nodes",
    # errors
    "NNError",
    "ConfigError",
    "BuildError",
    # the seed design's node bases
    "BlockNode",
    "ModelNode",
    "ActivationNode",
    "PoolingNode",
    # the common blocks and every model
    "ReluNode",
    "NoopNode",
    "ConvBlockNode",
    "LinearBlockNode",
    "ResidualBlockNode",
    "SequentialNode",
    "MLPNode",
    "TinyCNNNode",
    "EncoderNode",
    "ConvAutoencoderNode",
    # optimizers and schedulers
    "OptimizerNode",
    "SGDNode",
    "AdamNode",
    "AdamWNode",
    "SchedulerNode",
    "StepLRNode",
    "CosineNode",
    "OneCycleNode",
    "WarmupCosineNode",
    # models at a glance
    "summarize",
    "materialize",
}

# old top-level name -> (module it lives in now, its name there)
MOVED = {
    **{
        name: ("legoml.nn.blocks", name)
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
    "PoolNode": ("legoml.nn", "PoolingNode"),
    "FORMAT_VERSION": ("legoml.nn.node", "FORMAT_VERSION"),
    "MAX_DEPTH": ("legoml.nn.node", "MAX_DEPTH"),
    "node_fields": ("legoml.nn.node", "node_fields"),
    "ParamsLike": ("legoml.nn.optim", "ParamsLike"),
    "param_groups": ("legoml.nn.optim", "param_groups"),
    "LayerInfo": ("legoml.nn.summary", "LayerInfo"),
    "ModelSummary": ("legoml.nn.summary", "ModelSummary"),
    "count_parameters": ("legoml.nn.summary", "count_parameters"),
    "has_lazy": ("legoml.nn.summary", "has_lazy"),
}


def test_all_is_exactly_the_documented_set_and_loads_without_warnings() -> None:
    assert len(L.__all__) == len(set(L.__all__))
    assert set(L.__all__) == TOP_LEVEL
    assert not set(L.__all__) & set(MOVED)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        namespace: dict[str, Any] = {}
        exec("from legoml.nn import *", namespace)  # noqa: S102 - fixed text
        assert set(namespace) - {"__builtins__"} == TOP_LEVEL
        assert all(getattr(L, name) is namespace[name] for name in TOP_LEVEL)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_every_moved_name_warns_with_its_new_path_and_is_the_same_object(old: str) -> None:
    where, new = MOVED[old]
    expected = getattr(importlib.import_module(where), new)
    hint = f"from {where} import {new}"
    with pytest.warns(DeprecationWarning, match=f"legoml.nn.{old} is deprecated") as caught:
        assert getattr(L, old) is expected
    assert hint in str(caught[0].message)
    assert caught[0].filename == __file__  # points at the user's line, not at legoml.nn
    with pytest.warns(DeprecationWarning, match=hint):
        namespace: dict[str, Any] = {}
        exec(f"from legoml.nn import {old}", namespace)  # noqa: S102 - fixed text
    assert namespace[old] is expected


def test_pool_node_keeps_working_under_blocks_too() -> None:
    for module, where in [
        (blocks, "legoml.nn.blocks"),
        (blocks.pooling, "legoml.nn.blocks.pooling"),
    ]:
        with pytest.warns(DeprecationWarning, match=f"from {where} import PoolingNode"):
            assert module.PoolNode is L.PoolingNode


def test_unknown_names_are_still_attribute_errors_without_a_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError, match="'legoml.nn' has no attribute 'ReLUNode'"):
            _ = L.ReLUNode
        with pytest.raises(ImportError):
            exec("from legoml.nn import Nope", {})  # noqa: S102 - fixed text
        assert not hasattr(blocks, "Nope")


def test_seed_names_are_the_bases_of_their_families() -> None:
    assert isinstance(L.ReluNode(), L.ActivationNode)
    assert isinstance(blocks.GELUNode(), L.ActivationNode)
    assert isinstance(blocks.MaxPool2dNode(), L.PoolingNode)
    assert isinstance(blocks.GlobalAvgPoolNode(), L.BlockNode)
    assert isinstance(L.ConvBlockNode(), L.BlockNode)
    assert not isinstance(L.ConvBlockNode(), L.ModelNode)
    assert isinstance(L.TinyCNNNode(), L.ModelNode)
    assert not isinstance(L.TinyCNNNode(), L.BlockNode)
    assert isinstance(L.EncoderNode(), L.ModelNode)
    assert isinstance(L.EncoderNode(), blocks.StageNode)  # still stackable inside an encoder
    for base in (L.BlockNode, L.ModelNode, L.ActivationNode, L.PoolingNode):
        assert issubclass(base, L.ModuleNode)
        assert base.__name__ not in L.registered_nodes()  # abstract: not nameable in a config
    tags = L.registered_nodes()
    for name in blocks.__all__:
        cls = getattr(blocks, name)
        if name in tags:
            assert issubclass(cls, L.BlockNode) and not issubclass(cls, L.ModelNode), name
    for name in models.__all__:
        if name in tags:
            assert issubclass(getattr(models, name), L.ModelNode), name


def test_a_field_typed_with_a_seed_base_takes_its_family_only() -> None:
    block = L.ConvBlockNode.from_dict({"pool": {"type": "AvgPool2dNode"}})
    assert isinstance(block.pool, L.PoolingNode)
    with pytest.raises(L.ConfigError, match=r"^pool\.type: ReluNode is not a PoolingNode"):
        L.ConvBlockNode.from_dict({"pool": {"type": "ReluNode"}})


@pytest.mark.parametrize("version", [FORMAT_VERSION + 1, 99])
def test_a_config_from_a_newer_format_is_refused_with_the_fix(version: int) -> None:
    data = {**L.TinyCNNNode().to_dict(), "format": version}
    with pytest.raises(L.ConfigError) as err:
        L.Node.from_dict(data)
    assert str(err.value) == (
        f"format: format {version} is not supported (this legoml-nn reads format "
        f"{FORMAT_VERSION}); upgrade legoml-nn to load it"
    )


@pytest.mark.parametrize("version", [0, "1", 1.0, True, None])
def test_a_bad_format_value_is_refused_without_an_upgrade_hint(version: object) -> None:
    with pytest.raises(L.ConfigError, match="^format: format .* is not supported") as err:
        L.Node.from_dict({"type": "ReluNode", "format": version})
    assert "upgrade" not in str(err.value)
    assert L.Node.from_dict({"type": "ReluNode", "format": FORMAT_VERSION}) == L.ReluNode()


def test_field_types_carry_their_limits() -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class SizesNode(L.Node, register=False):
        size: Positive = 1
        rate: Probability = 0.0

    assert SizesNode(size=3, rate=0) == SizesNode(size=3, rate=0.0)
    with pytest.raises(L.ConfigError, match=r"^size: must be >= 1, got 0$"):
        SizesNode(size=0)
    with pytest.raises(L.ConfigError, match=r"^size: expected int, got True$"):
        SizesNode(size=True)
    with pytest.raises(L.ConfigError, match=r"^rate: must be < 1.0, got 1.0$"):
        SizesNode(rate=1.0)
    # the blocks use the same definitions
    spec = node_fields(blocks.MaxPool2dNode)["kernel_size"].spec
    with pytest.raises(L.ConfigError, match="must be >= 1"):
        spec.convert(0, "kernel_size", 0)


@pytest.mark.parametrize("value", [0, -3, True, False, 2.0, "4", None])
def test_positive_int_refuses_everything_but_ints_from_one(value: object) -> None:
    with pytest.raises(L.ConfigError, match=rf"^steps: must be an int >= 1, got {value!r}$"):
        positive_int(value, "steps")


def test_positive_int_returns_the_value_and_guards_scheduler_arguments() -> None:
    assert positive_int(1, "steps") == 1 and positive_int(10**12, "steps") == 10**12
    optimizer = L.SGDNode(lr=0.1).build(L.MLPNode(in_features=2, hidden=()).build())
    with pytest.raises(L.ConfigError, match=r"^total_steps: must be an int >= 1, got True$"):
        L.CosineNode().build(optimizer, total_steps=True)
