"""Errors that point at the fix: unregistered types, constructor typos, kind-aware hints."""

from __future__ import annotations

import dataclasses

import pytest

import legoml.nn as L


def test_unregistered_type_says_to_import_its_module() -> None:
    with pytest.raises(L.ConfigError, match="import the module that defines DigitsMLPNode") as err:
        L.Node.from_dict({"type": "DigitsMLPNode"})
    assert err.value.path == "type"


def test_constructor_typo_is_the_config_error_fork_gives() -> None:
    with pytest.raises(L.ConfigError) as built:
        L.TinyCNNNode(chanels=(8,))  # type: ignore[call-arg]
    with pytest.raises(L.ConfigError) as forked:
        L.TinyCNNNode().fork(chanels=(8,))
    assert str(built.value) == str(forked.value)
    assert str(built.value).startswith(
        "chanels: unknown field of TinyCNNNode (did you mean 'channels'"
    )


def test_constructor_still_a_dataclass() -> None:
    node = L.TinyCNNNode(channels=(8,))
    assert isinstance(node, L.Node) and dataclasses.is_dataclass(node)
    assert dataclasses.replace(node, dropout=0.5).dropout == 0.5
    with pytest.raises(TypeError):  # not a keyword problem: left as it was
        L.ReluNode(True, 1, 2)  # type: ignore[call-arg]


def test_type_hint_suggests_nodes_of_the_fields_kind() -> None:
    with pytest.raises(L.ConfigError, match="did you mean 'GELUNode'") as err:
        L.TinyCNNNode.from_dict({"activation": {"type": "GeluNode"}})
    assert "SGDNode" not in str(err.value)
    assert err.value.path == "activation.type"


def test_lazy_build_error_names_the_real_input_shape() -> None:
    node = L.TinyCNNNode(in_channels=3, input_size=(4, 4), channels=(8, 8, 8))
    with pytest.raises(L.BuildError, match=r"\(1, 3, 4, 4\)"):
        node.build()
