"""Readable tree rendering of nodes: one line when it fits, indented children otherwise."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = ["render"]

WIDTH = 88
_STEP = "  "


def _items(value: Any) -> list[tuple[str, Any]]:
    """(label, child) pairs of a node, sequence or mapping; labels end with ``=``/``: ``."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [(f"{f.name}=", getattr(value, f.name)) for f in dataclasses.fields(value) if f.repr]
    if isinstance(value, Mapping):
        return [(f"{k!r}: ", v) for k, v in value.items()]
    return [("", v) for v in value]


def _brackets(value: Any) -> tuple[str, str]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return f"{type(value).__name__}(", ")"
    if isinstance(value, Mapping):
        return "{", "}"
    return ("[", "]") if isinstance(value, list) else ("(", ")")


def _is_tree(value: Any) -> bool:
    return isinstance(value, (list, tuple, Mapping)) or (
        dataclasses.is_dataclass(value) and not isinstance(value, type)
    )


def _one_line(value: Any) -> str:
    if not _is_tree(value):
        return repr(value)
    opening, closing = _brackets(value)
    parts = [label + _one_line(child) for label, child in _items(value)]
    if isinstance(value, tuple) and len(parts) == 1:
        return f"{opening}{parts[0]},{closing}"
    return opening + ", ".join(parts) + closing


def render(value: Any, indent: int = 0, used: int | None = None) -> str:
    """``value`` as text for a line indented by ``indent`` with ``used`` columns taken."""
    one = _one_line(value)
    start = indent if used is None else used
    if start + len(one) + 1 <= WIDTH or not _is_tree(value) or not _items(value):
        return one
    opening, closing = _brackets(value)
    inner = indent + len(_STEP)
    lines = [opening]
    for label, child in _items(value):
        text = render(child, inner, inner + len(label))
        lines.append(f"{' ' * inner}{label}{text},")
    lines.append(" " * indent + closing)
    return "\n".join(lines)
