"""Errors of legoml-nn: each message names the field path and what to change."""

from __future__ import annotations

from typing import Any

__all__ = ["BuildError", "ConfigError", "NNError", "join_path"]


def join_path(prefix: str, path: str) -> str:
    """Join two field paths: ``join_path("encoder", "blocks[1].k") == "encoder.blocks[1].k"``."""
    if not prefix:
        return path
    if not path:
        return prefix
    return prefix + path if path.startswith("[") else f"{prefix}.{path}"


class NNError(Exception):
    """Base class for every problem legoml-nn reports."""


class ConfigError(NNError, ValueError):
    """A node config is invalid. ``path`` locates the field (``encoder.blocks[1].out_channels``).

    >>> str(ConfigError("expected int, got 'abc'", "blocks[1].out_channels"))
    "blocks[1].out_channels: expected int, got 'abc'"
    """

    def __init__(self, reason: str, path: str = "", *, wrong_type: bool = False) -> None:
        self.reason = reason
        self.path = path
        #: True when the value had the wrong type (rather than a wrong value of the right type).
        self.wrong_type = wrong_type
        super().__init__(f"{path}: {reason}" if path else reason)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.reason, self.path, self.wrong_type))

    def under(self, prefix: str) -> ConfigError:
        """The same error located below ``prefix`` (the path of the enclosing field)."""
        return type(self)(self.reason, join_path(prefix, self.path), wrong_type=self.wrong_type)


def _rebuild(cls: type[ConfigError], reason: str, path: str, wrong_type: bool) -> ConfigError:
    return cls(reason, path, wrong_type=wrong_type)


class BuildError(NNError, RuntimeError):
    """A valid config cannot be built in this situation (e.g. lazy layers not materialized)."""
