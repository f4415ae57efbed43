"""ClassificationReport: per-class precision, recall, F1 and support, as numbers or a table
(over a confusion-matrix state; the numbers come from ``functional._report_compute``)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from legoml.metrics._scores import per_class_scores
from legoml.metrics.classification import _ConfusionBased
from legoml.metrics.functional import _class_names, _report_compute, _report_validate_args

__all__ = ["ClassificationReport"]


class ClassificationReport(_ConfusionBased):
    """Per-class scores plus macro and weighted averages, from one confusion matrix.

    ``compute()`` gives flat float entries (``precision/<class>``, ``recall/<class>``,
    ``f1/<class>``, ``support/<class>``, ``accuracy``, ``macro/<score>``,
    ``weighted/<score>``) ready for logging; ``table()`` gives the text to print. Averages
    follow ``F1Score``: macro over the classes present in targets or predictions.

    Example:
        >>> import torch
        >>> report = ClassificationReport(num_classes=2, class_names=["cat", "dog"])
        >>> report.update(torch.tensor([0, 1, 1, 1]), torch.tensor([0, 0, 1, 1]))
        >>> report.compute()["recall/cat"]
        0.5
        >>> print(report.table(digits=2))
                      precision    recall  f1-score   support
        <BLANKLINE>
                 cat       1.00      0.50      0.67         2
                 dog       0.67      1.00      0.80         2
        <BLANKLINE>
            accuracy                           0.75         4
           macro avg       0.83      0.75      0.73         4
        weighted avg       0.83      0.75      0.73         4
    """

    name = "report"

    def __init__(
        self,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        threshold: float = 0.5,
        from_logits: bool | None = None,
    ) -> None:
        num_classes = _report_validate_args(num_classes, class_names)
        super().__init__(num_classes, threshold, from_logits)
        self.class_names = list(class_names) if class_names is not None else None

    def per_class(self) -> dict[str, Tensor]:
        """float64 per-class ``precision``, ``recall``, ``f1`` and int64 ``support``."""
        precision, recall, f1, support = per_class_scores(self.confusion)
        return {"precision": precision, "recall": recall, "f1": f1, "support": support}

    def compute(self) -> dict[str, float]:
        return _report_compute(self.confusion, self.class_names)

    def table(self, digits: int = 4) -> str:
        """The report as aligned text, in scikit-learn's ``classification_report`` layout."""
        values = self.compute()
        names = _class_names(self.class_names, self.confusion.shape[0])
        width = max([len("weighted avg"), *(len(n) for n in names)])
        column = max(9, digits + 3)
        titles = ("precision", "recall", "f1-score", "support")
        lines = [" " * (width + 1) + "".join(f" {title:>{column}}" for title in titles), ""]

        def row(label: str, p: float | None, r: float | None, f: float, support: float) -> str:
            cells = [" " * column if v is None else f"{v:>{column}.{digits}f}" for v in (p, r, f)]
            cells.append(f"{int(support):>{column}d}")
            return f"{label:>{width}} " + "".join(f" {cell}" for cell in cells)

        for name in names:
            lines.append(
                row(
                    name,
                    values[f"precision/{name}"],
                    values[f"recall/{name}"],
                    values[f"f1/{name}"],
                    values[f"support/{name}"],
                )
            )
        total = values["support"]
        lines += ["", row("accuracy", None, None, values["accuracy"], total)]
        for average in ("macro", "weighted"):
            lines.append(
                row(
                    f"{average} avg",
                    values[f"{average}/precision"],
                    values[f"{average}/recall"],
                    values[f"{average}/f1"],
                    total,
                )
            )
        return "\n".join(lines)
