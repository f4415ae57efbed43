"""fork (dotted paths, list indices), command-line overrides and the tree repr."""

from __future__ import annotations

from typing import Any

import pytest

import legoml.nn as L
from legoml.nn import ConfigError
from legoml.nn.blocks import GELUNode, GroupNormNode, LeakyReLUNode


def _model() -> L.SequentialNode:
    return L.SequentialNode(
        layers=[
            L.EncoderNode(
                in_channels=1,
                blocks=[L.ConvBlockNode(out_channels=8), L.ConvBlockNode(out_channels=16)],
            ),
            L.MLPNode(hidden=(32,), out_features=10),
        ]
    )


def test_fork_changes_a_copy_and_leaves_the_original_untouched() -> None:
    node = L.TinyCNNNode()
    before = node.to_dict()
    forked = node.fork(channels=(8, 16), dropout=0.25)
    assert forked == L.TinyCNNNode(channels=(8, 16), dropout=0.25)
    assert node.to_dict() == before and node == L.TinyCNNNode()
    assert node.fork() == node


@pytest.mark.parametrize(
    "key",
    ["layers.0.blocks.1.out_channels", "layers[0].blocks[1].out_channels", " layers.0.blocks[1].out_channels "],
)  # fmt: skip
def test_fork_reaches_into_children_and_list_items(key: str) -> None:
    node = _model()
    before = node.to_dict()
    forked = node.fork(**{key: 24})
    encoder = forked.layers[0]
    assert isinstance(encoder, L.EncoderNode)
    assert [b.output_channels(None) for b in encoder.blocks] == [8, 24]
    assert node.to_dict() == before
    # untouched branches are shared, changed ones are new objects
    assert forked.layers[1] is node.layers[1]
    assert forked.layers[0] is not node.layers[0]


def test_fork_sets_whole_children_from_nodes_or_dicts() -> None:
    node = L.TinyCNNNode()
    assert node.fork(activation=GELUNode()).activation == GELUNode()
    as_dict = node.fork(activation={"type": "LeakyReLUNode", "negative_slope": 0.2})
    assert as_dict.activation == LeakyReLUNode(negative_slope=0.2)
    assert node.fork(**{"activation.inplace": True}).activation == L.ReluNode(inplace=True)
    model = _model()
    swapped = model.fork(**{"layers.0.blocks.0": {"type": "ResidualBlockNode", "out_channels": 8}})
    assert swapped.layers[0].blocks[0] == L.ResidualBlockNode(out_channels=8)  # type: ignore[attr-defined]
    assert model.fork(**{"layers.1.hidden.0": 64}).layers[1] == L.MLPNode(hidden=(64,))


def test_fork_applies_changes_in_order() -> None:
    node = L.ConvBlockNode()
    forked = node.fork(norm={"type": "GroupNormNode", "num_groups": 4}, **{"norm.eps": 1e-3})
    assert forked.norm == GroupNormNode(num_groups=4, eps=1e-3)


def test_fork_dict_entries() -> None:
    from test_nn_validation import KitchenSinkNode

    sink = KitchenSinkNode(weights={"a": 1.0})
    assert sink.fork(**{"weights.b": 2.5}).weights == {"a": 1.0, "b": 2.5}
    assert sink.weights == {"a": 1.0}
    with pytest.raises(ConfigError, match=r"^weights.b: expected float \| int \| str, got \[\]"):
        sink.fork(**{"weights.b": []})


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"layers.0.blocks.1.out_channels": "abc"},
            "layers[0].blocks[1].out_channels: expected int, got 'abc'",
        ),
        (
            {"layers.0.blocks.1.out_chanels": 3},
            "layers[0].blocks[1].out_chanels: unknown field of ConvBlockNode (did you mean "
            "'out_channels'",
        ),
        ({"layers.5.in_channels": 3}, "layers: no item '5': valid indices are 0..1"),
        ({"layers.x.in_channels": 3}, "layers: no item 'x': valid indices are 0..1"),
        (
            {"layers.0.blocks.0.norm.eps": 0.1},
            "layers[0].blocks[0].norm: is None, so it has no 'eps'; set the whole value first",
        ),
        ({"layers.0.in_channels.x": 1}, "layers[0].in_channels: int value 1 has no 'x' inside"),
        (
            {"layers.0.blocks.1.in_channels": 3},
            "layers[0].blocks[1].in_channels: is 3 but the layer before it gives 8",
        ),
        (
            {"layers.1.activation": {"type": "os.system"}},
            "layers[1].activation.type: unknown node type 'os.system'",
        ),
        ({"layres": []}, "layres: unknown field of SequentialNode (did you mean 'layers'?)"),
        ({"layers..x": 1}, "bad key 'layers..x'"),
        ({"": 1}, "bad key ''"),
    ],
)
def test_fork_errors_name_the_path(changes: dict[str, Any], expected: str) -> None:
    node = _model()
    with pytest.raises(ConfigError) as info:
        node.fork(**changes)
    assert str(info.value).startswith(expected)
    assert node == _model()


def test_apply_overrides_parses_json_values_and_falls_back_to_strings() -> None:
    node = L.TinyCNNNode()
    changed = L.apply_overrides(
        node,
        [
            "channels=[16, 32, 64]",
            "dropout=0.1",
            "batch_norm=true",
            "input_size=null",
            "pool=avg",
            'activation={"type": "GELUNode", "approximate": "tanh"}',
            "activation.approximate=none",
        ],
    )
    assert changed == L.TinyCNNNode(
        channels=(16, 32, 64),
        dropout=0.1,
        batch_norm=True,
        input_size=None,
        pool="avg",
        activation=GELUNode(approximate="none"),
    )
    assert node == L.TinyCNNNode()


def test_apply_overrides_retries_json_values_as_text_for_str_fields() -> None:
    from test_nn_validation import KitchenSinkNode

    sink = L.apply_overrides(KitchenSinkNode(), ["name=123", "either=7", "weights.k=true"])
    assert sink.name == "123" and sink.either == 7
    assert sink.weights == {"k": "true"}


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("dropout=abc", "dropout: expected float, got 'abc'"),
        ("dropout=2", "dropout: must be < 1.0, got 2.0"),
        ("channels=[32, 0]", "channels[1]: must be >= 1, got 0"),
        ("dropuot=0.1", "dropuot: unknown field of TinyCNNNode (did you mean 'dropout'"),
        ("activation.slope=1", "activation.slope: unknown field of ReluNode"),
        ("dropout", "override 'dropout': expected key=value"),
        ("=3", "override '=3': expected key=value"),
        ("kernel_size=3.0", "kernel_size: expected int, got 3.0"),
        ("input_size=[28]", "input_size: expected 2 items, got 1"),
        ("input_size=28", "input_size: expected tuple[int, int] | None, got 28"),
    ],
)
def test_apply_overrides_errors_name_the_key(override: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        L.apply_overrides(L.TinyCNNNode(), [override])
    assert str(info.value).startswith(expected)


def test_repr_is_an_indented_tree() -> None:
    assert repr(L.ReluNode()) == "ReluNode(inplace=False)"
    text = repr(_model())
    lines = text.splitlines()
    assert lines[0] == "SequentialNode("
    assert lines[1] == "  layers=["
    assert lines[2] == "    EncoderNode("
    assert "      in_channels=1," in lines
    assert "        ConvBlockNode(" in lines
    assert lines[-1] == ")"
    assert str(_model()) == text
    # every line fits the width, and the text evaluates back to the same node
    assert max(len(line) for line in lines) <= 88
    namespace: dict[str, object] = dict(L.registered_nodes())
    assert eval(text, namespace) == _model()  # noqa: S307 - trusted text built by the test
