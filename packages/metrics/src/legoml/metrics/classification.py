"""Classification metrics: thin classes that hold declared count states and call the
functional ``_<name>_update`` / ``_<name>_compute`` pairs of ``legoml.metrics.functional``.

Accuracy keeps (correct, total); the binary metrics keep ``[tp, fp, tn, fn]``; F1 and the
confusion matrix keep a C×C confusion matrix. Input rules (scores, logits, probabilities or
labels) are those of ``legoml.metrics._inputs``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from legoml.metrics._inputs import check_num_classes
from legoml.metrics._scores import Average, check_normalize
from legoml.metrics.functional import (
    _accuracy_compute,
    _accuracy_update,
    _accuracy_validate_args,
    _binary_accuracy_compute,
    _binary_precision_compute,
    _binary_recall_compute,
    _binary_stats_update,
    _confusion_matrix_compute,
    _confusion_matrix_update,
    _f1_compute,
    _f1_validate_args,
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
        _accuracy_validate_args(top_k)
        self.top_k = top_k
        if top_k > 1:
            self.name = f"top{top_k}_accuracy"
        self.add_state("correct", torch.zeros((), dtype=torch.int64))
        self.add_state("total", torch.zeros((), dtype=torch.int64))

    def config(self) -> dict[str, Any]:
        return {"top_k": self.top_k}

    def update(self, predictions: Tensor, targets: Tensor, mask: Tensor | None = None) -> None:
        correct, total = _accuracy_update(predictions, targets, self.top_k, mask)
        self._accumulate(correct=correct, total=total)

    def compute(self) -> float:
        return float(_accuracy_compute(self._states["correct"], self._states["total"]))


class _BinaryStats(Metric):
    """Shared state of the binary metrics: int64 ``[tp, fp, tn, fn]``; a subclass names the
    ``_binary_*_compute`` that reads its score from them."""

    _score = staticmethod(_binary_accuracy_compute)

    def __init__(self, threshold: float = 0.5, from_logits: bool | None = None) -> None:
        super().__init__()
        self.threshold = threshold
        self.from_logits = from_logits
        self.add_state("stats", torch.zeros(4, dtype=torch.int64))

    def config(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "from_logits": self.from_logits}

    def update(self, predictions: Tensor, targets: Tensor, mask: Tensor | None = None) -> None:
        stats = _binary_stats_update(predictions, targets, self.threshold, mask, self.from_logits)
        self._accumulate(stats=stats)

    def compute(self) -> float:
        return float(type(self)._score(self._states["stats"]))

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
    _score = staticmethod(_binary_accuracy_compute)


class BinaryPrecision(_BinaryStats):
    """tp / (tp + fp); 0 when nothing was predicted positive.

    Example:
        >>> import torch
        >>> precision = BinaryPrecision()
        >>> precision.update(torch.tensor([2.0, -1.0, 0.5]), torch.tensor([1, 0, 0]))  # logits
        >>> precision.compute(), precision.counts["fp"]
        (0.5, 1)
    """

    name = "precision"
    _score = staticmethod(_binary_precision_compute)


class BinaryRecall(_BinaryStats):
    """tp / (tp + fn); 0 when there is no positive target.

    Example:
        >>> import torch
        >>> recall = BinaryRecall(threshold=0.3)
        >>> recall.update(torch.tensor([0.4, 0.2, 0.9]), torch.tensor([1, 1, 0]))
        >>> recall.update(torch.tensor([0.8]), torch.tensor([1]), mask=torch.tensor([False]))
        >>> recall.compute()
        0.5
    """

    name = "recall"
    _score = staticmethod(_binary_recall_compute)


class _ConfusionBased(Metric):
    """Shared state: a C×C confusion matrix, growing with the data when C is not given."""

    def __init__(
        self,
        num_classes: int | None = None,
        threshold: float = 0.5,
        from_logits: bool | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = check_num_classes(num_classes)
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
        confmat = _confusion_matrix_update(
            predictions, targets, self.num_classes, mask, self.threshold, self.from_logits
        )
        self._accumulate(confmat=confmat)

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
        _f1_validate_args(num_classes, average)
        super().__init__(num_classes, threshold, from_logits)
        self.average: Average = average

    def config(self) -> dict[str, Any]:
        return {**super().config(), "average": self.average}

    def compute(self) -> Any:
        """A float, or a per-class float64 tensor for ``average="none"``."""
        scores = _f1_compute(self.confusion, self.average)
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
        check_normalize(normalize)
        super().__init__(num_classes, threshold, from_logits)
        self.normalize = normalize

    def config(self) -> dict[str, Any]:
        return {**super().config(), "normalize": self.normalize}

    def compute(self) -> Tensor:
        return _confusion_matrix_compute(self.confusion, self.normalize)
