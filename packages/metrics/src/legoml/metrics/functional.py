"""The functional core: every metric is an ``_<name>_update`` / ``_<name>_compute`` pair.

``_<name>_update`` validates and formats one batch (see ``legoml.metrics._inputs``) and
returns its sufficient statistics (exact counts or float64 sums); ``_<name>_compute``
turns accumulated statistics into the value. The metric classes hold the statistics as
declared states and call the same pair; the one-shot functions here call update then
compute, so a class fed batch by batch and a function fed everything at once agree.

Counts are int64, scores float64, and a zero denominator gives 0. Confusion matrices have
true classes as rows, predictions as columns. Everything runs on the predictions' device.

Example:
    >>> import torch
    >>> from legoml.metrics import functional as MF
    >>> logits = torch.tensor([[2.0, 0.1], [0.3, 0.9], [0.8, 0.1]])
    >>> MF.confusion_matrix(logits, torch.tensor([0, 1, 1])).tolist()
    [[1, 0], [1, 1]]
    >>> round(float(MF.f1_score(logits, torch.tensor([0, 1, 1]))), 4)
    0.6667
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from legoml.metrics._inputs import (
    as_targets,
    check_mask,
    check_num_classes,
    check_positive_int,
    format_labels,
    infer_num_classes,
    top_k_hits,
)
from legoml.metrics._scores import (
    Average,
    Normalize,
    accuracy_from_confusion,
    average_scores,
    binary_counts,
    check_average,
    check_normalize,
    confusion_counts,
    normalize_confusion,
    per_class_scores,
    safe_divide,
)
from legoml.metrics.errors import MetricInputError

__all__ = [
    "Average",
    "Normalize",
    "accuracy",
    "accuracy_from_confusion",
    "average_scores",
    "binary_accuracy",
    "binary_counts",
    "binary_precision",
    "binary_recall",
    "check_average",
    "classification_report",
    "confusion_counts",
    "confusion_matrix",
    "f1_score",
    "mean_absolute_error",
    "mean_loss",
    "mean_squared_error",
    "per_class_scores",
    "safe_divide",
]

ErrorKind = Literal["squared", "absolute"]


def _count(values: Tensor) -> Tensor:
    """How many entries ``values`` has, as an int64 scalar on its device."""
    return torch.tensor(values.numel(), dtype=torch.int64, device=values.device)


# -- accuracy -------------------------------------------------------------------------------
def _accuracy_validate_args(top_k: int) -> None:
    check_positive_int("top_k", top_k)


def _accuracy_update(
    predictions: Tensor, targets: Tensor, top_k: int = 1, mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """int64 (correct, total) of one batch."""
    device = predictions.device if isinstance(predictions, Tensor) else None
    target = as_targets(targets, device=device)
    hits = top_k_hits(predictions, target, top_k)
    keep = check_mask(mask, target.shape[0], hits.device)
    if keep is not None:
        hits = hits[keep]
    return hits.sum(), _count(hits)


def _accuracy_compute(correct: Tensor, total: Tensor) -> Tensor:
    return safe_divide(correct, total)


def accuracy(
    predictions: Tensor, targets: Tensor, top_k: int = 1, mask: Tensor | None = None
) -> Tensor:
    """Share of samples whose target is among the ``top_k`` best-scored classes."""
    _accuracy_validate_args(top_k)
    return _accuracy_compute(*_accuracy_update(predictions, targets, top_k, mask))


# -- binary: [tp, fp, tn, fn] --------------------------------------------------------------
def _binary_stats_update(
    predictions: Tensor,
    targets: Tensor,
    threshold: float = 0.5,
    mask: Tensor | None = None,
    from_logits: bool | None = None,
) -> Tensor:
    """int64 ``[tp, fp, tn, fn]`` of one batch."""
    predicted, target = format_labels(predictions, targets, 2, mask, threshold, from_logits)
    return binary_counts(predicted, target)


def _binary_accuracy_compute(stats: Tensor) -> Tensor:
    tp, fp, tn, fn = stats
    return safe_divide(tp + tn, tp + fp + tn + fn)


def _binary_precision_compute(stats: Tensor) -> Tensor:
    """tp / (tp + fp)."""
    return safe_divide(stats[0], stats[0] + stats[1])


def _binary_recall_compute(stats: Tensor) -> Tensor:
    """tp / (tp + fn)."""
    return safe_divide(stats[0], stats[0] + stats[3])


def binary_accuracy(
    predictions: Tensor, targets: Tensor, threshold: float = 0.5,
    mask: Tensor | None = None, from_logits: bool | None = None,
) -> Tensor:  # fmt: skip
    """Accuracy of binary predictions (scores above ``threshold`` count as positive)."""
    stats = _binary_stats_update(predictions, targets, threshold, mask, from_logits)
    return _binary_accuracy_compute(stats)


def binary_precision(
    predictions: Tensor, targets: Tensor, threshold: float = 0.5,
    mask: Tensor | None = None, from_logits: bool | None = None,
) -> Tensor:  # fmt: skip
    """tp / (tp + fp); 0 when nothing was predicted positive (scikit-learn's
    ``zero_division=0``)."""
    stats = _binary_stats_update(predictions, targets, threshold, mask, from_logits)
    return _binary_precision_compute(stats)


def binary_recall(
    predictions: Tensor, targets: Tensor, threshold: float = 0.5,
    mask: Tensor | None = None, from_logits: bool | None = None,
) -> Tensor:  # fmt: skip
    """tp / (tp + fn); 0 when there is no positive target.

    Example:
        >>> import torch
        >>> binary_recall(torch.tensor([0.4, 0.2, 0.9]), torch.tensor([1, 1, 0]), threshold=0.3)
        tensor(0.5000, dtype=torch.float64)
    """
    stats = _binary_stats_update(predictions, targets, threshold, mask, from_logits)
    return _binary_recall_compute(stats)


# -- confusion matrix, F1 and the per-class report ----------------------------------------
def _confusion_matrix_update(
    predictions: Tensor,
    targets: Tensor,
    num_classes: int | None = None,
    mask: Tensor | None = None,
    threshold: float = 0.5,
    from_logits: bool | None = None,
) -> Tensor:
    """C×C int64 counts of one batch; C is inferred from the batch when ``num_classes`` is
    None (a class state then grows to the largest C seen)."""
    predicted, target = format_labels(
        predictions, targets, num_classes, mask, threshold, from_logits
    )
    size = num_classes or infer_num_classes(predictions, predicted, target)
    return confusion_counts(predicted, target, size)


def _confusion_matrix_compute(confmat: Tensor, normalize: str | None = None) -> Tensor:
    return normalize_confusion(confmat, normalize)


def confusion_matrix(
    predictions: Tensor,
    targets: Tensor,
    num_classes: int | None = None,
    mask: Tensor | None = None,
    threshold: float = 0.5,
    from_logits: bool | None = None,
    normalize: Normalize | None = None,
) -> Tensor:
    """C×C confusion matrix (int64 counts, or float64 shares with ``normalize``); C is
    inferred from the data when ``num_classes`` is None."""
    check_num_classes(num_classes)
    check_normalize(normalize)
    confmat = _confusion_matrix_update(
        predictions, targets, num_classes, mask, threshold, from_logits
    )
    return _confusion_matrix_compute(confmat, normalize)


def _f1_validate_args(num_classes: int | None, average: str) -> None:
    check_num_classes(num_classes)
    check_average(average)
    if average == "binary" and num_classes is not None and num_classes > 2:
        raise MetricInputError(f"average='binary' needs num_classes=2 (or None), got {num_classes}")


def _f1_compute(confmat: Tensor, average: Average) -> Tensor:
    """float64 F1, averaged as ``average`` says (see :func:`average_scores`)."""
    return average_scores(per_class_scores(confmat)[2], confmat, average)


def f1_score(
    predictions: Tensor,
    targets: Tensor,
    num_classes: int | None = None,
    average: Average = "macro",
    mask: Tensor | None = None,
    threshold: float = 0.5,
    from_logits: bool | None = None,
) -> Tensor:
    """F1 score (float64; per class for ``average="none"``)."""
    _f1_validate_args(num_classes, average)
    confmat = _confusion_matrix_update(
        predictions, targets, num_classes, mask, threshold, from_logits
    )
    return _f1_compute(confmat, average)


def _report_validate_args(num_classes: int | None, class_names: Sequence[str] | None) -> int | None:
    """``num_classes``, taken from ``class_names`` when only they are given."""
    check_num_classes(num_classes)
    if class_names is None:
        return num_classes
    if isinstance(class_names, str) or not all(isinstance(n, str) for n in class_names):
        raise MetricInputError("class_names must be a sequence of strings, one per class")
    if num_classes is not None and len(class_names) != num_classes:
        raise MetricInputError(f"{len(class_names)} class_names given for num_classes={num_classes}")
    return len(class_names)


def _class_names(class_names: Sequence[str] | None, count: int) -> list[str]:
    return list(class_names) if class_names is not None else [str(c) for c in range(count)]


def _report_compute(confmat: Tensor, class_names: Sequence[str] | None = None) -> dict[str, float]:
    """Flat float entries: ``<score>/<class>`` for precision, recall, f1 and support, then
    ``accuracy``, ``macro/<score>``, ``weighted/<score>`` and the total ``support``."""
    names = _class_names(class_names, confmat.shape[0])
    precision, recall, f1, support = per_class_scores(confmat)
    scores = {"precision": precision, "recall": recall, "f1": f1}
    result: dict[str, float] = {}
    for score, values in (*scores.items(), ("support", support)):
        for name, value in zip(names, values.tolist(), strict=True):
            result[f"{score}/{name}"] = float(value)
    result["accuracy"] = float(accuracy_from_confusion(confmat))
    for average in ("macro", "weighted"):
        for score, values in scores.items():
            result[f"{average}/{score}"] = float(average_scores(values, confmat, average))
    result["support"] = float(confmat.sum())
    return result


def classification_report(
    predictions: Tensor,
    targets: Tensor,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    mask: Tensor | None = None,
    threshold: float = 0.5,
    from_logits: bool | None = None,
) -> dict[str, float]:
    """Per-class precision, recall, F1 and support plus accuracy and macro/weighted
    averages, as the flat dict ``ClassificationReport.compute()`` gives."""
    num_classes = _report_validate_args(num_classes, class_names)
    confmat = _confusion_matrix_update(
        predictions, targets, num_classes, mask, threshold, from_logits
    )
    return _report_compute(confmat, class_names)


# -- regression and loss: float64 sums over int64 counts -----------------------------------
def _mean_error_update(
    predictions: Tensor, targets: Tensor, kind: ErrorKind, mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """float64 sum of the squared/absolute errors of one batch and its int64 element count.
    ``mask`` drops whole samples (the first dimension)."""
    if not (isinstance(predictions, Tensor) and isinstance(targets, Tensor)):
        raise MetricInputError(
            f"predictions and targets must be tensors, got {type(predictions).__name__} "
            f"and {type(targets).__name__}"
        )
    if predictions.shape != targets.shape:
        raise MetricInputError(
            f"mean {kind} error needs predictions and targets of one shape, got "
            f"{tuple(predictions.shape)} and {tuple(targets.shape)}"
        )
    difference = predictions.detach().double() - targets.detach().to(predictions.device).double()
    if difference.ndim > 0:
        keep = check_mask(mask, difference.shape[0], difference.device)
        if keep is not None:
            difference = difference[keep]
    errors = difference.square() if kind == "squared" else difference.abs()
    return errors.sum(), _count(errors)


def _mean_compute(total: Tensor, count: Tensor) -> Tensor:
    """float64 ``total / count`` (0 before any count)."""
    return safe_divide(total, count)


def mean_squared_error(
    predictions: Tensor, targets: Tensor, mask: Tensor | None = None
) -> Tensor:
    """Mean of ``(prediction - target) ** 2`` over every element."""
    return _mean_compute(*_mean_error_update(predictions, targets, "squared", mask))


def mean_absolute_error(
    predictions: Tensor, targets: Tensor, mask: Tensor | None = None
) -> Tensor:
    """Mean of ``|prediction - target|`` over every element."""
    return _mean_compute(*_mean_error_update(predictions, targets, "absolute", mask))


def _mean_loss_update(
    loss: Tensor | float, targets: Tensor | None = None, mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """float64 loss sum and int64 sample count of one batch.

    A scalar ``loss`` is a batch mean standing for ``mask.sum()`` samples when a mask is
    given, else ``len(targets)``, else 1; a 1-d ``loss`` holds per-sample losses (masked-out
    ones dropped, which is exact).
    """
    if not isinstance(loss, Tensor):
        loss = torch.tensor(float(loss))
    loss = loss.detach()
    if loss.ndim == 0:
        weight = _batch_weight(targets, mask)
        return loss.double() * weight, torch.tensor(weight, device=loss.device)
    if loss.ndim != 1:
        raise MetricInputError(
            f"loss must be a scalar batch mean or 1-d per-sample losses, got {tuple(loss.shape)}"
        )
    keep = check_mask(mask, loss.shape[0], loss.device)
    if keep is not None:
        loss = loss[keep]
    return loss.double().sum(), _count(loss)


def _batch_weight(targets: Tensor | None, mask: Tensor | None) -> int:
    """How many samples a batch-mean loss stands for."""
    size = None
    if isinstance(targets, Tensor):
        size = int(targets.shape[0]) if targets.ndim else 1
    elif targets is not None:
        size = len(targets)
    if mask is not None:
        if size is None:
            size = int(mask.shape[0]) if isinstance(mask, Tensor) and mask.ndim == 1 else -1
        keep = check_mask(mask, size)
        return 0 if keep is None else int(keep.sum())
    return 1 if size is None else size


def mean_loss(
    loss: Tensor | float, targets: Tensor | None = None, mask: Tensor | None = None
) -> Tensor:
    """Sample-weighted mean loss (see ``MeanLoss``): per-sample losses, or one batch mean."""
    return _mean_compute(*_mean_loss_update(loss, targets, mask))
