"""Regression metrics: mean squared and mean absolute error over every value seen."""

from __future__ import annotations

import torch
from torch import Tensor

from legoml.metrics.functional import ErrorKind, _mean_compute, _mean_error_update
from legoml.metrics.metric import Metric

__all__ = ["MeanAbsoluteError", "MeanSquaredError"]


class _MeanError(Metric):
    """Sum of a per-element error and the element count (float64 / int64), so merging and
    reducing across ranks are exact. ``mask`` drops whole samples (first dimension)."""

    kind: ErrorKind = "squared"

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.zeros((), dtype=torch.float64))
        self.add_state("count", torch.zeros((), dtype=torch.int64))

    def update(self, predictions: Tensor, targets: Tensor, mask: Tensor | None = None) -> None:
        total, count = _mean_error_update(predictions, targets, self.kind, mask)
        self._accumulate(total=total, count=count)

    def compute(self) -> float:
        return float(_mean_compute(self._states["total"], self._states["count"]))


class MeanSquaredError(_MeanError):
    """Mean of ``(prediction - target) ** 2`` over every element seen since the last reset.

    Example:
        >>> import torch
        >>> mse = MeanSquaredError()
        >>> mse.update(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 4.0]))
        >>> mse.compute()
        2.0
    """

    name = "mse"
    kind: ErrorKind = "squared"


class MeanAbsoluteError(_MeanError):
    """Mean of ``|prediction - target|`` over every element seen since the last reset;
    ``mask`` drops whole samples (rows).

    Example:
        >>> import torch
        >>> mae = MeanAbsoluteError()
        >>> mae.update(torch.tensor([[1.0, 2.0], [9.0, 9.0]]), torch.zeros(2, 2), mask=torch.tensor([True, False]))
        >>> mae.compute()
        1.5
    """

    name = "mae"
    kind: ErrorKind = "absolute"
