"""Checks and conversions of plain values, defined once for legoml-core and the packages
built on it (legoml-track imports them; legoml-data and legoml-metrics, which may not import
core, keep one private copy each).

Example:
    >>> require_int(3, "loop(max_epochs=...)")
    3
    >>> to_scalar(torch.tensor([0.5]))
    0.5
"""

from __future__ import annotations

from typing import Any, Literal, TypeGuard, overload

import torch

from legoml.core.errors import CoreError

__all__ = ["is_int", "require_int", "to_scalar"]


def is_int(value: object) -> TypeGuard[int]:
    """An ``int`` that is not a ``bool`` (``True`` is an int to Python, never a count here)."""
    return isinstance(value, int) and not isinstance(value, bool)


@overload
def require_int(
    value: object,
    what: str,
    *,
    minimum: int = ...,
    optional: Literal[False] = ...,
    error: type[Exception] = ...,
) -> int: ...


@overload
def require_int(
    value: object,
    what: str,
    *,
    minimum: int = ...,
    optional: Literal[True],
    error: type[Exception] = ...,
) -> int | None: ...


def require_int(
    value: object,
    what: str,
    *,
    minimum: int = 1,
    optional: bool = False,
    error: type[Exception] = CoreError,
) -> int | None:
    """``value`` if it is an int >= ``minimum`` (or ``None`` when ``optional``), else
    ``error("<what> must be [None or ]an int >= <minimum>, got <value>")``."""
    if optional and value is None:
        return None
    if not is_int(value) or value < minimum:
        either = "None or " if optional else ""
        raise error(f"{what} must be {either}an int >= {minimum}, got {value!r}")
    return value


def to_scalar(value: Any) -> float | None:
    """A float for one-element tensors and real numbers (not bools), else ``None``."""
    if isinstance(value, torch.Tensor):
        return float(value.detach()) if value.numel() == 1 else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None
