"""Every registered node type round-trips through JSON and rebuilds the same object."""

from __future__ import annotations

import copy
import json
import pickle
import random

import pytest
import torch
from nn_helpers import assert_same_modules, build_with_input, builtin_nodes, random_node
from torch import nn

import legoml.nn as L
from legoml.nn.node import FORMAT_VERSION, node_fields

BUILTIN = builtin_nodes()
RANDOM_CASES = 12


def _json_roundtrip(node: L.Node) -> L.Node:
    text = json.dumps(node.to_dict(), allow_nan=False)  # strict JSON, no NaN/Infinity tokens
    return L.Node.from_dict(json.loads(text))


def _same_behaviour(node: L.Node, rebuilt: L.Node) -> bool:
    """Build both nodes the same way and compare the results; True if it was built."""
    if isinstance(node, L.ModuleNode):
        outcomes = []
        for candidate in (node, rebuilt):
            torch.manual_seed(0)
            try:
                module, x = build_with_input(candidate)
            except L.NNError as err:
                outcomes.append(("error", str(err)))
                continue
            out: torch.Tensor | str | None = None
            if x is not None:
                module.eval()
                try:
                    with torch.no_grad():
                        out = module(x)
                except (RuntimeError, IndexError, ValueError) as err:  # e.g. map shrunk to 0
                    out = f"forward failed: {type(err).__name__}"
            outcomes.append(("built", module, out))
        assert outcomes[0][0] == outcomes[1][0]
        if outcomes[0][0] == "error":
            assert outcomes[0] == outcomes[1]
            return False
        _, first, out_a = outcomes[0]
        _, second, out_b = outcomes[1]
        assert_same_modules(first, second)
        if isinstance(out_a, torch.Tensor):
            assert isinstance(out_b, torch.Tensor) and torch.equal(out_a, out_b)
        else:
            assert out_a == out_b
        return True
    if isinstance(node, L.OptimizerNode):
        assert isinstance(rebuilt, L.OptimizerNode)
        model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
        a, b = node.build(model), rebuilt.build(model)
        strip = [{k: v for k, v in g.items() if k != "params"} for g in a.param_groups]
        assert strip == [{k: v for k, v in g.items() if k != "params"} for g in b.param_groups]
        assert type(a) is type(b)
        return True
    if isinstance(node, L.SchedulerNode):
        assert isinstance(rebuilt, L.SchedulerNode)
        curves = []
        for candidate in (node, rebuilt):
            param = torch.zeros(2, requires_grad=True)
            opt = torch.optim.SGD([param], lr=0.1, momentum=0.9)
            sched = candidate.build(opt, total_steps=20)
            curve = []
            for _ in range(20):
                curve.append(sched.get_last_lr()[0])
                opt.step()
                sched.step()
            curves.append(curve)
        assert curves[0] == curves[1]
        return True
    raise AssertionError(f"no behaviour check for {type(node).__name__}")


def test_the_registry_holds_every_builtin_node() -> None:
    assert len(BUILTIN) >= 30
    expected = {
        "ReluNode",
        "GELUNode",
        "SiLUNode",
        "LeakyReLUNode",
        "TanhNode",
        "NoopNode",
        "MaxPool2dNode",
        "AvgPool2dNode",
        "AdaptiveAvgPool2dNode",
        "AdaptiveMaxPool2dNode",
        "GlobalAvgPoolNode",
        "BatchNorm2dNode",
        "BatchNorm1dNode",
        "LayerNormNode",
        "GroupNormNode",
        "ConvBlockNode",
        "LinearBlockNode",
        "ResidualBlockNode",
        "SequentialNode",
        "MLPNode",
        "EncoderNode",
        "TinyCNNNode",
        "SGDNode",
        "AdamNode",
        "AdamWNode",
        "StepLRNode",
        "CosineNode",
        "OneCycleNode",
        "WarmupCosineNode",
    }
    assert expected <= set(BUILTIN)
    for tag, cls in BUILTIN.items():
        assert cls.type_tag == tag


@pytest.mark.parametrize("tag", sorted(BUILTIN))
def test_defaults_round_trip_and_rebuild(tag: str) -> None:
    node = BUILTIN[tag]()
    rebuilt = _json_roundtrip(node)
    assert rebuilt == node and type(rebuilt) is type(node)
    assert rebuilt.to_dict() == node.to_dict()
    assert BUILTIN[tag].from_dict(node.to_dict()) == node
    assert _same_behaviour(node, rebuilt)


@pytest.mark.parametrize("tag", sorted(BUILTIN))
def test_random_valid_configs_round_trip_and_rebuild(tag: str) -> None:
    rng = random.Random(f"legoml-nn-{tag}")
    built = 0
    distinct = set()
    for _ in range(RANDOM_CASES):
        node = random_node(BUILTIN[tag], rng)
        distinct.add(node.to_json())
        rebuilt = _json_roundtrip(node)
        assert rebuilt == node
        assert hash(rebuilt) == hash(node)
        assert L.Node.from_json(node.to_json()) == node
        built += _same_behaviour(node, rebuilt)
    assert built >= 1, f"no random {tag} could be built"
    if node_fields(BUILTIN[tag]):
        assert len(distinct) > 1, f"the generator only produced one {tag}"


@pytest.mark.parametrize("tag", ["TinyCNNNode", "EncoderNode", "AdamWNode", "ConvBlockNode"])
def test_copies_and_pickles_are_equal(tag: str) -> None:
    node = random_node(BUILTIN[tag], random.Random(7))
    assert copy.deepcopy(node) == node
    assert copy.copy(node) == node
    assert pickle.loads(pickle.dumps(node)) == node


def test_to_dict_puts_type_and_format_first_and_tags_children() -> None:
    data = L.EncoderNode().to_dict()
    assert list(data)[:2] == ["type", "format"]
    assert data["format"] == FORMAT_VERSION == 1
    assert data["blocks"][0]["type"] == "ConvBlockNode"
    assert "format" not in data["blocks"][0]
    assert data["blocks"][0]["pool"] == {"type": "MaxPool2dNode", "kernel_size": 2,
                                         "stride": None, "padding": 0}  # fmt: skip


def test_lists_and_tuples_come_back_with_their_declared_kind() -> None:
    node = L.Node.from_dict({"type": "TinyCNNNode", "channels": [8, 16], "hidden": []})
    assert node == L.TinyCNNNode(channels=(8, 16), hidden=())
    assert isinstance(node.channels, tuple)
    encoder = L.Node.from_dict(L.EncoderNode().to_dict())
    assert isinstance(encoder, L.EncoderNode) and isinstance(encoder.blocks, list)
