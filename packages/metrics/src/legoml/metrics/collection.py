"""MetricCollection: several metrics fed the same predictions and targets at once.

The naming rule (legoml-core's ``MetricsCallback`` follows the same one, checked by a test
that imports both): a mapping names each metric by its key; a sequence by the metric's
``name`` (a non-empty string), else by its class name in snake_case without a
``MultiClass``/``Binary`` prefix. Results are ``<prefix><name>``; a dict result gives
``<prefix><name>/<key>`` for each key, nested dicts one ``/<key>`` more per level.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from torch import Tensor

from legoml.metrics.errors import MetricStateError
from legoml.metrics.metric import Metric

__all__ = ["MetricCollection"]

_CLASS_PREFIXES = ("MultiClass", "Multiclass", "Binary")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def _metric_name(metric: object) -> str:
    """The name a sequence of metrics gives ``metric`` (``MultiClassAccuracy`` -> its
    ``name``, ``accuracy``; a nameless ``BinaryF1Score`` -> ``f1_score``)."""
    name = getattr(metric, "name", None)
    if isinstance(name, str) and name:
        return name
    cls = type(metric).__name__
    for prefix in _CLASS_PREFIXES:
        if cls.startswith(prefix) and len(cls) > len(prefix):
            cls = cls[len(prefix) :]
            break
    return _CAMEL.sub("_", cls).lower()


def _flatten(name: str, value: Any, into: dict[str, Any]) -> None:
    """``into[name] = value``; a mapping value as ``name/key`` entries, level by level."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(f"{name}/{key}", item, into)
    else:
        into[name] = value


class MetricCollection:
    """Update, compute, reset, merge and reduce named metrics together.

    ``compute()`` returns one flat dict: ``prefix + name`` for scalar results and
    ``prefix + name/key`` for dict results (e.g. a ClassificationReport). A sequence of
    metrics is named by each metric's ``name`` (the rule is in the module docstring).

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
            named = {str(name): metric for name, metric in metrics.items()}
        else:
            named = {}
            for metric in metrics:
                name = _metric_name(metric)
                if name in named:
                    raise MetricStateError(
                        f"two metrics are both named {name!r}; pass a dict {{name: metric}}"
                    )
                named[name] = metric
        self.metrics: dict[str, Metric] = named
        self.prefix = prefix

    def update(self, predictions: Tensor, targets: Tensor, mask: Tensor | None = None) -> None:
        for metric in self.metrics.values():
            metric.update(predictions, targets, mask)

    def compute(self) -> dict[str, Any]:
        results: dict[str, Any] = {}
        for name, metric in self.metrics.items():
            _flatten(f"{self.prefix}{name}", metric.compute(), results)
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
