"""Field types a Node may declare, compiled once per class into small converters.

A converter checks a value (from Python code or from JSON), normalizes it (ints to floats
for float fields, lists to tuples for tuple fields, read-only lists/dicts) and raises a
``ConfigError`` that names the field path. Supported types: int, float, bool, str, None,
``Literal``, ``Optional``/``Union``, ``tuple[X, ...]``, ``tuple[X, Y]``, ``list[X]``,
``dict[str, X]`` and Node subclasses (a base class accepts any registered subclass).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from legoml.nn import _registry
from legoml.nn._check import Check
from legoml.nn._frozen import FrozenDict, FrozenList
from legoml.nn._text import closest, short
from legoml.nn.errors import ConfigError, join_path

__all__ = [
    "FORMAT_VERSION",
    "MAX_DEPTH",
    "FieldSpec",
    "Spec",
    "compile_type",
    "fields_of",
    "parse_node",
]

#: Version written as ``"format"`` by ``Node.to_dict``; ``from_dict`` refuses other versions.
FORMAT_VERSION = 1
#: Deepest nesting (nodes and containers) a config may have; real configs use < 10.
MAX_DEPTH = 64

_NONFINITE = {"inf": math.inf, "+inf": math.inf, "-inf": -math.inf, "nan": math.nan}


_NO_CHECK = Check()


def _wrong(spec: Spec, value: object, path: str) -> ConfigError:
    return ConfigError(f"expected {spec.describe()}, got {short(value)}", path, wrong_type=True)


def _too_deep(path: str) -> ConfigError:
    shown = path if len(path) <= 100 else f"{path[:60]}...{path[-30:]}"
    return ConfigError(f"config nested more than {MAX_DEPTH} levels deep; refusing it", shown)


class Spec:
    """Converter for one declared type."""

    def describe(self) -> str:
        raise NotImplementedError

    def convert(self, value: object, path: str, depth: int) -> Any:
        raise NotImplementedError


class _Int(Spec):
    def __init__(self, check: Check) -> None:
        self.check = check

    def describe(self) -> str:
        return "int"

    def convert(self, value: object, path: str, depth: int) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _wrong(self, value, path)
        self.check.number(value, path)
        return int(value)


class _Float(Spec):
    def __init__(self, check: Check) -> None:
        self.check = check

    def describe(self) -> str:
        return "float"

    def convert(self, value: object, path: str, depth: int) -> Any:
        if not self.check.finite and isinstance(value, str) and value.lower() in _NONFINITE:
            value = _NONFINITE[value.lower()]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _wrong(self, value, path)
        number = float(value)
        if self.check.finite and not math.isfinite(number):
            raise ConfigError(f"must be a finite number, got {number!r}", path)
        self.check.number(number, path)
        return number


class _Exact(Spec):
    """bool, str or None: the value must have exactly this type."""

    def __init__(self, kind: type[Any], check: Check) -> None:
        self.kind = kind
        self.check = check

    def describe(self) -> str:
        return "None" if self.kind is type(None) else self.kind.__name__

    def convert(self, value: object, path: str, depth: int) -> Any:
        if type(value) is not self.kind and not (self.kind is str and isinstance(value, str)):
            raise _wrong(self, value, path)
        if isinstance(value, str):
            self.check.length(len(value), path)
            return str(value)
        return value


class _Literal(Spec):
    def __init__(self, choices: tuple[Any, ...]) -> None:
        self.choices = choices

    def describe(self) -> str:
        return " | ".join(repr(c) for c in self.choices)

    def convert(self, value: object, path: str, depth: int) -> Any:
        for choice in self.choices:
            if type(choice) is type(value) and choice == value:
                return choice
        hint = ""
        if isinstance(value, str) and len(value) <= 200:
            hint = closest(value, [c for c in self.choices if isinstance(c, str)])
        raise ConfigError(
            f"expected one of {self.describe()}, got {short(value)}{hint}", path, wrong_type=True
        )


class _Union(Spec):
    def __init__(self, members: list[Spec]) -> None:
        self.members = members

    def describe(self) -> str:
        return " | ".join(m.describe() for m in self.members)

    def convert(self, value: object, path: str, depth: int) -> Any:
        errors: list[ConfigError] = []
        for member in self.members:
            try:
                return member.convert(value, path, depth)
            except ConfigError as err:
                errors.append(err)
        # A member that took the type but refused the value (or something inside) says most.
        for failure in errors:
            if not failure.wrong_type or failure.path != path:
                raise failure
        raise _wrong(self, value, path)


class _Sequence(Spec):
    """tuple[X, ...] / tuple[X, Y] (stored as tuples) and list[X] (stored read-only)."""

    def __init__(
        self, kind: type[Any], item: Spec | None, items: list[Spec] | None, check: Check
    ) -> None:
        self.kind, self.item, self.items, self.check = kind, item, items, check

    def describe(self) -> str:
        if self.items is not None:
            return f"tuple[{', '.join(s.describe() for s in self.items)}]"
        assert self.item is not None
        if self.kind is tuple:
            return f"tuple[{self.item.describe()}, ...]"
        return f"list[{self.item.describe()}]"

    def convert(self, value: object, path: str, depth: int) -> Any:
        if not isinstance(value, (list, tuple)):
            raise _wrong(self, value, path)
        if depth > MAX_DEPTH:
            raise _too_deep(path)
        if self.items is not None and len(value) != len(self.items):
            raise ConfigError(f"expected {len(self.items)} items, got {len(value)}", path)
        self.check.length(len(value), path)
        specs = self.items if self.items is not None else [self.item] * len(value)
        out = [
            spec.convert(item, join_path(path, f"[{i}]"), depth + 1)  # type: ignore[union-attr]
            for i, (spec, item) in enumerate(zip(specs, value, strict=True))
        ]
        return tuple(out) if self.kind is tuple else FrozenList(out)


class _Dict(Spec):
    def __init__(self, value: Spec, check: Check) -> None:
        self.value, self.check = value, check

    def describe(self) -> str:
        return f"dict[str, {self.value.describe()}]"

    def convert(self, value: object, path: str, depth: int) -> Any:
        if not isinstance(value, Mapping):
            raise _wrong(self, value, path)
        if depth > MAX_DEPTH:
            raise _too_deep(path)
        self.check.length(len(value), path)
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"keys must be strings, got {short(key)}", path)
            out[key] = self.value.convert(item, join_path(path, key), depth + 1)
        return FrozenDict(out)


class _Node(Spec):
    def __init__(self, cls: type[Any], node_base: type[Any]) -> None:
        self.cls, self.node_base = cls, node_base

    def describe(self) -> str:
        return str(self.cls.__name__)

    def convert(self, value: object, path: str, depth: int) -> Any:
        if isinstance(value, self.cls):
            return value
        if isinstance(value, Mapping):
            return parse_node(value, self.cls, self.node_base, path, depth)
        if isinstance(value, self.node_base):
            msg = f"expected a {self.cls.__name__}, got {type(value).__name__}"
            raise ConfigError(msg, path, wrong_type=True)
        raise ConfigError(
            f"expected {self.cls.__name__} (a node, or a dict with a 'type' key), got {short(value)}",
            path,
            wrong_type=True,
        )


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """One declared field of a node class."""

    name: str
    spec: Spec
    required: bool


_SUPPORTED = (
    "int, float, bool, str, None, Literal[...], Optional/Union, tuple[X, ...], tuple[X, Y], "
    "list[X], dict[str, X] or a Node subclass"
)


def compile_type(tp: Any, where: str, node_base: type[Any], check: Check = _NO_CHECK) -> Spec:
    """The converter for annotation ``tp`` (``where`` names the field in errors)."""
    if get_origin(tp) is Annotated:
        base, *extras = get_args(tp)
        for extra in extras:
            if isinstance(extra, Check):
                check = check.merge(extra)
        return compile_type(base, where, node_base, check)
    if tp is int:
        return _Int(check)
    if tp is float:
        return _Float(check)
    if tp in (bool, str) or tp is None or tp is type(None):
        return _Exact(type(None) if tp is None else tp, check)
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return _Literal(args)
    if origin is Union or origin is types.UnionType:
        return _Union([compile_type(a, where, node_base, check) for a in args])
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return _Sequence(tuple, compile_type(args[0], where, node_base), None, check)
    if origin is tuple and args and Ellipsis not in args:
        items = [compile_type(a, where, node_base) for a in args]
        return _Sequence(tuple, None, items, check)
    if origin is list and len(args) == 1:
        return _Sequence(list, compile_type(args[0], where, node_base), None, check)
    if origin is dict and len(args) == 2 and args[0] is str:
        return _Dict(compile_type(args[1], where, node_base), check)
    if isinstance(tp, type) and issubclass(tp, node_base):
        return _Node(tp, node_base)
    raise TypeError(f"{where}: field type {tp!r} is not supported; use {_SUPPORTED}")


_CACHE: dict[type[Any], dict[str, FieldSpec]] = {}
_RESERVED = ("type", "format")


def fields_of(cls: type[Any], node_base: type[Any]) -> dict[str, FieldSpec]:
    """The compiled fields of node class ``cls`` (cached; class problems raise TypeError)."""
    found = _CACHE.get(cls)
    if found is not None:
        return found
    name = cls.__qualname__
    if "__dataclass_fields__" not in cls.__dict__:
        raise TypeError(f"{name} must be declared with @dataclass(frozen=True) (Node subclass)")
    if not cls.__dict__["__dataclass_params__"].frozen:
        raise TypeError(f"{name} must be declared with @dataclass(frozen=True), not @dataclass")
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except NameError as err:
        raise TypeError(
            f"{name}: cannot resolve a field annotation ({err}); define the "
            "types it names at module level"
        ) from err
    found = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.name in _RESERVED:
            raise TypeError(f"{name}.{f.name}: field names {_RESERVED} are reserved")
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        spec = compile_type(hints[f.name], f"{name}.{f.name}", node_base)
        found[f.name] = FieldSpec(f.name, spec, required)
    _CACHE[cls] = found
    return found


def parse_node(
    data: Mapping[Any, Any], expected: type[Any], node_base: type[Any], path: str, depth: int
) -> Any:
    """Build a node of (a registered subclass of) ``expected`` from a config dict."""
    if depth > MAX_DEPTH:
        raise _too_deep(path)
    if "type" in data:
        target = _registry.lookup(data["type"], join_path(path, "type"), expected)
        if not issubclass(target, expected):
            fits = sorted(t for t, c in _registry.snapshot().items() if issubclass(c, expected))
            listed = ", ".join(fits[:12]) + (", ..." if len(fits) > 12 else "")
            raise ConfigError(
                f"{target.__name__} is not a {expected.__name__}; use one of: {listed}",
                join_path(path, "type"),
            )
    elif _registry.get(getattr(expected, "type_tag", "")) is expected:
        target = expected
    else:
        raise ConfigError(f"missing 'type': name a registered {expected.__name__} type", path)
    version = data.get("format", FORMAT_VERSION)
    if type(version) is not int or version != FORMAT_VERSION:
        fix = (
            "; upgrade legoml-nn to load it"
            if type(version) is int and version > FORMAT_VERSION
            else ""
        )
        raise ConfigError(
            f"format {short(version)} is not supported (this legoml-nn reads format "
            f"{FORMAT_VERSION}){fix}",
            join_path(path, "format"),
        )
    fields = fields_of(target, node_base)
    for key in data:
        if key in _RESERVED:
            continue
        if not isinstance(key, str) or key not in fields:
            hint = closest(key, list(fields)) if isinstance(key, str) and len(key) <= 200 else ""
            raise ConfigError(
                f"unknown field of {target.__name__}{hint}; its fields: {', '.join(fields)}",
                join_path(path, str(short(key) if not isinstance(key, str) else key)),
            )
    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        if name in data:
            kwargs[name] = field.spec.convert(data[name], join_path(path, name), depth + 1)
        elif field.required:
            raise ConfigError(f"missing required field of {target.__name__}", join_path(path, name))
    try:
        return target(**kwargs)
    except ConfigError as err:
        raise err.under(path) from None
