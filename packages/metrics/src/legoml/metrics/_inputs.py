"""Turn what a model emits (scores, logits, probabilities or labels) into class labels.

Rules, shared by every metric:
- N×C scores with C >= 2 (logits or probabilities): the label is the argmax.
- N or N×1 float scores: binary; probabilities when every value lies in [0, 1], else logits
  (``from_logits`` forces either); the label is ``probability > threshold``.
- N integer or bool predictions: labels as they are.
Targets are N class indices (integers, bools, or floats holding whole numbers).
"""

from __future__ import annotations

import torch
from torch import Tensor

from legoml.metrics.errors import MetricInputError

__all__ = ["as_targets", "binary_probabilities", "check_mask", "class_labels", "top_k_hits"]


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def as_targets(targets: Tensor, num_classes: int | None = None) -> Tensor:
    """Targets as a 1-d int64 tensor of class indices in ``[0, num_classes)``."""
    if not isinstance(targets, Tensor) or targets.ndim != 1:
        shape = _shape(targets) if isinstance(targets, Tensor) else type(targets).__name__
        raise MetricInputError(f"targets must be a 1-d tensor of N class indices, got {shape}")
    if targets.is_floating_point():
        if not bool(torch.equal(targets, targets.round())):
            raise MetricInputError("float targets must hold whole class indices (0., 1., ...)")
    labels = targets.long()
    _check_range(labels, num_classes, "targets")
    return labels


def _check_range(labels: Tensor, num_classes: int | None, what: str) -> None:
    if labels.numel() == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0:
        raise MetricInputError(f"{what} hold the negative class index {low}")
    if num_classes is not None and high >= num_classes:
        raise MetricInputError(
            f"{what} hold class index {high} but num_classes={num_classes}; "
            "raise num_classes or fix the labels"
        )


def check_mask(mask: Tensor | None, size: int) -> Tensor | None:
    """A 1-d bool mask of ``size`` entries (True = count this sample), or None."""
    if mask is None:
        return None
    if mask.ndim != 1 or mask.shape[0] != size:
        raise MetricInputError(
            f"mask must have shape ({size},) like the targets, got {_shape(mask)}"
        )
    if mask.dtype != torch.bool:
        if mask.is_floating_point() or not bool(((mask == 0) | (mask == 1)).all()):
            raise MetricInputError(f"mask must be bool (True = count the sample), got {mask.dtype}")
        mask = mask.bool()
    return mask


def binary_probabilities(scores: Tensor, from_logits: bool | None) -> Tensor:
    """Probabilities of the positive class from N float scores."""
    scores = scores.double()
    if from_logits is None:
        from_logits = bool(((scores < 0) | (scores > 1)).any())
    return torch.sigmoid(scores) if from_logits else scores


def class_labels(
    predictions: Tensor,
    size: int,
    num_classes: int | None = None,
    threshold: float = 0.5,
    from_logits: bool | None = None,
) -> Tensor:
    """1-d int64 predicted labels for ``size`` samples, following the module's rules."""
    if predictions.ndim == 2 and predictions.shape[1] == 1:
        predictions = predictions[:, 0]
    if predictions.shape[:1] != (size,):
        raise MetricInputError(
            f"predictions must have N={size} rows like the targets, got shape {_shape(predictions)}"
        )
    if predictions.ndim == 2:
        classes = predictions.shape[1]
        if num_classes is not None and classes != num_classes:
            raise MetricInputError(
                f"predictions hold scores for {classes} classes but num_classes={num_classes}"
            )
        return predictions.argmax(dim=1)
    if predictions.ndim != 1:
        raise MetricInputError(
            f"predictions must be N labels, N binary scores or N×C scores, got {_shape(predictions)}"
        )
    if predictions.is_floating_point():
        if num_classes is not None and num_classes > 2:
            raise MetricInputError(
                f"1-d float predictions are binary scores, but num_classes={num_classes}: "
                "pass N×C scores or integer labels"
            )
        return (binary_probabilities(predictions, from_logits) > threshold).long()
    labels = predictions.long()
    _check_range(labels, num_classes, "predictions")
    return labels


def top_k_hits(predictions: Tensor, targets: Tensor, top_k: int) -> Tensor:
    """Bool N: whether each target is among the ``top_k`` highest-scored classes."""
    if top_k == 1:
        return class_labels(predictions, targets.shape[0]) == targets
    if predictions.ndim != 2 or predictions.shape[0] != targets.shape[0]:
        raise MetricInputError(
            f"top_k={top_k} needs N×C scores with N={targets.shape[0]}, got {_shape(predictions)}"
        )
    classes = predictions.shape[1]
    if top_k > classes:
        raise MetricInputError(f"top_k={top_k} exceeds the {classes} classes scored")
    _check_range(targets, classes, "targets")
    best = predictions.topk(top_k, dim=1).indices
    return (best == targets[:, None]).any(dim=1)
