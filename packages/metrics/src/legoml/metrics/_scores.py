"""Counts -> scores: the exact arithmetic every metric's compute step shares.

Counts are int64 (exact, summable across batches and ranks); scores are float64 and a zero
denominator gives 0. Confusion matrices have true classes as rows, predictions as columns.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

from legoml.metrics.errors import MetricInputError

__all__ = [
    "Average",
    "Normalize",
    "accuracy_from_confusion",
    "average_scores",
    "binary_counts",
    "check_average",
    "check_normalize",
    "confusion_counts",
    "normalize_confusion",
    "per_class_scores",
    "safe_divide",
]

Average = Literal["binary", "micro", "macro", "weighted", "none"]
Normalize = Literal["true", "pred", "all"]


def safe_divide(numerator: Tensor, denominator: Tensor) -> Tensor:
    """float64 ``numerator / denominator`` with 0 wherever the denominator is 0."""
    num, den = numerator.double(), denominator.double()
    return torch.where(den == 0, torch.zeros_like(num), num / torch.where(den == 0, 1.0, den))


def check_average(average: str) -> None:
    if average not in get_args(Average):
        raise MetricInputError(f"average={average!r} is not one of {', '.join(get_args(Average))}")


def check_normalize(normalize: str | None) -> None:
    if normalize is not None and normalize not in get_args(Normalize):
        raise MetricInputError(
            f"normalize={normalize!r} is not one of None, 'true', 'pred', 'all'"
        )


def confusion_counts(predicted: Tensor, targets: Tensor, num_classes: int) -> Tensor:
    """C×C int64 counts from 1-d label tensors (rows: targets, columns: predictions)."""
    flat = targets * num_classes + predicted
    counts = torch.bincount(flat, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def binary_counts(predicted: Tensor, targets: Tensor) -> Tensor:
    """int64 ``[tp, fp, tn, fn]`` from 0/1 label tensors."""
    return torch.bincount(targets * 2 + predicted, minlength=4)[[3, 1, 0, 2]]


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


def normalize_confusion(confusion: Tensor, normalize: str | None) -> Tensor:
    """int64 counts as they are (None), or float64 shares of each row ("true"), column
    ("pred") or of the whole ("all")."""
    check_normalize(normalize)
    if normalize == "true":
        return safe_divide(confusion, confusion.sum(dim=1, keepdim=True).expand_as(confusion))
    if normalize == "pred":
        return safe_divide(confusion, confusion.sum(dim=0, keepdim=True).expand_as(confusion))
    if normalize == "all":
        return safe_divide(confusion, confusion.sum().expand_as(confusion))
    return confusion.clone()
