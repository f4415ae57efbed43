"""MetricCollection: several metrics fed the same predictions and targets at once."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from torch import Tensor

from legoml.metrics.errors import MetricStateError
from legoml.metrics.metric import Metric

__all__ = ["MetricCollection"]


class MetricCollection:
    """Update, compute, reset, merge and reduce named metrics together.

    ``compute()`` returns one flat dict: ``prefix + name`` for scalar results and
    ``prefix + name/key`` for dict results (e.g. a ClassificationReport). A sequence of
    metrics is named by each metric's ``name``.

    Example:
        >>> import torch
        >>> from legoml.metrics import F1Score, MultiClassAccuracy
        >>> metrics = MetricCollection([MultiClassAccuracy(), F1Score(num_classes=2)], prefix="val/")
        >>> metrics.update(torch.tensor([[0.2, 0.8], [0.6, 0.4]]), torch.tensor([1, 1]))
        >>> metrics.compute()
        {'val/accuracy': 0.5, 'val/f1': 0.3333333333333333}
    """

    def __init__(self, metrics: Mapping[str, Metric] | Sequence[Metric], prefix: str = "") -> None:
        if isinstance(metrics, Mapping):
            named = dict(metrics)
        else:
            named = {}
            for metric in metrics:
                if metric.name in named:
                    raise MetricStateError(
                        f"two metrics are both named {metric.name!r}; pass a dict {{name: metric}}"
                    )
                named[metric.name] = metric
        self.metrics: dict[str, Metric] = named
        self.prefix = prefix

    def update(self, predictions: Tensor, targets: Tensor, mask: Tensor | None = None) -> None:
        for metric in self.metrics.values():
            metric.update(predictions, targets, mask)

    def compute(self) -> dict[str, Any]:
        results: dict[str, Any] = {}
        for name, metric in self.metrics.items():
            value = metric.compute()
            if isinstance(value, Mapping):
                for key, item in value.items():
                    results[f"{self.prefix}{name}/{key}"] = item
            else:
                results[f"{self.prefix}{name}"] = value
        return results

    def reset(self) -> None:
        for metric in self.metrics.values():
            metric.reset()

    def merge(self, other: MetricCollection) -> MetricCollection:
        if other.metrics.keys() != self.metrics.keys():
            raise MetricStateError(
                f"cannot merge collections of {sorted(other.metrics)} into {sorted(self.metrics)}"
            )
        for name, metric in self.metrics.items():
            metric.merge(other.metrics[name])
        return self

    def all_reduce(self, group: Any = None) -> None:
        for metric in self.metrics.values():
            metric.all_reduce(group)

    def state_dict(self) -> dict[str, dict[str, Tensor]]:
        return {name: metric.state_dict() for name, metric in self.metrics.items()}

    def load_state_dict(self, state: Mapping[str, Mapping[str, Tensor]]) -> None:
        missing = sorted(set(self.metrics) - set(state))
        if missing:
            raise MetricStateError(f"collection state lacks {', '.join(missing)}")
        for name, metric in self.metrics.items():
            metric.load_state_dict(state[name])

    def __getitem__(self, name: str) -> Metric:
        return self.metrics[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.metrics)

    def __len__(self) -> int:
        return len(self.metrics)

    def __repr__(self) -> str:
        inner = ", ".join(f"{name!r}: {metric!r}" for name, metric in self.metrics.items())
        return f"MetricCollection({{{inner}}}, prefix={self.prefix!r})"
