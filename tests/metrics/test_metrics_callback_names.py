"""legoml-core's MetricsCallback names epoch results exactly as MetricCollection does.

Core may not import legoml-metrics, so it reproduces the naming rule; this test, which
imports both, is where the two are held together.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor

from legoml.core import Context, Engine, MetricsCallback
from legoml.core.callbacks import metric_name
from legoml.metrics import (
    BinaryAccuracy,
    ClassificationReport,
    ConfusionMatrix,
    F1Score,
    Metric,
    MetricCollection,
    MetricStateError,
    MultiClassAccuracy,
)
from legoml.metrics.collection import _metric_name


class _Seen(Metric):
    """Counts the samples it is fed."""

    def __init__(self) -> None:
        super().__init__()
        self.add_state("seen", torch.zeros((), dtype=torch.int64))

    def update(self, predictions: Tensor, targets: Tensor, mask: Tensor | None = None) -> None:
        self._accumulate(seen=torch.tensor(targets.numel()))

    def compute(self) -> Any:
        return float(self._states["seen"])


class BinaryF1Score(_Seen):
    """A nameless metric: both sides fall back to its class name (``f1_score``)."""

    name = ""


class Nested(_Seen):
    """A dict result with a nested dict: one ``/<key>`` per level on both sides."""

    name = "nested"

    def compute(self) -> dict[str, Any]:
        seen = float(self._states["seen"])
        return {"count": seen, "half": {"value": seen / 2, "tensor": torch.tensor(seen / 4)}}


MetricSets = Callable[[], Any]
SETS: list[tuple[str, MetricSets]] = [
    ("sequence", lambda: [MultiClassAccuracy(), MultiClassAccuracy(top_k=2), F1Score(), BinaryF1Score()]),
    ("report", lambda: [ClassificationReport(num_classes=3), Nested(), ConfusionMatrix(3)]),
    ("mapping", lambda: {"acc": MultiClassAccuracy(), 7: F1Score(average="micro"), "r": ClassificationReport()}),
]  # fmt: skip


def _batches() -> list[tuple[Tensor, Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(n, 3, generator=g), torch.randint(0, 3, (n,), generator=g)) for n in (5, 8, 3)]


def _scalars(values: dict[str, Any]) -> dict[str, float]:
    """What a callback can publish: the one-element results, as floats."""
    out: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, Tensor) and value.numel() != 1:
            continue
        out[key] = float(value)
    return out


@pytest.mark.parametrize("prefix", ["val/", "", "test_"])
@pytest.mark.parametrize(("label", "make"), SETS, ids=[s[0] for s in SETS])
def test_callback_names_results_like_the_collection(label: str, make: MetricSets, prefix: str) -> None:
    batches = _batches()
    collection = MetricCollection(make(), prefix=prefix)
    for scores, targets in batches:
        collection.update(scores, targets)
    expected = collection.compute()

    callback = MetricsCallback(make(), loss=None, prefix=prefix)
    step = lambda e, b, c: {"loss": None, "predictions": b[0], "targets": b[1]}  # noqa: E731
    metrics = Engine(step, Context(torch.nn.Identity()), [callback]).loop(batches).metrics

    assert metrics == _scalars(expected)
    assert set(callback.results) == set(collection.metrics)  # same names, before the prefix
    dropped = set(expected) - set(metrics)  # non-scalars: kept raw in callback.results
    for key in dropped:
        name = key[len(prefix) :].split("/")[0]
        assert torch.equal(callback.results[name], expected[key])


@pytest.mark.parametrize(
    "metric",
    [MultiClassAccuracy(), MultiClassAccuracy(top_k=5), BinaryAccuracy(), F1Score(),
     ConfusionMatrix(), ClassificationReport(), BinaryF1Score(), Nested()],
)  # fmt: skip
def test_both_packages_name_a_metric_alike(metric: Metric) -> None:
    assert metric_name(metric) == _metric_name(metric)


def test_both_refuse_two_metrics_of_one_name_with_the_same_message() -> None:
    with pytest.raises(MetricStateError, match="both named 'accuracy'") as from_collection:
        MetricCollection([MultiClassAccuracy(), BinaryAccuracy()])
    with pytest.raises(Exception, match="both named 'accuracy'") as from_callback:
        MetricsCallback([MultiClassAccuracy(), BinaryAccuracy()])
    assert str(from_collection.value) == str(from_callback.value)
