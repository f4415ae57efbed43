"""Errors of legoml-metrics: each message names the argument and what it should be."""

from __future__ import annotations

__all__ = ["MetricError", "MetricInputError", "MetricStateError"]


class MetricError(Exception):
    """Base class for every problem legoml-metrics reports."""


class MetricInputError(MetricError, ValueError):
    """Predictions, targets, mask or a constructor argument have the wrong shape or values."""


class MetricStateError(MetricError):
    """States that cannot be combined: merging different metrics, loading a foreign state."""
