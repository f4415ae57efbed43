"""The legoml-core error hierarchy: one base, one type per kind of failure."""

from __future__ import annotations

__all__ = [
    "CallbackError",
    "CoreError",
    "DistributedError",
    "EngineError",
    "MetricNotFoundError",
    "NonFiniteLossError",
    "ResumeError",
]


class CoreError(Exception):
    """Base class of every error raised by legoml-core."""


class EngineError(CoreError, ValueError):
    """The engine was used wrongly (bad loop arguments, empty data, re-entrant loop)."""


class CallbackError(CoreError, ValueError):
    """A built-in callback got a bad argument or cannot find what it needs."""


class MetricNotFoundError(CallbackError):
    """A monitored metric name is not among the metrics its source reported (a typo, or a
    metric nobody computes)."""


class ResumeError(CoreError, ValueError):
    """A state dict cannot be loaded (missing key, wrong type, incompatible run)."""


class NonFiniteLossError(CoreError, FloatingPointError):
    """The loss became NaN or Inf; training stopped before the bad state was saved."""


class DistributedError(CoreError, RuntimeError):
    """torch.distributed could not be set up from the environment."""
