"""Field aliases and size resolution shared by the block nodes."""

from __future__ import annotations

from typing import Annotated

from legoml.nn._check import Check
from legoml.nn.errors import ConfigError

__all__ = ["NonNegative", "Positive", "Probability", "resolve_size"]

Positive = Annotated[int, Check(ge=1)]
NonNegative = Annotated[int, Check(ge=0)]
Probability = Annotated[float, Check(ge=0.0, lt=1.0)]


def resolve_size(declared: int | None, given: int | None, field: str) -> int | None:
    """The size a layer gets: its declared value, else the one its container passes in."""
    if declared is not None and given is not None and declared != given:
        raise ConfigError(
            f"is {declared} but the layer before it gives {given}; use {given} or null", field
        )
    return declared if declared is not None else given
