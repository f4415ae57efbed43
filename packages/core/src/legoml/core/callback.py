"""The documented import path for callbacks: the base class, the protocols other
packages meet, and every built-in callback."""

from legoml.core._callback_base import Callback, Priority
from legoml.core.callbacks import (
    CheckpointCallback,
    EarlyStopping,
    EMACallback,
    EvalOnEpochEndCallback,
    LoggingCallback,
    LRSchedulerCallback,
    MetricsCallback,
    NonFiniteLossGuard,
    ProgressBarCallback,
    TimerCallback,
    atomic_torch_save,
    checkpoint_name,
)
from legoml.core.protocols import CheckpointSaver, MetricLike, ScalarSink

__all__ = [
    "Callback",
    "CheckpointCallback",
    "CheckpointSaver",
    "EMACallback",
    "EarlyStopping",
    "EvalOnEpochEndCallback",
    "LRSchedulerCallback",
    "LoggingCallback",
    "MetricLike",
    "MetricsCallback",
    "NonFiniteLossGuard",
    "Priority",
    "ProgressBarCallback",
    "ScalarSink",
    "TimerCallback",
    "atomic_torch_save",
    "checkpoint_name",
]
