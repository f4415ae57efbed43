"""Batches in any split, merge, masks, state_dict, MeanLoss, the collection and bad input."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from legoml.metrics import (
    BinaryAccuracy,
    BinaryPrecision,
    BinaryRecall,
    ClassificationReport,
    ConfusionMatrix,
    F1Score,
    MeanLoss,
    Metric,
    MetricCollection,
    MetricInputError,
    MetricStateError,
    MultiClassAccuracy,
)
from legoml.metrics import functional as MF

FACTORIES: list[Callable[[], Metric]] = [
    MultiClassAccuracy,
    lambda: MultiClassAccuracy(top_k=3),
    lambda: F1Score(num_classes=6, average="macro"),
    lambda: F1Score(average="weighted"),  # classes inferred, state grows
    lambda: ConfusionMatrix(num_classes=6),
    lambda: ClassificationReport(),
]
BINARY: list[Callable[[], Metric]] = [BinaryAccuracy, BinaryPrecision, BinaryRecall]


def data(seed: int, n: int = 90, classes: int = 6) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, classes, generator=g), torch.randint(0, classes, (n,), generator=g)


def result(metric: Metric) -> object:
    value = metric.compute()
    return value.tolist() if isinstance(value, Tensor) else value


def cuts(n: int, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    inner = sorted(set(torch.randint(0, n + 1, (4,), generator=g).tolist()))
    return [0, *inner, n]


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("seed", range(6))
def test_any_batch_split_gives_identical_results(factory: Callable[[], Metric], seed: int) -> None:
    scores, targets = data(seed)
    whole = factory()
    whole.update(scores, targets)
    pieces = factory()
    bounds = cuts(len(targets), seed)
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        pieces.update(scores[lo:hi], targets[lo:hi])
    assert result(pieces) == result(whole)


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("seed", range(4))
def test_merge_equals_one_metric_over_all_data(factory: Callable[[], Metric], seed: int) -> None:
    scores, targets = data(seed)
    whole = factory()
    whole.update(scores, targets)
    # The second part only holds low classes: growable states must align when merging.
    low = targets[60:] % 3
    whole_low = factory()
    whole_low.update(torch.cat([scores[:60], scores[60:]]), torch.cat([targets[:60], low]))
    a, b = factory(), factory()
    a.update(scores[:60], targets[:60])
    b.update(scores[60:], low)
    assert a.merge(b) is a
    assert result(a) == result(whole_low)
    a2, b2 = factory(), factory()
    b2.update(scores, targets)
    assert result(a2.merge(b2)) == result(whole)  # merging into an empty metric


@pytest.mark.parametrize("factory", [*FACTORIES, *BINARY])
def test_mask_equals_dropping_the_samples(factory: Callable[[], Metric]) -> None:
    scores, targets = data(3)
    if factory in BINARY:
        scores, targets = scores[:, 0], targets % 2
    mask = torch.arange(len(targets)) % 4 != 0
    masked, dropped = factory(), factory()
    masked.update(scores, targets, mask)
    dropped.update(scores[mask], targets[mask])
    assert result(masked) == result(dropped)
    as_ints = factory()
    as_ints.update(scores, targets, mask.long())
    assert result(as_ints) == result(dropped)


@pytest.mark.parametrize("factory", [*FACTORIES, *BINARY, MeanLoss])
def test_state_dict_round_trip_is_weights_only_safe(factory: Callable[[], Metric]) -> None:
    scores, targets = data(1)
    metric = factory()
    if isinstance(metric, MeanLoss):
        metric.update(scores[:, 0].abs())
    elif factory in BINARY:
        metric.update(scores[:, 0], targets % 2)
    else:
        metric.update(scores, targets)
    buffer = io.BytesIO()
    torch.save(metric.state_dict(), buffer)
    buffer.seek(0)
    fresh = factory()
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert result(fresh) == result(metric)
    fresh.reset()
    assert result(fresh) == result(factory())


def test_load_state_dict_refuses_foreign_states() -> None:
    with pytest.raises(MetricStateError, match="lacks confmat"):
        F1Score(num_classes=3).load_state_dict({})
    with pytest.raises(MetricStateError, match="shaped like"):
        F1Score(num_classes=3).load_state_dict({"confmat": torch.zeros(4, 4, dtype=torch.int64)})
    grown = F1Score()  # inferred classes: any square size loads
    grown.load_state_dict({"confmat": torch.eye(4, dtype=torch.int64)})
    assert grown.compute() == 1.0


def test_merge_refuses_different_metrics() -> None:
    with pytest.raises(MetricStateError, match="cannot merge"):
        MultiClassAccuracy().merge(MultiClassAccuracy(top_k=2))
    with pytest.raises(MetricStateError, match="cannot merge"):
        F1Score(average="macro").merge(F1Score(average="micro"))
    with pytest.raises(MetricStateError, match="cannot merge"):
        BinaryPrecision().merge(BinaryRecall())  # type: ignore[arg-type]


def test_all_reduce_without_a_process_group_is_a_no_op() -> None:
    metric = MultiClassAccuracy()
    metric.update(torch.tensor([1, 0]), torch.tensor([1, 1]))
    metric.all_reduce()
    assert metric.compute() == 0.5


@settings(max_examples=40, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=60),
    split=st.integers(0, 60),
)
def test_f1_and_accuracy_from_labels_property(pairs: list[tuple[int, int]], split: int) -> None:
    from sklearn.metrics import accuracy_score, f1_score

    predicted = torch.tensor([p for p, _ in pairs])
    targets = torch.tensor([t for _, t in pairs])
    f1, acc = F1Score(average="macro"), MultiClassAccuracy()
    for metric in (f1, acc):
        metric.update(predicted[:split], targets[:split])
        metric.update(predicted[split:], targets[split:])
    expected = f1_score(targets.numpy(), predicted.numpy(), average="macro", zero_division=0)
    assert f1.compute() == pytest.approx(expected, abs=1e-12)
    assert acc.compute() == pytest.approx(accuracy_score(targets.numpy(), predicted.numpy()))


def test_mean_loss_weights_batch_means_and_takes_per_sample_losses() -> None:
    losses = torch.rand(50, dtype=torch.float64)
    per_sample, batch_means = MeanLoss(), MeanLoss()
    for lo in range(0, 50, 16):
        chunk = losses[lo : lo + 16]
        per_sample.update(chunk)
        batch_means.update(chunk.mean(), torch.zeros(len(chunk)))
    assert per_sample.compute() == pytest.approx(float(losses.mean()), abs=1e-12)
    assert batch_means.compute() == pytest.approx(float(losses.mean()), abs=1e-12)
    masked = MeanLoss()
    mask = torch.arange(50) % 3 == 0
    masked.update(losses, mask=mask)
    assert masked.compute() == pytest.approx(float(losses[mask].mean()), abs=1e-12)
    scalar_masked = MeanLoss()
    scalar_masked.update(torch.tensor(2.0), torch.zeros(4), mask=torch.tensor([1, 1, 0, 1]).bool())
    scalar_masked.update(torch.tensor(6.0))
    assert scalar_masked.compute() == pytest.approx((2.0 * 3 + 6.0) / 4)
    other = MeanLoss()
    other.update(torch.tensor([10.0]))
    assert per_sample.merge(other).compute() == pytest.approx(float((losses.sum() + 10) / 51))
    assert MeanLoss().compute() == 0.0
    with pytest.raises(MetricInputError, match="scalar batch mean or 1-d"):
        MeanLoss().update(torch.zeros(2, 2))


def test_mean_loss_detaches() -> None:
    weight = torch.ones(3, requires_grad=True)
    loss = MeanLoss()
    loss.update((weight * 2).mean(), torch.zeros(3))
    assert loss.compute() == 2.0 and not loss.state_dict()["total"].requires_grad


def test_collection_updates_computes_and_flattens() -> None:
    scores, targets = data(2, classes=3)
    collection = MetricCollection(
        {"acc": MultiClassAccuracy(), "report": ClassificationReport(num_classes=3)}, prefix="val/"
    )
    collection.update(scores, targets)
    values = collection.compute()
    single = MultiClassAccuracy()
    single.update(scores, targets)
    assert values["val/acc"] == single.compute() == values["val/report/accuracy"]
    assert (
        "val/report/f1/2" in values
        and len(collection) == 2
        and list(collection) == ["acc", "report"]
    )
    other = MetricCollection(
        {"acc": MultiClassAccuracy(), "report": ClassificationReport(num_classes=3)}, prefix="val/"
    )
    other.load_state_dict(collection.state_dict())
    assert other.compute() == values
    assert collection.merge(other)["acc"].compute() == single.compute()
    collection.reset()
    collection.all_reduce()
    assert collection.compute()["val/acc"] == 0.0
    with pytest.raises(MetricStateError, match="both named 'accuracy'"):
        MetricCollection([MultiClassAccuracy(), BinaryAccuracy()])
    with pytest.raises(MetricStateError, match="cannot merge"):
        collection.merge(MetricCollection([F1Score()]))
    assert "MultiClassAccuracy" in repr(collection)


def test_names_follow_the_metric() -> None:
    assert (
        MultiClassAccuracy().name == "accuracy"
        and MultiClassAccuracy(top_k=5).name == "top5_accuracy"
    )
    assert [m.name for m in (F1Score(), MeanLoss(), ConfusionMatrix(2), BinaryRecall())] == [
        "f1",
        "loss",
        "confusion_matrix",
        "recall",
    ]


def test_confusion_matrix_normalization() -> None:
    predicted, targets = torch.tensor([0, 1, 1, 1]), torch.tensor([0, 0, 1, 2])
    for normalize, expected in [
        ("true", [[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]),
        ("pred", [[1.0, 1 / 3, 0.0], [0.0, 1 / 3, 0.0], [0.0, 1 / 3, 0.0]]),
        ("all", [[0.25, 0.25, 0.0], [0.0, 0.25, 0.0], [0.0, 0.25, 0.0]]),
    ]:
        cm = ConfusionMatrix(num_classes=3, normalize=normalize)
        cm.update(predicted, targets)
        assert torch.allclose(cm.compute(), torch.tensor(expected, dtype=torch.float64))
    assert MF.confusion_matrix(predicted, targets).tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: MultiClassAccuracy().update(
                torch.zeros(3, 2), torch.zeros(4, dtype=torch.long)
            ),
            "N=4",
        ),
        (lambda: MultiClassAccuracy().update(torch.zeros(2, 2), torch.zeros(2, 1)), "1-d"),
        (
            lambda: F1Score(num_classes=3).update(torch.tensor([0, 1]), torch.tensor([0, 3])),
            "class index 3",
        ),
        (
            lambda: F1Score(num_classes=3).update(torch.tensor([0, 5]), torch.tensor([0, 1])),
            "class index 5",
        ),
        (lambda: F1Score().update(torch.tensor([0, 1]), torch.tensor([0, -1])), "negative"),
        (lambda: F1Score().update(torch.tensor([0, 1]), torch.tensor([0.5, 1.0])), "whole class"),
        (
            lambda: F1Score(num_classes=4).update(torch.zeros(2, 3), torch.tensor([0, 1])),
            "3 classes",
        ),
        (
            lambda: F1Score(num_classes=4).update(torch.rand(2), torch.tensor([0, 1])),
            "binary scores",
        ),
        (lambda: BinaryAccuracy().update(torch.rand(3), torch.tensor([0, 1, 2])), "class index 2"),
        (
            lambda: MultiClassAccuracy(top_k=4).update(torch.zeros(2, 3), torch.tensor([0, 1])),
            "exceeds",
        ),
        (
            lambda: MultiClassAccuracy(top_k=2).update(torch.tensor([0, 1]), torch.tensor([0, 1])),
            "N×C",
        ),
        (lambda: MultiClassAccuracy(top_k=0), "top_k"),
        (lambda: F1Score(average="samples"), "average"),  # type: ignore[arg-type]
        (lambda: F1Score(num_classes=3, average="binary"), "binary"),
        (lambda: F1Score(num_classes=0), "num_classes"),
        (lambda: ConfusionMatrix(2, normalize="rows"), "normalize"),
        (lambda: ClassificationReport(3, class_names=["a"]), "class_names"),
        (
            lambda: MultiClassAccuracy().update(torch.zeros(2, 2), torch.zeros(2), torch.ones(3)),
            "mask",
        ),
        (
            lambda: MultiClassAccuracy().update(
                torch.zeros(2, 2), torch.zeros(2), torch.full((2,), 0.5)
            ),
            "bool",
        ),
        (lambda: MultiClassAccuracy().update(torch.zeros(2, 2, 2), torch.zeros(2)), "N×C"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(call: Callable[[], object], match: str) -> None:
    with pytest.raises(MetricInputError, match=match):
        call()


def test_binary_average_with_more_classes_in_the_data() -> None:
    f1 = F1Score(average="binary")
    f1.update(torch.tensor([0, 2]), torch.tensor([0, 1]))
    with pytest.raises(MetricInputError, match="two classes"):
        f1.compute()


def test_metrics_follow_the_device_of_the_data() -> None:
    metric = F1Score(num_classes=3)
    metric.update(torch.zeros(2, 3), torch.tensor([0, 1]))
    assert metric.device.type == "cpu"
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    gpu = F1Score(num_classes=3)
    gpu.update(torch.randn(5, 3, device="cuda"), torch.randint(0, 3, (5,)))
    assert gpu.device.type == "cuda" and gpu.state_dict()["confmat"].device.type == "cpu"
