"""Errors of legoml-data: each message names the file or argument and the fix."""

from __future__ import annotations

__all__ = ["DataError", "MissingDataError", "CorruptDataError", "DataConfigError"]


class DataError(Exception):
    """Base class for every data problem legoml-data reports."""


class MissingDataError(DataError):
    """A dataset file is neither under the root nor reachable through a mirror."""


class CorruptDataError(DataError):
    """A dataset file is truncated, corrupt or not the expected file."""


class DataConfigError(DataError, ValueError):
    """A loader, split or transform argument is invalid (or a state does not fit the loader)."""
