"""Pure learning-rate factor curves (multipliers of the base LR) used by scheduler nodes."""

from __future__ import annotations

import math

__all__ = ["WarmupCosineFactor", "warmup_cosine"]


def warmup_cosine(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """LR factor at 0-based ``step``: linear ``(step + 1) / warmup`` while ``step < warmup``,
    then a cosine from 1 down to ``min_ratio`` reached at ``step == total`` (held after)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosineFactor:
    """``warmup_cosine`` as a callable for ``LambdaLR``; its ``__dict__`` is plain numbers, so
    the scheduler's ``state_dict()`` stays loadable with ``torch.load(weights_only=True)``."""

    def __init__(self, total: int, warmup: int, min_ratio: float) -> None:
        self.total = total
        self.warmup = warmup
        self.min_ratio = min_ratio

    def __call__(self, step: int) -> float:
        return warmup_cosine(step, self.total, self.warmup, self.min_ratio)
