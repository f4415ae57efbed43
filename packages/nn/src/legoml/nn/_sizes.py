"""Size resolution shared by blocks and models: a declared size, or the one passed in."""

from __future__ import annotations

from legoml.nn.errors import ConfigError

__all__ = ["resolve_size"]


def resolve_size(declared: int | None, given: int | None, field: str) -> int | None:
    """The size a layer gets: its declared value, else the one its container passes in."""
    if declared is not None and given is not None and declared != given:
        raise ConfigError(
            f"is {declared} but the layer before it gives {given}; use {given} or null", field
        )
    return declared if declared is not None else given
