"""Setting a value deep inside a node tree, returning new nodes (``Node.fork``).

Path syntax: field names joined by dots; list/tuple items by index, either ``.1`` or ``[1]``;
dict entries by key: ``encoder.blocks.1.out_channels`` == ``encoder.blocks[1].out_channels``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from legoml.nn._schema import fields_of
from legoml.nn._text import closest, short
from legoml.nn.errors import ConfigError, join_path

__all__ = ["parse_key", "set_in"]

_INDEX = re.compile(r"\[([^\[\]]*)\]")


def parse_key(key: str) -> list[str]:
    """``"a.b[1].c"`` -> ``["a", "b", "1", "c"]``; empty parts are an error."""
    parts = _INDEX.sub(r".\1", key.strip()).split(".")
    if not key.strip() or any(not p.strip() for p in parts):
        raise ConfigError(
            f"bad key {short(key)}: use dotted names such as 'encoder.blocks.1.out_channels'"
        )
    return [p.strip() for p in parts]


def set_in(value: Any, parts: list[str], new: Any, path: str, node_base: type[Any]) -> Any:
    """A copy of ``value`` with ``new`` placed at ``parts`` (new nodes are validated)."""
    if not parts:
        return new
    head, rest = parts[0], parts[1:]
    if isinstance(value, node_base):
        fields = fields_of(type(value), node_base)
        here = join_path(path, head)
        if head not in fields:
            raise ConfigError(
                f"unknown field of {type(value).__name__}{closest(head, list(fields))}; "
                f"its fields: {', '.join(fields)}",
                here,
            )
        child = set_in(getattr(value, head), rest, new, here, node_base)
        try:
            return dataclasses.replace(value, **{head: child})
        except ConfigError as err:
            raise err.under(path) from None
    if isinstance(value, (list, tuple)):
        if not head.isdigit() or int(head) >= len(value):
            raise ConfigError(f"no item {short(head)}: valid indices are 0..{len(value) - 1}", path)
        index = int(head)
        items = list(value)
        items[index] = set_in(items[index], rest, new, join_path(path, f"[{index}]"), node_base)
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, Mapping):
        here = join_path(path, head)
        if rest and head not in value:
            raise ConfigError(f"no entry {head!r}; entries: {', '.join(map(str, value))}", here)
        entries = dict(value)
        entries[head] = set_in(value.get(head), rest, new, here, node_base)
        return entries
    if value is None:
        raise ConfigError(f"is None, so it has no {head!r}; set the whole value first", path)
    raise ConfigError(f"{type(value).__name__} value {short(value)} has no {head!r} inside", path)
