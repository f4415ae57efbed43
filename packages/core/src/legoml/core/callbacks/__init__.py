"""The built-in callbacks, one module each."""

from legoml.core.callbacks.checkpoint import CheckpointCallback, atomic_torch_save, checkpoint_name
from legoml.core.callbacks.early_stopping import EarlyStopping
from legoml.core.callbacks.ema import EMACallback
from legoml.core.callbacks.evaluation import EvalOnEpochEndCallback
from legoml.core.callbacks.log import LoggingCallback
from legoml.core.callbacks.lr_scheduler import LRSchedulerCallback
from legoml.core.callbacks.metrics import MetricsCallback, metric_name
from legoml.core.callbacks.nonfinite import NonFiniteLossGuard
from legoml.core.callbacks.progress import ProgressBarCallback
from legoml.core.callbacks.timer import TimerCallback

__all__ = [
    "CheckpointCallback",
    "EMACallback",
    "EarlyStopping",
    "EvalOnEpochEndCallback",
    "LRSchedulerCallback",
    "LoggingCallback",
    "MetricsCallback",
    "NonFiniteLossGuard",
    "ProgressBarCallback",
    "TimerCallback",
    "atomic_torch_save",
    "checkpoint_name",
    "metric_name",
]
