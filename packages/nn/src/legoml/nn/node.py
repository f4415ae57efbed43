"""``Node``: a frozen, validated, serializable config that builds one thing.

Subclasses are frozen dataclasses; declaring one registers it under its class name (its
*type tag*), and only registered tags can be named in a config: ``Node.from_dict`` never
imports or calls anything named by a string.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from torch import nn

from legoml.nn import _registry
from legoml.nn._paths import parse_key, set_in
from legoml.nn._repr import render
from legoml.nn._schema import FORMAT_VERSION, MAX_DEPTH, FieldSpec, fields_of, parse_node
from legoml.nn._text import closest, short
from legoml.nn.errors import ConfigError

__all__ = [
    "FORMAT_VERSION",
    "MAX_DEPTH",
    "BlockNode",
    "ModelNode",
    "ModuleNode",
    "Node",
    "apply_overrides",
    "node_fields",
    "registered_nodes",
]

N = TypeVar("N", bound="Node")


class _NodeMeta(type):
    """Turns a mistyped constructor keyword (``TinyCNNNode(chanels=...)``) into the
    ``ConfigError`` that ``fork`` gives, instead of the dataclass ``__init__``'s TypeError."""

    if not TYPE_CHECKING:  # hidden from mypy, which would otherwise type every call as Any

        def __call__(cls, *args, **kwargs):
            try:
                return super().__call__(*args, **kwargs)
            except TypeError:
                if kwargs:
                    _refuse_unknown_keywords(cls, kwargs)
                raise


def _refuse_unknown_keywords(cls: type[Any], kwargs: Mapping[str, Any]) -> None:
    if not dataclasses.is_dataclass(cls):
        return
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in kwargs:
        if key not in names:
            raise ConfigError(
                f"unknown field of {cls.__name__}{closest(key, names)}; "
                f"its fields: {', '.join(names)}",
                key,
            ) from None


class Node(metaclass=_NodeMeta):
    """Base of every configurable piece: a frozen dataclass whose ``build()`` makes the object.

    Declare fields with plain annotations and defaults; value limits go in ``Annotated``
    (``Check``), cross-field rules in ``validate()`` (do not override ``__post_init__``: it
    converts and validates the fields). Subclassing registers the class under its
    name (``class MyNode(Node, tag="my.MyNode")`` picks another tag, ``register=False`` keeps an
    abstract base out of the registry).

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class ScaleNode(Node):
    ...     factor: float = 2.0
    ...     def build(self) -> float:
    ...         return self.factor
    >>> node = Node.from_dict({"type": "ScaleNode", "factor": 3})
    >>> node, node.fork(factor=0.5).build()
    (ScaleNode(factor=3.0), 0.5)
    """

    #: The name a config uses for this class (``"type"`` in ``to_dict()``).
    type_tag: ClassVar[str] = "Node"

    def __init_subclass__(
        cls, *, register: bool = True, tag: str | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if "__repr__" not in cls.__dict__:
            # Set before @dataclass runs, so it keeps the tree repr instead of writing its own.
            cls.__repr__ = Node.__repr__  # type: ignore[method-assign]
        if tag is not None and not register:
            raise TypeError(f"{cls.__qualname__}: a tag only makes sense for a registered node")
        cls.type_tag = tag if tag is not None else cls.__name__
        if register:
            _registry.add(cls.type_tag, cls)

    def __post_init__(self) -> None:
        for name, field in node_fields(type(self)).items():
            value = field.spec.convert(getattr(self, name), name, 0)
            object.__setattr__(self, name, value)
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; raise ``ConfigError(reason, field_name)``. Fields are converted."""

    def build(self, *args: Any, **kwargs: Any) -> Any:
        """Make the object this node describes."""
        raise NotImplementedError(f"{type(self).__name__} does not define build()")

    # -- serialization ---------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe data: ``{"type": tag, "format": 1, field: value, ...}``."""
        data = _encode(self)
        return {"type": data.pop("type"), "format": FORMAT_VERSION, **data}

    def to_json(self, indent: int | None = 2) -> str:
        """``to_dict()`` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls: type[N], data: Mapping[str, Any]) -> N:
        """Rebuild a node from ``to_dict()`` data, resolving only registered node types.

        Called on a subclass, the result must be an instance of it (``TinyCNNNode.from_dict``).
        A missing ``"type"`` is allowed when ``cls`` itself is a registered node type.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"a node config is a dict with a 'type' key, got {short(data)}")
        node: N = parse_node(data, cls, Node, "", 0)
        return node

    @classmethod
    def from_json(cls: type[N], text: str | bytes) -> N:
        """``from_dict(json.loads(text))`` with JSON errors turned into ``ConfigError``."""
        try:
            data = json.loads(text)
        except ValueError as err:
            raise ConfigError(f"not valid JSON: {err}") from None
        except RecursionError:
            raise ConfigError(f"JSON nested more than {MAX_DEPTH} levels deep") from None
        return cls.from_dict(data)

    # -- changes -----------------------------------------------------------------------

    def fork(self: N, **changes: Any) -> N:
        """A validated copy with ``changes`` applied; ``self`` is left untouched.

        Keys are field names or dotted paths into children: ``"encoder.blocks.1.out_channels"``
        (or ``"encoder.blocks[1].out_channels"``), ``"weights.cat"`` for dict entries. Values
        may be nodes or their ``to_dict()`` data. Changes apply in order.
        """
        node: N = self
        for key, value in changes.items():
            node = set_in(node, parse_key(key), value, "", Node)
        return node

    def __repr__(self) -> str:
        return render(self)


class ModuleNode(Node, register=False):
    """A node whose ``build()`` returns an ``nn.Module``."""

    def build(self) -> nn.Module:
        raise NotImplementedError(f"{type(self).__name__} does not define build()")


class BlockNode(ModuleNode, register=False):
    """Base of the building blocks (``legoml.nn.blocks``): activations, pooling, norms, conv,
    linear and residual blocks, containers. A field typed ``BlockNode`` accepts any of them.

    >>> from legoml.nn import ReluNode, TinyCNNNode
    >>> isinstance(ReluNode(), BlockNode), isinstance(TinyCNNNode(), BlockNode)
    (True, False)
    """


class ModelNode(ModuleNode, register=False):
    """Base of whole models (``legoml.nn.models``): ``MLPNode``, ``TinyCNNNode``, ``EncoderNode``,
    ``ConvAutoencoderNode``. A field typed ``ModelNode`` accepts any of them.

    >>> from legoml.nn import ConvBlockNode, MLPNode
    >>> isinstance(MLPNode(), ModelNode), isinstance(ConvBlockNode(), ModelNode)
    (True, False)
    """


def node_fields(cls: type[Node]) -> dict[str, FieldSpec]:
    """The declared fields of a node class, in order (name, converter, required)."""
    return fields_of(cls, Node)


def registered_nodes() -> dict[str, type[Node]]:
    """Every registered node type, by tag (a copy)."""
    return _registry.snapshot()


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def apply_overrides(node: N, overrides: Iterable[str]) -> N:
    """Apply command-line style ``"path=value"`` overrides with ``fork``.

    Values are read as JSON when they parse (``3``, ``0.01``, ``true``, ``null``, ``[32, 64]``,
    ``{"type": "GELUNode"}``), otherwise as a plain string; a JSON value a field refuses is
    retried as the raw string (``name=123`` sets a str field to ``"123"``).

    >>> from legoml.nn import TinyCNNNode
    >>> apply_overrides(TinyCNNNode(), ["channels=[16, 32]", "dropout=0.1"]).channels
    (16, 32)
    """
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {short(item)}: expected key=value, e.g. channels=[16,32]")
        value = _parse_value(text.strip())
        try:
            node = node.fork(**{key.strip(): value})
        except ConfigError as err:
            if isinstance(value, str) or not err.wrong_type:
                raise
            try:
                node = node.fork(**{key.strip(): text.strip()})
            except ConfigError:
                raise err from None
    return node


def _encode(value: Any) -> Any:
    """JSON-safe form of a field value (nodes as dicts with their ``"type"``)."""
    if isinstance(value, Node):
        data: dict[str, Any] = {"type": value.type_tag}
        for name in node_fields(type(value)):
            data[name] = _encode(getattr(value, name))
        return data
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    return value
