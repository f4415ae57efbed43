"""Error hierarchy of legoml.track: every message names the file or field and the fix."""

from __future__ import annotations

__all__ = ["CheckpointError", "MissingExtraError", "RunError", "TrackError"]


class TrackError(Exception):
    """Base class of every error raised by legoml.track."""


class RunError(TrackError):
    """A run directory cannot be created, resumed, read or written as asked."""


class CheckpointError(TrackError):
    """A checkpoint cannot be saved, found, read safely or applied to a model."""


class MissingExtraError(TrackError, ImportError):
    """An optional dependency (an extra of legoml-track) is not installed."""
