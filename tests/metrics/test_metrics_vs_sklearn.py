"""Every classification metric against scikit-learn on many seeded random inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as skm
from torch import Tensor

from legoml.metrics import (
    BinaryAccuracy,
    BinaryPrecision,
    BinaryRecall,
    ClassificationReport,
    ConfusionMatrix,
    F1Score,
    MultiClassAccuracy,
)
from legoml.metrics import functional as MF

SEEDS = range(40)


def multiclass_case(seed: int) -> tuple[Tensor, Tensor, int]:
    """Random targets and N×C scores; some seeds leave classes out of targets or predictions."""
    g = torch.Generator().manual_seed(seed)
    classes = int(torch.randint(2, 9, (1,), generator=g))
    n = int(torch.randint(1, 120, (1,), generator=g))
    allowed = classes if seed % 3 else max(1, classes - 2)  # classes absent from the targets
    targets = torch.randint(0, allowed, (n,), generator=g)
    scores = torch.randn(n, classes, generator=g)
    if seed % 4 == 0:  # predictions avoid the last class entirely
        scores[:, -1] = -1e4
    if seed % 5 == 0:  # mostly right, so the scores are not pure noise
        scores[torch.arange(n), targets] += 2.0
    return scores, targets, classes


def as_probabilities(scores: Tensor) -> Tensor:
    return scores.softmax(dim=1)


@pytest.mark.parametrize("seed", SEEDS)
def test_multiclass_metrics_match_sklearn(seed: int) -> None:
    scores, targets, classes = multiclass_case(seed)
    predicted = scores.argmax(1)
    y, p = targets.numpy(), predicted.numpy()
    labels = np.arange(classes)
    for form in (scores, as_probabilities(scores), predicted):
        acc = MultiClassAccuracy()
        acc.update(form, targets)
        assert acc.compute() == pytest.approx(skm.accuracy_score(y, p), abs=1e-12)
        for average in ("macro", "micro", "weighted"):
            for num_classes in (classes, None):
                f1 = F1Score(num_classes=num_classes, average=average)
                f1.update(form, targets)
                expected = skm.f1_score(y, p, average=average, zero_division=0)
                assert f1.compute() == pytest.approx(expected, abs=1e-12), (average, num_classes)
        per_class = F1Score(num_classes=classes, average="none")
        per_class.update(form, targets)
        expected_per_class = skm.f1_score(y, p, labels=labels, average=None, zero_division=0)
        assert np.allclose(per_class.compute().numpy(), expected_per_class, atol=1e-12)
        cm = ConfusionMatrix(num_classes=classes)
        cm.update(form, targets)
        assert np.array_equal(cm.compute().numpy(), skm.confusion_matrix(y, p, labels=labels))


@pytest.mark.parametrize("seed", SEEDS[:20])
def test_report_matches_sklearn(seed: int) -> None:
    scores, targets, classes = multiclass_case(seed)
    y, p = targets.numpy(), scores.argmax(1).numpy()
    report = ClassificationReport(num_classes=classes)
    report.update(scores, targets)
    values = report.compute()
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y, p, labels=np.arange(classes), zero_division=0
    )
    for c in range(classes):
        assert values[f"precision/{c}"] == pytest.approx(precision[c], abs=1e-12)
        assert values[f"recall/{c}"] == pytest.approx(recall[c], abs=1e-12)
        assert values[f"f1/{c}"] == pytest.approx(f1[c], abs=1e-12)
        assert values[f"support/{c}"] == support[c]
    for average in ("macro", "weighted"):
        expected = skm.precision_recall_fscore_support(y, p, average=average, zero_division=0)
        for index, score in enumerate(("precision", "recall", "f1")):
            assert values[f"{average}/{score}"] == pytest.approx(expected[index], abs=1e-12)
    assert values["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    present = sorted(set(y) | set(p))
    if present == list(range(classes)):  # sklearn's table lists the present classes only
        assert (
            report.table().rstrip()
            == skm.classification_report(y, p, digits=4, zero_division=0).rstrip()
        )


@pytest.mark.parametrize("seed", SEEDS)
def test_top_k_accuracy_matches_sklearn(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    classes = int(torch.randint(3, 12, (1,), generator=g))
    n = int(torch.randint(1, 150, (1,), generator=g))
    scores = torch.randn(n, classes, generator=g, dtype=torch.float64)
    targets = torch.randint(0, classes, (n,), generator=g)
    everything = MultiClassAccuracy(top_k=classes)
    everything.update(scores, targets)
    assert everything.compute() == 1.0
    for k in range(1, classes):
        metric = MultiClassAccuracy(top_k=k)
        metric.update(scores, targets)
        expected = skm.top_k_accuracy_score(
            targets.numpy(), scores.numpy(), k=k, labels=np.arange(classes)
        )
        assert metric.compute() == pytest.approx(expected, abs=1e-12), k
        assert float(MF.accuracy(scores, targets, top_k=k)) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.8])
def test_binary_metrics_match_sklearn(seed: int, threshold: float) -> None:
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(1, 100, (1,), generator=g))
    targets = torch.randint(0, 2, (n,), generator=g)
    if seed % 7 == 0:
        targets.zero_()  # no positive target: recall has a zero denominator
    logits = torch.randn(n, generator=g, dtype=torch.float64) * 3
    if seed % 11 == 0:
        logits = -logits.abs() - 5  # nothing predicted positive: precision's zero denominator
    probs = torch.sigmoid(logits)
    y, p = targets.numpy(), (probs > threshold).long().numpy()
    expected = {
        BinaryAccuracy: skm.accuracy_score(y, p),
        BinaryPrecision: skm.precision_score(y, p, zero_division=0),
        BinaryRecall: skm.recall_score(y, p, zero_division=0),
    }
    for cls, value in expected.items():
        for form, from_logits in ((probs, None), (logits, True), (torch.from_numpy(p), None)):
            metric = cls(threshold=threshold, from_logits=from_logits)
            metric.update(form, targets.float() if seed % 2 else targets)
            assert metric.compute() == pytest.approx(value, abs=1e-12), (cls.__name__, form.dtype)
    f1 = F1Score(average="binary", threshold=threshold)
    f1.update(probs, targets)
    assert f1.compute() == pytest.approx(skm.f1_score(y, p, zero_division=0), abs=1e-12)


def test_logits_are_detected_outside_zero_one() -> None:
    logits = torch.tensor([-2.0, 3.0, 0.5, -0.1])
    targets = torch.tensor([0, 1, 1, 0])
    auto, forced = BinaryAccuracy(), BinaryAccuracy(from_logits=True)
    auto.update(logits, targets)
    forced.update(logits, targets)
    assert auto.compute() == forced.compute() == 1.0
    # Values inside [0, 1] are probabilities unless told otherwise.
    as_probs, as_logits = BinaryRecall(), BinaryRecall(from_logits=True)
    as_probs.update(torch.tensor([0.4, 0.6]), torch.tensor([1, 1]))
    as_logits.update(torch.tensor([0.4, 0.6]), torch.tensor([1, 1]))
    assert (as_probs.compute(), as_logits.compute()) == (0.5, 1.0)


@pytest.mark.parametrize(
    ("predicted", "targets"),
    [
        ([0, 0, 0], [0, 0, 0]),  # a single class, all correct
        ([1, 1, 1], [1, 1, 1]),
        ([1, 2, 0], [0, 1, 2]),  # all wrong
        ([3], [3]),  # one sample
        ([2, 2, 2, 2], [0, 1, 0, 1]),  # one class predicted, never a target
    ],
)
def test_degenerate_cases_match_sklearn(predicted: list[int], targets: list[int]) -> None:
    p, y = torch.tensor(predicted), torch.tensor(targets)
    for average in ("macro", "micro", "weighted"):
        for num_classes in (None, 5):
            f1 = F1Score(num_classes=num_classes, average=average)
            f1.update(p, y)
            expected = skm.f1_score(y.numpy(), p.numpy(), average=average, zero_division=0)
            assert f1.compute() == pytest.approx(expected, abs=1e-12)
    acc = MultiClassAccuracy()
    acc.update(p, y)
    assert acc.compute() == skm.accuracy_score(y.numpy(), p.numpy())


def test_empty_metrics_compute_zero() -> None:
    for metric in (MultiClassAccuracy(), BinaryPrecision(), F1Score(), F1Score(num_classes=3)):
        assert metric.compute() == 0.0
    assert ConfusionMatrix().compute().shape == (0, 0)
    assert ClassificationReport(num_classes=2).compute()["macro/f1"] == 0.0
