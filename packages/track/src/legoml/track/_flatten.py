"""Flatten nested configs into dotted keys so two runs can be compared key by key."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["MISSING", "config_differences", "flatten"]


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": [1, 2]}}`` -> ``{"a.b.0": 1, "a.b.1": 2}``; empty containers stay leaves."""
    out: dict[str, Any] = {}
    if isinstance(data, Mapping) and data:
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(data, Sequence) and not isinstance(data, (str, bytes)) and data:
        for index, value in enumerate(data):
            out.update(flatten(value, f"{prefix}.{index}" if prefix else str(index)))
    else:
        out[prefix] = data
    return out


def config_differences(configs: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Dotted keys whose values are not the same in every config (absent -> ``MISSING``)."""
    flat = [flatten(config) for config in configs]
    keys: dict[str, None] = {}
    for entry in flat:
        keys.update(dict.fromkeys(entry))
    differences: dict[str, list[Any]] = {}
    for key in sorted(keys):
        values = [entry.get(key, MISSING) for entry in flat]
        if any(value != values[0] or type(value) is not type(values[0]) for value in values):
            differences[key] = values
    return differences
