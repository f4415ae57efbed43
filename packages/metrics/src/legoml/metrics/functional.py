"""Pure functions behind every metric: inputs -> integer counts -> scores.

Counts are int64 (exact, summable across batches and ranks); scores are float64 and a zero
denominator gives 0. Confusion matrices have true classes as rows, predictions as columns.

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

from typing import Literal, get_args

import torch
from torch import Tensor

from legoml.metrics._inputs import as_targets, check_mask, class_labels, top_k_hits
from legoml.metrics.errors import MetricInputError

__all__ = [
    "Average",
    "accuracy",
    "accuracy_from_confusion",
    "average_scores",
    "binary_accuracy",
    "binary_counts",
    "binary_precision",
    "binary_recall",
    "check_average",
    "confusion_counts",
    "confusion_matrix",
    "f1_score",
    "per_class_scores",
    "safe_divide",
]

Average = Literal["binary", "micro", "macro", "weighted", "none"]


def safe_divide(numerator: Tensor, denominator: Tensor) -> Tensor:
    """float64 ``numerator / denominator`` with 0 wherever the denominator is 0."""
    num, den = numerator.double(), denominator.double()
    return torch.where(den == 0, torch.zeros_like(num), num / torch.where(den == 0, 1.0, den))


def check_average(average: str) -> None:
    if average not in get_args(Average):
        raise MetricInputError(f"average={average!r} is not one of {', '.join(get_args(Average))}")


# -- counts ------------------------------------------------------------------------------
def confusion_counts(predicted: Tensor, targets: Tensor, num_classes: int) -> Tensor:
    """C×C int64 counts from 1-d label tensors (rows: targets, columns: predictions)."""
    flat = targets * num_classes + predicted
    counts = torch.bincount(flat, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def binary_counts(predicted: Tensor, targets: Tensor) -> Tensor:
    """int64 ``[tp, fp, tn, fn]`` from 0/1 label tensors."""
    return torch.bincount(targets * 2 + predicted, minlength=4)[[3, 1, 0, 2]]


# -- scores from counts -------------------------------------------------------------------
def per_class_scores(confusion: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-class (precision, recall, F1, support) from a confusion matrix."""
    tp = confusion.diagonal()
    predicted = confusion.sum(dim=0)
    support = confusion.sum(dim=1)
    precision = safe_divide(tp, predicted)
    recall = safe_divide(tp, support)
    f1 = safe_divide(2 * tp, predicted + support)
    return precision, recall, f1, support


def average_scores(scores: Tensor, confusion: Tensor, average: Average) -> Tensor:
    """Average per-class ``scores`` like scikit-learn does (without a ``labels`` argument).

    macro: mean over the classes present in targets or predictions; weighted: by support;
    micro: from the pooled counts (for single-label data, accuracy); binary: class 1.
    """
    check_average(average)
    if average == "none":
        return scores
    if average == "micro":
        return accuracy_from_confusion(confusion)
    if average == "binary":
        if confusion.shape[0] > 2:
            raise MetricInputError(
                f"average='binary' needs two classes, the data has {confusion.shape[0]}; "
                "use micro, macro or weighted"
            )
        return scores[1] if scores.shape[0] == 2 else scores.new_zeros(())
    support = confusion.sum(dim=1)
    if average == "weighted":
        return safe_divide((scores * support).sum(), support.sum())
    present = (support + confusion.sum(dim=0)) > 0
    return safe_divide(scores[present].sum(), present.sum())


def accuracy_from_confusion(confusion: Tensor) -> Tensor:
    return safe_divide(confusion.diagonal().sum(), confusion.sum())


# -- one-shot functions -------------------------------------------------------------------
def _labels(
    predictions: Tensor,
    targets: Tensor,
    num_classes: int | None,
    mask: Tensor | None,
    threshold: float,
    from_logits: bool | None,
) -> tuple[Tensor, Tensor]:
    target = as_targets(targets, num_classes)
    predicted = class_labels(predictions, target.shape[0], num_classes, threshold, from_logits)
    keep = check_mask(mask, target.shape[0])
    if keep is not None:
        predicted, target = predicted[keep], target[keep]
    return predicted, target


def confusion_matrix(
    predictions: Tensor,
    targets: Tensor,
    num_classes: int | None = None,
    mask: Tensor | None = None,
    threshold: float = 0.5,
    from_logits: bool | None = None,
) -> Tensor:
    """C×C int64 confusion matrix; C is inferred from the data when ``num_classes`` is None."""
    predicted, target = _labels(predictions, targets, num_classes, mask, threshold, from_logits)
    if num_classes is None:
        num_classes = _infer_classes(predictions, predicted, target)
    return confusion_counts(predicted, target, num_classes)


def _infer_classes(predictions: Tensor, predicted: Tensor, target: Tensor) -> int:
    seen = 2 if predictions.ndim == 1 and predictions.is_floating_point() else 1
    if predictions.ndim == 2 and predictions.shape[1] > 1:
        seen = predictions.shape[1]
    for labels in (predicted, target):
        if labels.numel():
            seen = max(seen, int(labels.max()) + 1)
    return seen


def f1_score(
    predictions: Tensor,
    targets: Tensor,
    num_classes: int | None = None,
    average: Average = "macro",
    mask: Tensor | None = None,
    threshold: float = 0.5,
    from_logits: bool | None = None,
) -> Tensor:
    """F1 score (float64), averaged as ``average`` says (see :func:`average_scores`)."""
    check_average(average)
    confusion = confusion_matrix(predictions, targets, num_classes, mask, threshold, from_logits)
    return average_scores(per_class_scores(confusion)[2], confusion, average)


def accuracy(
    predictions: Tensor, targets: Tensor, top_k: int = 1, mask: Tensor | None = None
) -> Tensor:
    """Share of samples whose target is among the ``top_k`` best-scored classes."""
    target = as_targets(targets)
    hits = top_k_hits(predictions, target, top_k)
    keep = check_mask(mask, target.shape[0])
    if keep is not None:
        hits = hits[keep]
    return safe_divide(hits.sum(), torch.tensor(hits.numel(), device=hits.device))


def _binary(
    predictions: Tensor,
    targets: Tensor,
    mask: Tensor | None,
    threshold: float,
    from_logits: bool | None,
) -> Tensor:
    predicted, target = _labels(predictions, targets, 2, mask, threshold, from_logits)
    return binary_counts(predicted, target)


def binary_accuracy(
    predictions: Tensor,
    targets: Tensor,
    threshold: float = 0.5,
    mask: Tensor | None = None,
    from_logits: bool | None = None,
) -> Tensor:
    tp, fp, tn, fn = _binary(predictions, targets, mask, threshold, from_logits)
    return safe_divide(tp + tn, tp + fp + tn + fn)


def binary_precision(
    predictions: Tensor,
    targets: Tensor,
    threshold: float = 0.5,
    mask: Tensor | None = None,
    from_logits: bool | None = None,
) -> Tensor:
    tp, fp, _, _ = _binary(predictions, targets, mask, threshold, from_logits)
    return safe_divide(tp, tp + fp)


def binary_recall(
    predictions: Tensor,
    targets: Tensor,
    threshold: float = 0.5,
    mask: Tensor | None = None,
    from_logits: bool | None = None,
) -> Tensor:
    tp, _, _, fn = _binary(predictions, targets, mask, threshold, from_logits)
    return safe_divide(tp, tp + fn)
