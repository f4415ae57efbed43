"""Every metric class, fed in random batches, agrees with its one-shot function fed all at
once: the same ``_<name>_update`` / ``_<name>_compute`` pair serves both, over masks, score
and target dtypes, and every device at hand (targets and masks left on the CPU)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import Tensor

from legoml.metrics import (
    BinaryAccuracy,
    BinaryPrecision,
    BinaryRecall,
    ClassificationReport,
    ConfusionMatrix,
    F1Score,
    MeanAbsoluteError,
    MeanLoss,
    MeanSquaredError,
    Metric,
    MetricInputError,
    MultiClassAccuracy,
)
from legoml.metrics import functional as MF

DEVICES = ["cpu"]
if torch.cuda.is_available():
    DEVICES.append("cuda")
if torch.backends.mps.is_available():
    DEVICES.append("mps")

SCORE_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
LABEL_DTYPES = [torch.int64, torch.int32, torch.uint8]
TARGET_DTYPES = [torch.int64, torch.int32, torch.uint8, torch.float32]

OneShot = Callable[[Tensor, Tensor, Tensor | None], Any]


@dataclass(frozen=True)
class Case:
    """A metric class and its one-shot function; ``kind`` says which inputs they take."""

    id: str
    make: Callable[[int], Metric]
    one_shot: Callable[[int], OneShot]
    kind: str  # "scores" (N×C), "labels" (N ints), "binary" (N scores), "regression"


def _fn(f: Callable[..., Any], **kwargs: Any) -> Callable[[int], OneShot]:
    return lambda classes: lambda p, t, m: f(p, t, mask=m, **kwargs)


def _with_classes(f: Callable[..., Any], **kwargs: Any) -> Callable[[int], OneShot]:
    return lambda classes: lambda p, t, m: f(p, t, classes, mask=m, **kwargs)


CASES = [
    Case("accuracy", lambda c: MultiClassAccuracy(), _fn(MF.accuracy), "scores"),
    Case("accuracy-labels", lambda c: MultiClassAccuracy(), _fn(MF.accuracy), "labels"),
    Case("top2", lambda c: MultiClassAccuracy(top_k=2), _fn(MF.accuracy, top_k=2), "scores"),
    *(
        Case(
            f"f1-{average}-{'given' if given else 'inferred'}",
            (lambda a, g: lambda c: F1Score(c if g else None, average=a))(average, given),
            (lambda a, g: lambda c: lambda p, t, m: MF.f1_score(p, t, c if g else None, a, m))(
                average, given
            ),
            kind,
        )
        for average in ("macro", "micro", "weighted", "none")
        for given in (True, False)
        for kind in ("scores", "labels")
    ),
    Case("f1-binary", lambda c: F1Score(average="binary"), _fn(MF.f1_score, average="binary"), "binary"),
    Case("confmat", lambda c: ConfusionMatrix(c), _with_classes(MF.confusion_matrix), "scores"),
    Case("confmat-inferred", lambda c: ConfusionMatrix(), _fn(MF.confusion_matrix), "labels"),
    Case("confmat-binary", lambda c: ConfusionMatrix(), _fn(MF.confusion_matrix), "binary"),
    *(
        Case(
            f"confmat-{normalize}",
            (lambda n: lambda c: ConfusionMatrix(c, normalize=n))(normalize),
            _with_classes(MF.confusion_matrix, normalize=normalize),
            "scores",
        )
        for normalize in ("true", "pred", "all")
    ),
    Case("report", lambda c: ClassificationReport(c), _with_classes(MF.classification_report), "scores"),
    Case("report-inferred", lambda c: ClassificationReport(), _fn(MF.classification_report), "labels"),
    *(
        Case(f"{cls.__name__}-{threshold}", (lambda k, th: lambda c: k(threshold=th))(cls, threshold),
             _fn(fn, threshold=threshold), "binary")  # fmt: skip
        for cls, fn in (
            (BinaryAccuracy, MF.binary_accuracy),
            (BinaryPrecision, MF.binary_precision),
            (BinaryRecall, MF.binary_recall),
        )
        for threshold in (0.3, 0.5)
    ),
    Case("mse", lambda c: MeanSquaredError(), _fn(MF.mean_squared_error), "regression"),
    Case("mae", lambda c: MeanAbsoluteError(), _fn(MF.mean_absolute_error), "regression"),
]


def _cuts(n: int, g: torch.Generator) -> list[int]:
    inner = sorted(set(torch.randint(0, n + 1, (4,), generator=g).tolist()))
    return [0, *inner, n]


def _inputs(case: Case, seed: int, variant: int) -> tuple[Tensor, Tensor, Tensor | None, int]:
    """Predictions, targets and mask (all on the CPU) and the number of classes."""
    g = torch.Generator().manual_seed(seed)
    classes = int(torch.randint(2, 7, (1,), generator=g))
    n = int(torch.randint(1, 80, (1,), generator=g))
    mask = torch.rand(n, generator=g) > 0.3 if seed % 3 else None
    if case.kind == "regression":
        shape = (n, 3) if seed % 2 else (n,)
        preds = torch.randn(shape, generator=g).to(SCORE_DTYPES[variant % 4])
        targets = torch.randn(shape, generator=g, dtype=torch.float64)
        return preds, targets.to((torch.float32, torch.float64)[variant % 2]), mask, classes
    if case.kind == "binary":
        classes = 2
        targets = torch.randint(0, 2, (n,), generator=g)
        scores = torch.randn(n, generator=g) * 3
        if variant % 2:
            scores = scores.sigmoid()  # probabilities rather than logits
        preds = scores.to(SCORE_DTYPES[variant % 4])
    else:
        targets = torch.randint(0, classes, (n,), generator=g)
        scores = torch.randn(n, classes, generator=g)
        if case.kind == "labels":
            preds = scores.argmax(1).to(LABEL_DTYPES[variant % 3])
        else:
            preds = scores.to(SCORE_DTYPES[variant % 4])
    return preds, targets.to(TARGET_DTYPES[variant % 4]), mask, classes


def _plain(value: Any) -> Any:
    """Compare floats, tensors (by value and dtype, on the CPU) and dicts of them alike."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, Tensor):
        if value.ndim == 0:
            return float(value)
        return (str(value.dtype), value.cpu().tolist())
    return float(value)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_class_and_one_shot_function_agree(case: Case, seed: int, device: str) -> None:
    for variant in range(4):
        preds, targets, mask, classes = _inputs(case, seed, variant)
        preds = preds.to(device)  # targets and mask stay on the CPU
        metric = case.make(classes)
        g = torch.Generator().manual_seed(seed + 100)
        bounds = _cuts(len(targets), g)
        for lo, hi in zip(bounds, bounds[1:], strict=False):
            part = None if mask is None else mask[lo:hi]
            metric.update(preds[lo:hi], targets[lo:hi], part)
        expected = case.one_shot(classes)(preds, targets, mask)
        got = metric.compute()
        if case.kind == "regression":  # float64 sums in another order
            assert got == pytest.approx(float(expected), rel=1e-12, abs=1e-12), variant
        else:
            assert _plain(got) == _plain(expected), (variant, preds.dtype, targets.dtype)
        if isinstance(expected, Tensor):
            assert expected.device.type == device  # computed where the predictions live
        assert metric.device.type == device


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", range(4))
def test_mean_loss_and_its_function_agree(seed: int, device: str) -> None:
    g = torch.Generator().manual_seed(seed)
    losses = torch.rand(int(torch.randint(1, 60, (1,), generator=g)), generator=g).to(device)
    mask = torch.rand(len(losses), generator=g) > 0.4
    targets = torch.zeros(len(losses), dtype=torch.long)
    per_sample, batch_means = MeanLoss(), MeanLoss()
    bounds = _cuts(len(losses), g)
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        per_sample.update(losses[lo:hi], mask=mask[lo:hi])
        if hi > lo:
            batch_means.update(losses[lo:hi].mean(), targets[lo:hi])
    assert per_sample.compute() == pytest.approx(float(MF.mean_loss(losses, mask=mask)), abs=1e-12)
    assert float(MF.mean_loss(losses, mask=mask)) == pytest.approx(
        float(losses[mask.to(device)].double().mean()) if mask.any() else 0.0, abs=1e-12
    )
    whole = MF.mean_loss(losses.mean(), targets)
    assert batch_means.compute() == pytest.approx(float(losses.double().mean()), abs=1e-6)
    assert float(whole) == pytest.approx(float(losses.mean()), abs=1e-6)
    assert per_sample.device.type == device and whole.device.type == device


@pytest.mark.skipif(len(DEVICES) == 1, reason="needs an accelerator besides the CPU")
def test_one_shot_functions_move_targets_and_masks_to_the_predictions_device() -> None:
    """The bug: the classes moved targets to the predictions' device, the functions did not
    (and failed on GPU predictions with CPU targets)."""
    device = DEVICES[1]
    scores = torch.tensor([[0.2, 0.8], [0.9, 0.1], [0.3, 0.7]], device=device)
    targets, mask = torch.tensor([1, 1, 0]), torch.tensor([True, True, False])
    assert float(MF.accuracy(scores, targets, mask=mask)) == 0.5
    assert MF.confusion_matrix(scores, targets, mask=mask).tolist() == [[0, 0], [1, 1]]
    assert float(MF.f1_score(scores, targets, mask=mask)) == pytest.approx(1 / 3)
    assert float(MF.binary_recall(scores[:, 1], targets, mask=mask)) == 0.5
    assert float(MF.mean_squared_error(scores, torch.zeros(3, 2), mask=mask)) == pytest.approx(0.375)


def test_binary_n_by_1_scores_infer_two_classes_in_both() -> None:
    """The bug: ``confusion_matrix`` gave N×1 binary scores a 1×1 matrix when only class 0
    occurred; ``ConfusionMatrix`` (rightly) gave 2×2, as for N binary scores."""
    scores, targets = torch.tensor([[0.1], [0.3]]), torch.tensor([0, 0])
    metric = ConfusionMatrix()
    metric.update(scores, targets)
    assert MF.confusion_matrix(scores, targets).tolist() == metric.compute().tolist() == [
        [2, 0],
        [0, 0],
    ]
    assert MF.confusion_matrix(scores[:, 0], targets).tolist() == [[2, 0], [0, 0]]


def test_empty_label_batches_give_an_empty_matrix_in_both() -> None:
    """The function used to claim one class (``[[0]]``) for no samples; the class, none."""
    empty = torch.zeros(0, dtype=torch.long)
    metric = ConfusionMatrix()
    metric.update(empty, empty)
    assert MF.confusion_matrix(empty, empty).shape == metric.compute().shape == (0, 0)
    assert float(MF.f1_score(empty, empty)) == 0.0


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: MF.accuracy(torch.zeros(2, 3), torch.tensor([0, 1]), top_k=0), "top_k"),
        (lambda: MultiClassAccuracy(top_k=True), "top_k"),  # bools are not counts
        (lambda: MF.confusion_matrix(torch.tensor([0]), torch.tensor([0]), num_classes=0), "num_classes"),
        (lambda: F1Score(num_classes=True), "num_classes"),
        (lambda: MF.f1_score(torch.tensor([0]), torch.tensor([0]), 3, "binary"), "binary"),
        (lambda: MF.confusion_matrix(torch.tensor([0]), torch.tensor([0]), normalize="rows"), "normalize"),  # type: ignore[arg-type]
        (lambda: MF.classification_report(torch.tensor([0]), torch.tensor([0]), 2, ["a"]), "class_names"),
        (lambda: ClassificationReport(class_names="ab"), "class_names"),
        (lambda: MF.accuracy([0, 1], torch.tensor([0, 1])), "predictions must be a tensor"),  # type: ignore[arg-type]
        (lambda: MF.accuracy(torch.tensor([0, 1]), torch.tensor([0, 1]), mask=[True, False]), "mask"),  # type: ignore[arg-type]
        (lambda: MF.mean_squared_error(torch.zeros(2), [0.0, 0.0]), "must be tensors"),  # type: ignore[arg-type]
        (lambda: MF.mean_loss(torch.tensor(1.0), torch.zeros(3), mask=torch.ones(2, dtype=torch.bool)), r"mask must have shape \(3,\)"),
    ],
)  # fmt: skip
def test_one_shot_functions_refuse_what_the_classes_refuse(
    call: Callable[[], object], match: str
) -> None:
    """The functions validate their arguments like the classes' constructors do (``accuracy``
    used to return 0 for ``top_k=0`` instead of refusing it)."""
    with pytest.raises(MetricInputError, match=match):
        call()
