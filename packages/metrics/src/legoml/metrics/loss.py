"""MeanLoss: the sample-weighted mean of a loss over an epoch."""

from __future__ import annotations

import torch
from torch import Tensor

from legoml.metrics.functional import _mean_compute, _mean_loss_update
from legoml.metrics.metric import Metric

__all__ = ["MeanLoss"]


class MeanLoss(Metric):
    """Mean loss per sample over everything seen since the last reset.

    ``update(loss, targets=None, mask=None)``: ``loss`` is either a batch mean (a scalar,
    weighted by ``len(targets)``, by ``mask.sum()`` when a mask is given, else by 1) or
    per-sample losses (1-d; the masked-out ones are dropped, which is exact). Sums are
    float64; state is (sum, count), so merging and reducing across ranks are exact.

    Example:
        >>> import torch
        >>> loss = MeanLoss()
        >>> loss.update(torch.tensor(1.0), torch.zeros(3))   # batch mean over 3 samples
        >>> loss.update(torch.tensor([2.0, 4.0]))            # per-sample losses
        >>> loss.compute()
        1.8
    """

    name = "loss"

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.zeros((), dtype=torch.float64))
        self.add_state("count", torch.zeros((), dtype=torch.int64))

    def update(
        self, loss: Tensor | float, targets: Tensor | None = None, mask: Tensor | None = None
    ) -> None:
        total, count = _mean_loss_update(loss, targets, mask)
        self._accumulate(total=total, count=count)

    def compute(self) -> float:
        return float(_mean_compute(self._states["total"], self._states["count"]))
