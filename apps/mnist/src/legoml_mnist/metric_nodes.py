"""Metric nodes: a metric named in a config, built for the dataset it measures.

A task already tracks its own metrics (accuracy and loss for classification, mse/mae for
reconstruction); ``TaskNode.extra_metrics`` adds any of these, each reported as
``train/<name>`` and ``test/<name>``, and the nodes serialize like every other node.

Example:
    >>> from legoml_mnist import ImageClassificationNode
    >>> task = ImageClassificationNode(extra_metrics=(F1ScoreNode(average="weighted"),))
    >>> task.to_dict()["extra_metrics"][0]["type"]
    'legoml_mnist.F1Score'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from legoml.metrics import F1Score, MeanAbsoluteError, MeanSquaredError, Metric, MultiClassAccuracy
from legoml.nn import Node
from legoml.nn.types import Positive

__all__ = [
    "AccuracyNode",
    "F1ScoreNode",
    "MeanAbsoluteErrorNode",
    "MeanSquaredErrorNode",
    "MetricNode",
]


@dataclass(frozen=True)
class MetricNode(Node, register=False):
    """Base of the metric nodes; a field typed ``MetricNode`` accepts any of them."""

    @property
    def name(self) -> str:
        """The key the metric is reported under (without the ``train/``/``test/`` prefix)."""
        raise NotImplementedError

    def build(self, num_classes: int | None = None) -> Metric:
        """A fresh metric; ``num_classes`` comes from the dataset, for the metrics that need it."""
        raise NotImplementedError


@dataclass(frozen=True)
class AccuracyNode(MetricNode, tag="legoml_mnist.Accuracy"):
    """Top-k accuracy (k=1 is plain accuracy)."""

    top_k: Positive = 1

    @property
    def name(self) -> str:
        return "accuracy" if self.top_k == 1 else f"top{self.top_k}_accuracy"

    def build(self, num_classes: int | None = None) -> Metric:
        return MultiClassAccuracy(top_k=self.top_k)


@dataclass(frozen=True)
class F1ScoreNode(MetricNode, tag="legoml_mnist.F1Score"):
    """F1 over the dataset's classes."""

    average: Literal["micro", "macro", "weighted"] = "macro"

    @property
    def name(self) -> str:
        return "f1" if self.average == "macro" else f"f1_{self.average}"

    def build(self, num_classes: int | None = None) -> Metric:
        return F1Score(num_classes=num_classes, average=self.average)


@dataclass(frozen=True)
class MeanSquaredErrorNode(MetricNode, tag="legoml_mnist.MeanSquaredError"):
    """Mean squared error over every element (pixels, for reconstructions)."""

    @property
    def name(self) -> str:
        return "mse"

    def build(self, num_classes: int | None = None) -> Metric:
        return MeanSquaredError()


@dataclass(frozen=True)
class MeanAbsoluteErrorNode(MetricNode, tag="legoml_mnist.MeanAbsoluteError"):
    """Mean absolute error over every element."""

    @property
    def name(self) -> str:
        return "mae"

    def build(self, num_classes: int | None = None) -> Metric:
        return MeanAbsoluteError()
