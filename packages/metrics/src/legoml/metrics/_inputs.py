"""The one input-formatting path: predictions (scores, logits, probabilities or labels),
targets and masks become 1-d int64 labels on the predictions' device.

Rules, shared by every metric and every one-shot function:
- N×C scores with C >= 2 (logits or probabilities): the label is the argmax.
- N or N×1 float scores: binary; probabilities when every value lies in [0, 1], else logits
  (``from_logits`` forces either); the label is ``probability > threshold``.
- N integer or bool predictions: labels as they are.
Targets are N class indices (integers, bools, or floats holding whole numbers). Targets and
masks move to the predictions' device, so a model's output on an accelerator can be
measured against targets still on the CPU.
"""

from __future__ import annotations

import torch
from torch import Tensor

from legoml.metrics.errors import MetricInputError

__all__ = [
    "as_targets",
    "binary_probabilities",
    "check_mask",
    "check_num_classes",
    "check_positive_int",
    "class_labels",
    "format_labels",
    "infer_num_classes",
    "top_k_hits",
]


def _shape(t: object) -> object:
    return tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__


def check_positive_int(name: str, value: object, hint: str = "") -> int:
    """``value`` as an int >= 1 (bools refused), else one error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MetricInputError(f"{name} must be an int >= 1{hint}, got {value!r}")
    return value


def check_num_classes(num_classes: int | None) -> int | None:
    """``num_classes`` as given: None (infer from the data) or an int >= 1."""
    if num_classes is None:
        return None
    return check_positive_int("num_classes", num_classes, " (or None to infer)")


def as_targets(
    targets: Tensor, num_classes: int | None = None, device: torch.device | None = None
) -> Tensor:
    """Targets as a 1-d int64 tensor of class indices in ``[0, num_classes)`` on ``device``."""
    if not isinstance(targets, Tensor) or targets.ndim != 1:
        raise MetricInputError(
            f"targets must be a 1-d tensor of N class indices, got {_shape(targets)}"
        )
    if targets.is_floating_point():
        if not bool(torch.equal(targets, targets.round())):
            raise MetricInputError("float targets must hold whole class indices (0., 1., ...)")
    labels = targets.long()
    _check_range(labels, num_classes, "targets")
    return labels if device is None else labels.to(device)


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


def check_mask(
    mask: Tensor | None, size: int, device: torch.device | None = None
) -> Tensor | None:
    """A 1-d bool mask of ``size`` entries (True = count this sample) on ``device``, or None."""
    if mask is None:
        return None
    if not isinstance(mask, Tensor) or mask.ndim != 1 or mask.shape[0] != size:
        raise MetricInputError(f"mask must have shape ({size},) like the targets, got {_shape(mask)}")
    if mask.dtype != torch.bool:
        if mask.is_floating_point() or not bool(((mask == 0) | (mask == 1)).all()):
            raise MetricInputError(f"mask must be bool (True = count the sample), got {mask.dtype}")
        mask = mask.bool()
    return mask if device is None else mask.to(device)


def binary_probabilities(scores: Tensor, from_logits: bool | None) -> Tensor:
    """Probabilities of the positive class from N float scores."""
    scores = scores.double()
    if from_logits is None:
        from_logits = bool(((scores < 0) | (scores > 1)).any())
    return torch.sigmoid(scores) if from_logits else scores


def _require_tensor(predictions: object) -> None:
    if not isinstance(predictions, Tensor):
        raise MetricInputError(
            f"predictions must be a tensor of labels or scores, got {type(predictions).__name__}"
        )


def class_labels(
    predictions: Tensor,
    size: int,
    num_classes: int | None = None,
    threshold: float = 0.5,
    from_logits: bool | None = None,
) -> Tensor:
    """1-d int64 predicted labels for ``size`` samples, following the module's rules."""
    _require_tensor(predictions)
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


def format_labels(
    predictions: Tensor, targets: Tensor, num_classes: int | None = None,
    mask: Tensor | None = None, threshold: float = 0.5, from_logits: bool | None = None,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """(predicted, target) 1-d int64 labels on the predictions' device, masked samples dropped."""
    device = predictions.device if isinstance(predictions, Tensor) else None
    target = as_targets(targets, num_classes, device)
    predicted = class_labels(predictions, target.shape[0], num_classes, threshold, from_logits)
    keep = check_mask(mask, target.shape[0], predicted.device)
    if keep is not None:
        predicted, target = predicted[keep], target[keep]
    return predicted, target


def infer_num_classes(predictions: Tensor, predicted: Tensor, target: Tensor) -> int:
    """How many classes a batch shows: C of N×C scores, 2 for binary float scores (even if
    one class never occurs), else one past the largest label seen (0 for no samples)."""
    if predictions.ndim == 2 and predictions.shape[1] > 1:
        seen = predictions.shape[1]
    elif predictions.is_floating_point():
        seen = 2
    else:
        seen = 0
    for labels in (predicted, target):
        if labels.numel():
            seen = max(seen, int(labels.max()) + 1)
    return seen


def top_k_hits(predictions: Tensor, targets: Tensor, top_k: int) -> Tensor:
    """Bool N: whether each target (1-d int64, on the predictions' device) is among the
    ``top_k`` highest-scored classes."""
    _require_tensor(predictions)
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
