"""Lazy layers (``nn.LazyLinear`` ...) get their shapes from one dummy forward pass."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import torch
from torch import nn
from torch.nn.parameter import is_lazy

__all__ = ["has_lazy", "materialize"]


def has_lazy(module: nn.Module) -> bool:
    """True while some parameter or buffer of ``module`` is still uninitialized."""
    return any(is_lazy(t) for t in chain(module.parameters(), module.buffers()))


def materialize(
    module: nn.Module,
    input_shape: Sequence[int],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> nn.Module:
    """Give every lazy layer its shape with one forward pass of zeros (eval mode, no grad).

    ``input_shape`` includes the batch dimension, e.g. ``(1, 1, 28, 28)``. Running statistics
    and the training flag are left as they were. Returns ``module``.

    >>> model = materialize(nn.Sequential(nn.Flatten(), nn.LazyLinear(10)), (1, 1, 28, 28))
    >>> model[1].weight.shape
    torch.Size([10, 784])
    """
    if not has_lazy(module):
        return module
    if device is None:
        first = next(chain(module.parameters(), module.buffers()), None)
        device = first.device if first is not None else torch.device("cpu")
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            module(torch.zeros(tuple(input_shape), dtype=dtype, device=device))
    finally:
        module.train(was_training)
    return module
