"""The table of registered node types: the only classes a config may name.

Lookups are plain dict reads by tag; nothing is ever imported or resolved by string.
"""

from __future__ import annotations

from typing import Any

from legoml.nn._text import closest, short
from legoml.nn.errors import ConfigError

__all__ = ["add", "get", "lookup", "snapshot"]

_TYPES: dict[str, type[Any]] = {}


def add(tag: str, cls: type[Any]) -> None:
    """Register ``cls`` under ``tag``; a tag already used by another class is an error."""
    old = _TYPES.get(tag)
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ConfigError(
            f"node type {tag!r} is already registered by {old.__module__}.{old.__qualname__}; "
            f"rename {cls.__qualname__} or give it its own tag: class {cls.__name__}(..., tag='...')"
        )
    _TYPES[tag] = cls


def lookup(tag: object, path: str = "", kind: type[Any] | None = None) -> type[Any]:
    """The class registered under ``tag``; unknown tags raise naming the closest tags
    (of ``kind`` only, when given: an activation field suggests activation nodes)."""
    if not isinstance(tag, str):
        raise ConfigError(f"'type' must be a registered node type name, got {short(tag)}", path)
    cls = _TYPES.get(tag)
    if cls is None:
        fits = sorted(t for t, c in _TYPES.items() if kind is None or issubclass(c, kind))
        hint = closest(tag, fits) if len(tag) <= 200 else ""
        shown = tag if len(tag) <= 60 and tag.isprintable() else "it"
        raise ConfigError(
            f"unknown node type {short(tag)}, not a registered Node{hint}; a node type is "
            f"registered by importing the module that defines it: import the module that "
            f"defines {shown} before loading, or check the name "
            "(see legoml.nn.registered_nodes())",
            path,
        )
    return cls


def get(tag: str) -> type[Any] | None:
    """The class registered under ``tag``, or None."""
    return _TYPES.get(tag)


def snapshot() -> dict[str, type[Any]]:
    """A copy of the registry (tag -> class)."""
    return dict(_TYPES)
