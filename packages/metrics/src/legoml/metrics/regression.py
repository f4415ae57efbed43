"""Regression metrics: mean squared and mean absolute error over every value seen."""

from __future__ import annotations

import torch
from torch import Tensor

from legoml.metrics._inputs import check_mask
from legoml.metrics.errors import MetricInputError
from legoml.metrics.functional import safe_divide
from legoml.metrics.metric import Metric

__all__ = ["MeanAbsoluteError", "MeanSquaredError"]


class _ElementwiseError(Metric):
    """Sum of a per-element error and the element count (float64 / int64), so merging and
    reducing across ranks are exact. ``mask`` drops whole samples (first dimension)."""

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.zeros((), dtype=torch.float64))
        self.add_state("count", torch.zeros((), dtype=torch.int64))

    def _error(self, difference: Tensor) -> Tensor:
        raise NotImplementedError

    def update(self, predictions: Tensor, targets: Tensor, mask: Tensor | None = None) -> None:
        if predictions.shape != targets.shape:
            raise MetricInputError(
                f"{type(self).__name__} needs predictions and targets of one shape, got "
                f"{tuple(predictions.shape)} and {tuple(targets.shape)}"
            )
        self._begin_update(predictions)
        difference = predictions.detach().double() - targets.detach().to(predictions.device).double()
        if difference.ndim > 0:
            keep = check_mask(mask, difference.shape[0])
            if keep is not None:
                difference = difference[keep.to(difference.device)]
        self._add("total", self._error(difference).sum())
        self._add("count", torch.tensor(difference.numel()))

    def compute(self) -> float:
        return float(safe_divide(self._states["total"], self._states["count"]))


class MeanSquaredError(_ElementwiseError):
    """Mean of ``(prediction - target) ** 2`` over every element seen since the last reset.

    Example:
        >>> import torch
        >>> mse = MeanSquaredError()
        >>> mse.update(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 4.0]))
        >>> mse.compute()
        2.0
    """

    name = "mse"

    def _error(self, difference: Tensor) -> Tensor:
        return difference.square()


class MeanAbsoluteError(_ElementwiseError):
    """Mean of ``|prediction - target|`` over every element seen since the last reset.

    Example:
        >>> import torch
        >>> mae = MeanAbsoluteError()
        >>> mae.update(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 4.0]))
        >>> mae.compute()
        1.0
    """

    name = "mae"

    def _error(self, difference: Tensor) -> Tensor:
        return difference.abs()
