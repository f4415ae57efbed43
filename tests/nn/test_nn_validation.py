"""Validation at construction and in from_dict: every error names the field path."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Optional

import pytest

import legoml.nn as L
from legoml.nn import Check, ConfigError
from legoml.nn.blocks import GELUNode, GroupNormNode, SiLUNode, StageNode
from legoml.nn.node import MAX_DEPTH, node_fields


@dataclass(frozen=True)
class KitchenSinkNode(L.Node, tag="tests.KitchenSink"):
    """One field of every supported kind (an app's own nodes use these)."""

    count: Annotated[int, Check(ge=0, le=10)] = 1
    ratio: float = 0.5
    flag: bool = False
    name: Annotated[str, Check(min_len=1)] = "x"
    nothing: None = None
    maybe: Optional[int] = None  # noqa: UP045 - the typing spelling must work too
    either: int | str = 3
    mode: Literal["a", "b", 3] = "a"
    sizes: tuple[Annotated[int, Check(ge=1)], ...] = (1, 2)
    pair: tuple[int, str] = (1, "a")
    acts: list[L.ActivationNode] = field(default_factory=list)
    module: L.ModuleNode = L.ReluNode()
    child: L.ReluNode | None = None
    weights: dict[str, float | int | str] = field(default_factory=dict)
    unbounded: Annotated[float, Check(finite=False)] = math.inf

    def build(self) -> dict[str, Any]:
        return {"count": self.count}

    def validate(self) -> None:
        if self.mode == 3 and self.count == 0:
            raise ConfigError("must be > 0 when mode is 3", "count")


@dataclass(frozen=True)
class HolderNode(L.Node, tag="tests.Holder"):
    sink: KitchenSinkNode = KitchenSinkNode()
    sinks: list[KitchenSinkNode] = field(default_factory=list)


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        L.Node.from_dict(data)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_every_supported_field_kind_round_trips() -> None:
    node = KitchenSinkNode(
        count=3,
        ratio=2,  # an int is fine for a float field, and becomes a float
        name="ünï",
        maybe=4,
        either="text",
        mode=3,
        sizes=[3, 4, 5],  # a list is fine for a tuple field
        pair=(7, "b"),
        acts=[GELUNode(), {"type": "NoopNode"}],  # type: ignore[list-item]
        module=L.TinyCNNNode(hidden=()),
        child=L.ReluNode(inplace=True),
        weights={"a": 1.5, "b": 2, "c": "x"},
        unbounded=-math.inf,
    )
    assert node.ratio == 2.0 and isinstance(node.ratio, float)
    assert node.sizes == (3, 4, 5) and node.acts[1] == L.NoopNode()
    data = json.loads(json.dumps(node.to_dict(), allow_nan=False))
    assert data["unbounded"] == "-inf"
    assert data["acts"] == [{"type": "GELUNode", "approximate": "none"}, {"type": "NoopNode"}]
    assert L.Node.from_dict(data) == node
    holder = HolderNode(sinks=[node, KitchenSinkNode()])
    assert L.Node.from_json(holder.to_json()) == holder


def test_nan_round_trips_where_a_field_allows_it() -> None:
    node = KitchenSinkNode(unbounded=math.nan)
    assert node.to_dict()["unbounded"] == "nan"
    assert math.isnan(L.Node.from_json(node.to_json()).unbounded)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"count": "abc"}, "count: expected int, got 'abc'"),
        ({"count": True}, "count: expected int, got True"),
        ({"count": 2.0}, "count: expected int, got 2.0"),
        ({"count": 11}, "count: must be <= 10, got 11"),
        ({"count": -1}, "count: must be >= 0, got -1"),
        ({"ratio": "0.5"}, "ratio: expected float, got '0.5'"),
        ({"ratio": False}, "ratio: expected float, got False"),
        ({"ratio": math.nan}, "ratio: must be a finite number, got nan"),
        ({"ratio": math.inf}, "ratio: must be a finite number, got inf"),
        ({"ratio": "inf"}, "ratio: expected float, got 'inf'"),
        ({"flag": 1}, "flag: expected bool, got 1"),
        ({"name": 5}, "name: expected str, got 5"),
        ({"name": ""}, "name: needs at least 1 item(s), got 0"),
        ({"nothing": 0}, "nothing: expected None, got 0"),
        ({"maybe": "1"}, "maybe: expected int | None, got '1'"),
        ({"either": 1.5}, "either: expected int | str, got 1.5"),
        ({"mode": "c"}, "mode: expected one of 'a' | 'b' | 3, got 'c'"),
        ({"mode": "3"}, "mode: expected one of 'a' | 'b' | 3, got '3'"),
        ({"sizes": "12"}, "sizes: expected tuple[int, ...], got '12'"),
        ({"sizes": [1, 0]}, "sizes[1]: must be >= 1, got 0"),
        ({"pair": [1, "a", 2]}, "pair: expected 2 items, got 3"),
        ({"pair": ["a", 1]}, "pair[0]: expected int, got 'a'"),
        ({"acts": [{"type": "ReluNode"}, {"type": "MLPNode"}]}, "acts[1].type: MLPNode is not"),
        ({"acts": [{"type": "ReluNode", "inplace": "no"}]}, "acts[0].inplace: expected bool"),
        ({"acts": {"type": "ReluNode"}}, "acts: expected list[ActivationNode], got {"),
        ({"module": 3}, "module: expected ModuleNode (a node, or a dict with a 'type' key)"),
        ({"module": {"inplace": True}}, "module: missing 'type': name a registered ModuleNode"),
        ({"child": {"type": "GELUNode"}}, "child.type: GELUNode is not a ReluNode"),
        ({"weights": {"a": [1]}}, "weights.a: expected float | int | str, got [1]"),
        ({"weights": {"a": math.nan}}, "weights.a: must be a finite number, got nan"),
        ({"weights": [1]}, "weights: expected dict[str, float | int | str], got [1]"),
        ({"unbounded": "infinite"}, "unbounded: expected float, got 'infinite'"),
        ({"mode": 3, "count": 0}, "count: must be > 0 when mode is 3"),
        ({"cuont": 1}, "cuont: unknown field of KitchenSinkNode (did you mean 'count'?)"),
        ({"format": 2}, "format: format 2 is not supported"),
        ({"format": True}, "format: format True is not supported"),
    ],
)
def test_bad_values_name_the_field(data: dict[str, Any], expected: str) -> None:
    assert _error({"type": "tests.KitchenSink", **data}).startswith(expected)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"sink": {"type": "tests.KitchenSink", "sizes": [1, "x"]}},
            "sink.sizes[1]: expected int, got 'x'",
        ),
        ({"sinks": [{}, {"count": 99}]}, "sinks[1].count: must be <= 10, got 99"),
        ({"sinks": [{}, {"acts": [{}, {"type": "Relu"}]}]}, "sinks[1].acts[0]: missing 'type'"),
        ({"sinks": [{}, {"mode": 3, "count": 0}]}, "sinks[1].count: must be > 0 when mode is 3"),
        (
            {"sinks": [{"module": {"type": "TinyCNNNode", "hidden": [8, -1]}}]},
            "sinks[0].module.hidden[1]: must be >= 1, got -1",
        ),
    ],
)
def test_nested_errors_give_the_full_path(data: dict[str, Any], expected: str) -> None:
    assert _error({"type": "tests.Holder", **data}).startswith(expected)


def test_the_issue_example_path() -> None:
    data = {
        "type": "TinyCNNNode",
        "format": 1,
        "activation": {"type": "ReluNode"},
    }
    assert L.Node.from_dict(data) == L.TinyCNNNode()
    encoder = L.EncoderNode().to_dict()
    encoder["blocks"][1]["out_channels"] = "abc"
    assert _error({"type": "tests.Holder", "sink": {"module": encoder}}) == (
        "sink.module.blocks[1].out_channels: expected int, got 'abc'"
    )


def test_missing_and_unknown_fields() -> None:
    @dataclass(frozen=True)
    class NeedsValueNode(L.Node, tag="tests.NeedsValue"):
        size: int

    assert _error({"type": "tests.NeedsValue"}) == (
        "size: missing required field of NeedsValueNode"
    )
    assert _error({"type": "tests.Holder", "sinks": [{"nmae": "x"}]}).startswith(
        "sinks[0].nmae: unknown field of KitchenSinkNode (did you mean 'name'"
    )
    assert _error({"type": "ReluNode", "slope": 1}).startswith("slope: unknown field of ReluNode")


def test_construction_validates_too() -> None:
    with pytest.raises(ConfigError, match=r"^channels\[1\]: expected int, got '64'$"):
        L.TinyCNNNode(channels=(32, "64"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^dropout: must be < 1.0, got 1.0$"):
        L.TinyCNNNode(dropout=1.0)
    with pytest.raises(ConfigError, match=r"^lr: must be a finite number, got nan$"):
        L.AdamWNode(lr=math.nan)
    with pytest.raises(ConfigError, match=r"^lr: must be a finite number, got inf$"):
        L.SGDNode(lr=math.inf)
    with pytest.raises(ConfigError, match=r"^in_channels: expected int \| None, got True$"):
        L.ConvBlockNode(in_channels=True)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^activation: expected ActivationNode"):
        L.ConvBlockNode(activation="relu")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^norm.num_groups: 8 groups do not divide 12"):
        L.ConvBlockNode(out_channels=12, norm=GroupNormNode())
    with pytest.raises(ConfigError, match=r"^blocks\[1\].in_channels: is 5 but the layer"):
        L.EncoderNode(blocks=[L.ConvBlockNode(out_channels=4), L.ConvBlockNode(in_channels=5)])
    with pytest.raises(ConfigError, match=r"^nesterov: needs momentum > 0"):
        L.SGDNode(momentum=0.0, nesterov=True)
    with pytest.raises(ConfigError, match=r"^blocks: needs at least 1 item"):
        L.EncoderNode(blocks=[])


def test_nodes_are_frozen_all_the_way_down() -> None:
    node = L.EncoderNode()
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.in_channels = 3  # type: ignore[misc]
    with pytest.raises(TypeError, match="read-only; use node.fork"):
        node.blocks.append(L.ConvBlockNode())
    with pytest.raises(TypeError, match="read-only"):
        node.blocks[0] = L.ConvBlockNode()
    sink = KitchenSinkNode(weights={"a": 1.0})
    with pytest.raises(TypeError, match="read-only"):
        sink.weights["b"] = 2.0
    assert node == L.EncoderNode() and hash(node) == hash(L.EncoderNode())


def test_caller_lists_are_copied_not_shared() -> None:
    blocks: list[StageNode] = [L.ConvBlockNode(out_channels=8)]
    node = L.EncoderNode(blocks=blocks)
    blocks.append(L.ConvBlockNode(out_channels=16))
    assert len(node.blocks) == 1


def test_equality_depends_on_type_and_values() -> None:
    assert L.ReluNode() == L.ReluNode()
    assert L.ReluNode() != L.ReluNode(inplace=True)
    assert L.ReluNode() != SiLUNode()
    assert L.AdamNode() != L.AdamWNode(weight_decay=0.0)
    assert L.TinyCNNNode(dropout=0) == L.TinyCNNNode(dropout=0.0)


def test_deep_nesting_is_refused_without_recursion_error() -> None:
    root: dict[str, Any] = {"type": "SequentialNode", "layers": []}
    cursor = root
    for _ in range(sys.getrecursionlimit() * 3):
        child: dict[str, Any] = {"type": "SequentialNode", "layers": []}
        cursor["layers"].append(child)
        cursor = child
    message = _error(root)
    assert f"nested more than {MAX_DEPTH} levels deep" in message
    assert message.startswith("layers[0].layers[0]")
    assert len(message) < 300

    with pytest.raises(ConfigError, match=r"^sinks\[0\].module.layers\[0\].*levels deep"):
        L.Node.from_dict({"type": "tests.Holder", "sinks": [{"module": root}]})

    with pytest.raises(ConfigError, match="JSON nested more than"):
        L.Node.from_json("[" * 100_000 + "]" * 100_000)


def test_reasonable_nesting_is_fine() -> None:
    node: L.ModuleNode = L.ReluNode()
    for _ in range(20):
        node = L.SequentialNode(layers=[node])
    assert L.Node.from_json(node.to_json()) == node


def test_from_dict_needs_a_mapping_and_valid_json() -> None:
    with pytest.raises(ConfigError, match="a node config is a dict with a 'type' key, got"):
        L.Node.from_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="^not valid JSON"):
        L.Node.from_json("{'type': 'ReluNode'}")
    with pytest.raises(ConfigError, match="^type: 'type' must be a registered node type name"):
        L.Node.from_dict({"type": 3})


def test_subclass_from_dict_checks_the_kind_and_allows_a_missing_type() -> None:
    assert L.TinyCNNNode.from_dict({"dropout": 0.5}) == L.TinyCNNNode(dropout=0.5)
    with pytest.raises(ConfigError, match="^type: ReluNode is not a TinyCNNNode"):
        L.TinyCNNNode.from_dict({"type": "ReluNode"})
    with pytest.raises(ConfigError, match="^missing 'type': name a registered ActivationNode"):
        L.ActivationNode.from_dict({})


def test_duplicate_tags_are_refused() -> None:
    with pytest.raises(ConfigError, match="'ReluNode' is already registered by legoml.nn"):

        @dataclass(frozen=True)
        class ReluNode(L.ActivationNode):
            pass

    assert L.registered_nodes()["ReluNode"] is L.ReluNode

    @dataclass(frozen=True)
    class RenamedNode(L.ActivationNode, tag="tests.OwnRelu"):
        pass

    assert L.registered_nodes()["tests.OwnRelu"] is RenamedNode
    assert L.Node.from_dict({"type": "tests.OwnRelu"}) == RenamedNode()


def test_unregistered_bases_cannot_be_named() -> None:
    class AbstractThingNode(L.Node, register=False):
        pass

    assert "AbstractThingNode" not in L.registered_nodes()
    with pytest.raises(TypeError, match="a tag only makes sense"):

        class Broken(L.Node, register=False, tag="x"):
            pass


def test_class_mistakes_are_reported_clearly() -> None:
    class NotADataclassNode(L.Node, register=False):
        size: int = 3

    with pytest.raises(TypeError, match=r"must be declared with @dataclass\(frozen=True\)"):
        node_fields(NotADataclassNode)

    @dataclass
    class MutableNode(L.Node, register=False):
        size: int = 3

    with pytest.raises(TypeError, match=r"@dataclass\(frozen=True\), not @dataclass"):
        MutableNode()

    @dataclass(frozen=True)
    class ReservedNode(L.Node, register=False):
        format: int = 3

    with pytest.raises(TypeError, match="reserved"):
        ReservedNode()

    @dataclass(frozen=True)
    class UnsupportedNode(L.Node, register=False):
        value: set[int] = field(default_factory=set)

    with pytest.raises(TypeError, match="field type set\\[int\\] is not supported"):
        UnsupportedNode()


def test_config_error_keeps_its_path_through_pickling() -> None:
    import pickle

    err = ConfigError("expected int, got 'abc'", "a.b[1]", wrong_type=True)
    back = pickle.loads(pickle.dumps(err))
    assert (back.path, back.reason, back.wrong_type, str(back)) == (
        err.path,
        err.reason,
        True,
        "a.b[1]: expected int, got 'abc'",
    )
    assert str(err.under("root")) == "root.a.b[1]: expected int, got 'abc'"
    assert isinstance(err, ValueError) and isinstance(err, L.NNError)
