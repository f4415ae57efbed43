"""legoml-metrics: exact, mergeable, rank-reducible classification and regression metrics (torch only)."""

from legoml.metrics import functional
from legoml.metrics.classification import (
    BinaryAccuracy,
    BinaryPrecision,
    BinaryRecall,
    ConfusionMatrix,
    F1Score,
    MultiClassAccuracy,
)
from legoml.metrics.collection import MetricCollection
from legoml.metrics.errors import MetricError, MetricInputError, MetricStateError
from legoml.metrics.loss import MeanLoss
from legoml.metrics.metric import Metric, Reduction
from legoml.metrics.regression import MeanAbsoluteError, MeanSquaredError
from legoml.metrics.report import ClassificationReport

__all__ = [
    "BinaryAccuracy",
    "BinaryPrecision",
    "BinaryRecall",
    "ClassificationReport",
    "ConfusionMatrix",
    "F1Score",
    "MeanAbsoluteError",
    "MeanLoss",
    "MeanSquaredError",
    "Metric",
    "MetricCollection",
    "MetricError",
    "MetricInputError",
    "MetricStateError",
    "MultiClassAccuracy",
    "Reduction",
    "functional",
]
