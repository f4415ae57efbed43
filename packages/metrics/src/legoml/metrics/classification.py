"""Classification metrics as thin classes over integer count states.

Accuracy keeps (correct, total); the binary metrics keep ``[tp, fp, tn, fn]``; F1 and the
confusion matrix keep a C×C confusion matrix. Input rules (scores, logits, probabilities or
labels) are those of ``legoml.metrics.functional``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from legoml.metrics._inputs import as_targets, check_mask, class_labels, top_k_hits
from legoml.metrics.errors import MetricInputError
from legoml.metrics.functional import (
    Average,
    average_scores,
    binary_counts,
    check_average,
    confusion_counts,
    per_class_scores,
    safe_divide,
)
from legoml.metrics.metric import Metric

__all__ = [
    "BinaryAccuracy",
    "BinaryPrecision",
    "BinaryRecall",
    "ConfusionMatrix",
    "F1Score",
    "MultiClassAccuracy",
]


class MultiClassAccuracy(Metric):
    """Share of samples whose target is among the ``top_k`` best-scored classes.

    Example:
        >>> import torch
        >>> acc = MultiClassAccuracy()
        >>> acc.update(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1]))
        >>> acc.update(torch.tensor([0, 1]), torch.tensor([0, 1]))  # labels work too
        >>> acc.compute()
        0.75
    """

    name = "accuracy"

    def __init__(self, top_k: int = 1) -> None:
        super().__init__()
        if top_k < 1:
            raise MetricInputError(f"top_k must be >= 1, got {top_k}")
        self.top_k = top_k
        if top_k > 1:
            self.name = f"top{top_k}_accuracy"
        self.add_state("correct", torch.zeros((), dtype=torch.int64))
        self.add_state("total", torch.zeros((), dtype=torch.int64))

    def config(self) -> dict[str, Any]:
        return {"top_k": self.top_k}

    def update(self, predictions: Tensor, targets: Tensor, mask: Tensor | None = None) -> None:
        self._begin_update(predictions)
        target = as_targets(targets)
        hits = top_k_hits(predictions, target.to(predictions.device), self.top_k)
        keep = check_mask(mask, target.shape[0])
        if keep is not None:
            hits = hits[keep.to(hits.device)]
        self._add("correct", hits.sum())
        self._add("total", torch.tensor(hits.numel()))

    def compute(self) -> float:
        return float(safe_divide(self._states["correct"], self._states["total"]))


class _BinaryStats(Metric):
    """Shared state of the binary metrics: int64 ``[tp, fp, tn, fn]``."""

    def __init__(self, threshold: float = 0.5, from_logits: bool | None = None) -> None:
        super().__init__()
        self.threshold = threshold
        self.from_logits = from_logits
        self.add_state("stats", torch.zeros(4, dtype=torch.int64))

    def config(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "from_logits": self.from_logits}

    def update(self, predictions: Tensor, targets: Tensor, mask: Tensor | None = None) -> None:
        self._begin_update(predictions)
        target = as_targets(targets, 2).to(predictions.device)
        predicted = class_labels(predictions, target.shape[0], 2, self.threshold, self.from_logits)
        keep = check_mask(mask, target.shape[0])
        if keep is not None:
            keep = keep.to(predicted.device)
            predicted, target = predicted[keep], target[keep]
        self._add("stats", binary_counts(predicted, target))

    @property
    def counts(self) -> dict[str, int]:
        """The accumulated ``tp``, ``fp``, ``tn``, ``fn``."""
        return dict(zip(("tp", "fp", "tn", "fn"), self._states["stats"].tolist(), strict=True))


class BinaryAccuracy(_BinaryStats):
    """Accuracy of binary predictions (scores above ``threshold`` count as positive).

    Example:
        >>> import torch
        >>> acc = BinaryAccuracy(threshold=0.5)
        >>> acc.update(torch.tensor([0.9, 0.2, 0.7]), torch.tensor([1, 0, 0]))
        >>> round(acc.compute(), 4)
        0.6667
    """

    name = "accuracy"

    def compute(self) -> float:
        tp, fp, tn, fn = self._states["stats"]
        return float(safe_divide(tp + tn, tp + fp + tn + fn))


class BinaryPrecision(_BinaryStats):
    """tp / (tp + fp); 0 when nothing was predicted positive.

    Example:
        >>> import torch
        >>> precision = BinaryPrecision()
        >>> precision.update(torch.tensor([2.0, -1.0, 0.5]), torch.tensor([1, 0, 0]))  # logits
        >>> precision.compute()
        0.5
    """

    name = "precision"

    def compute(self) -> float:
        tp, fp, _, _ = self._states["stats"]
        return float(safe_divide(tp, tp + fp))


class BinaryRecall(_BinaryStats):
    """tp / (tp + fn); 0 when there is no positive target.

    Example:
        >>> import torch
        >>> recall = BinaryRecall(threshold=0.3)
        >>> recall.update(torch.tensor([0.4, 0.2, 0.9]), torch.tensor([1, 1, 0]))
        >>> recall.compute()
        0.5
    """

    name = "recall"

    def compute(self) -> float:
        tp, _, _, fn = self._states["stats"]
        return float(safe_divide(tp, tp + fn))


class _ConfusionBased(Metric):
    """Shared state: a C×C confusion matrix, growing with the data when C is not given."""

    def __init__(
        self,
        num_classes: int | None = None,
        threshold: float = 0.5,
        from_logits: bool | None = None,
    ) -> None:
        super().__init__()
        if num_classes is not None and num_classes < 1:
            raise MetricInputError(
                f"num_classes must be >= 1 (or None to infer), got {num_classes}"
            )
        self.num_classes = num_classes
        self.threshold = threshold
        self.from_logits = from_logits
        size = num_classes or 0
        self.add_state(
            "confmat", torch.zeros(size, size, dtype=torch.int64), growable=num_classes is None
        )

    def config(self) -> dict[str, Any]:
        return {
            "num_classes": self.num_classes,
            "threshold": self.threshold,
            "from_logits": self.from_logits,
        }

    def update(self, predictions: Tensor, targets: Tensor, mask: Tensor | None = None) -> None:
        self._begin_update(predictions)
        target = as_targets(targets, self.num_classes).to(predictions.device)
        predicted = class_labels(
            predictions, target.shape[0], self.num_classes, self.threshold, self.from_logits
        )
        keep = check_mask(mask, target.shape[0])
        if keep is not None:
            keep = keep.to(predicted.device)
            predicted, target = predicted[keep], target[keep]
        size = self.num_classes or self._inferred_size(predictions, predicted, target)
        self._add("confmat", confusion_counts(predicted, target, size))

    def _inferred_size(self, predictions: Tensor, predicted: Tensor, target: Tensor) -> int:
        size = self._states["confmat"].shape[0]
        if predictions.ndim == 2 and predictions.shape[1] > 1:
            size = max(size, predictions.shape[1])
        elif predictions.is_floating_point():
            size = max(size, 2)  # binary scores: two classes even if one never shows
        for labels in (predicted, target):
            if labels.numel():
                size = max(size, int(labels.max()) + 1)
        self._align({"confmat": torch.zeros(size, size, dtype=torch.int64)})
        return size

    @property
    def confusion(self) -> Tensor:
        """The accumulated C×C counts (rows: targets, columns: predictions)."""
        return self._states["confmat"]


class F1Score(_ConfusionBased):
    """F1 averaged as binary (class 1), micro, macro, weighted, or none (per class).

    macro averages over the classes present in targets or predictions (scikit-learn's rule);
    ``num_classes=None`` infers the classes from the data.

    Example:
        >>> import torch
        >>> f1 = F1Score(num_classes=3, average="macro")
        >>> f1.update(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 2]))
        >>> round(f1.compute(), 4)
        0.7778
    """

    name = "f1"

    def __init__(
        self,
        num_classes: int | None = None,
        average: Average = "macro",
        threshold: float = 0.5,
        from_logits: bool | None = None,
    ) -> None:
        check_average(average)
        if average == "binary" and num_classes is not None and num_classes > 2:
            raise MetricInputError(
                f"average='binary' needs num_classes=2 (or None), got {num_classes}"
            )
        super().__init__(num_classes, threshold, from_logits)
        self.average: Average = average

    def config(self) -> dict[str, Any]:
        return {**super().config(), "average": self.average}

    def compute(self) -> Any:
        """A float, or a per-class float64 tensor for ``average="none"``."""
        confusion = self.confusion
        scores = average_scores(per_class_scores(confusion)[2], confusion, self.average)
        return scores if self.average == "none" else float(scores)


class ConfusionMatrix(_ConfusionBased):
    """C×C counts, rows = targets, columns = predictions; optionally normalized.

    ``normalize``: None (int64 counts), "true" (rows sum to 1), "pred" (columns), "all".

    Example:
        >>> import torch
        >>> cm = ConfusionMatrix(num_classes=2)
        >>> cm.update(torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7]]), torch.tensor([0, 0, 1]))
        >>> cm.compute().tolist()
        [[1, 1], [0, 1]]
    """

    name = "confusion_matrix"

    def __init__(
        self,
        num_classes: int | None = None,
        normalize: str | None = None,
        threshold: float = 0.5,
        from_logits: bool | None = None,
    ) -> None:
        if normalize not in (None, "true", "pred", "all"):
            raise MetricInputError(
                f"normalize={normalize!r} is not one of None, 'true', 'pred', 'all'"
            )
        super().__init__(num_classes, threshold, from_logits)
        self.normalize = normalize

    def config(self) -> dict[str, Any]:
        return {**super().config(), "normalize": self.normalize}

    def compute(self) -> Tensor:
        counts = self.confusion.clone()
        if self.normalize == "true":
            return safe_divide(counts, counts.sum(dim=1, keepdim=True).expand_as(counts))
        if self.normalize == "pred":
            return safe_divide(counts, counts.sum(dim=0, keepdim=True).expand_as(counts))
        if self.normalize == "all":
            return safe_divide(counts, counts.sum().expand_as(counts))
        return counts
