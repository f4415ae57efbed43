"""MeanLoss: the sample-weighted mean of a loss over an epoch."""

from __future__ import annotations

import torch
from torch import Tensor

from legoml.metrics._inputs import check_mask
from legoml.metrics.errors import MetricInputError
from legoml.metrics.functional import safe_divide
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
        self, loss: Tensor, targets: Tensor | None = None, mask: Tensor | None = None
    ) -> None:
        if not isinstance(loss, Tensor):
            loss = torch.tensor(float(loss))
        self._begin_update(loss)
        loss = loss.detach()
        if loss.ndim == 0:
            weight = _batch_weight(targets, mask)
            self._add("total", loss.double() * weight)
            self._add("count", torch.tensor(weight))
            return
        if loss.ndim != 1:
            raise MetricInputError(
                f"loss must be a scalar batch mean or 1-d per-sample losses, got {tuple(loss.shape)}"
            )
        keep = check_mask(mask, loss.shape[0])
        if keep is not None:
            loss = loss[keep.to(loss.device)]
        self._add("total", loss.double().sum())
        self._add("count", torch.tensor(loss.numel()))

    def compute(self) -> float:
        return float(safe_divide(self._states["total"], self._states["count"]))


def _batch_weight(targets: Tensor | None, mask: Tensor | None) -> int:
    """How many samples a batch-mean loss stands for."""
    if mask is not None:
        keep = check_mask(mask, int(mask.shape[0]) if mask.ndim == 1 else -1)
        return 0 if keep is None else int(keep.sum())
    if targets is not None:
        return int(targets.shape[0]) if targets.ndim else 1
    return 1
