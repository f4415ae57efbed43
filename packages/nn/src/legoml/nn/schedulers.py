"""Scheduler nodes: ``build(optimizer, total_steps)`` gives a torch ``LRScheduler``.

Steps are optimizer steps: call ``scheduler.step()`` after each ``optimizer.step()``, and pass
the number of optimizer steps in the whole run as ``total_steps``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    LambdaLR,
    LRScheduler,
    OneCycleLR,
    StepLR,
)

from legoml.nn._check import Check
from legoml.nn._schedules import WarmupCosineFactor
from legoml.nn.errors import ConfigError
from legoml.nn.node import Node
from legoml.nn.types import (
    NonNegative,
    NonNegativeFloat,
    Positive,
    PositiveFloat,
    Probability,
    positive_int,
)

__all__ = ["CosineNode", "OneCycleNode", "SchedulerNode", "StepLRNode", "WarmupCosineNode"]


class SchedulerNode(Node, register=False):
    """Base of scheduler nodes."""

    def build(self, optimizer: torch.optim.Optimizer, total_steps: int) -> LRScheduler:
        raise NotImplementedError(f"{type(self).__name__} does not define build()")


@dataclass(frozen=True)
class StepLRNode(SchedulerNode):
    """``StepLR``: multiply the LR by ``gamma`` every ``step_size`` steps."""

    step_size: Positive = 1000
    gamma: Annotated[float, Check(gt=0.0, le=1.0)] = 0.1

    def build(self, optimizer: torch.optim.Optimizer, total_steps: int) -> LRScheduler:
        positive_int(total_steps, "total_steps")
        return StepLR(optimizer, step_size=self.step_size, gamma=self.gamma)


@dataclass(frozen=True)
class CosineNode(SchedulerNode):
    """``CosineAnnealingLR`` from the base LR down to ``min_lr`` over ``total_steps``."""

    min_lr: NonNegativeFloat = 0.0

    def build(self, optimizer: torch.optim.Optimizer, total_steps: int) -> LRScheduler:
        total = positive_int(total_steps, "total_steps")
        return CosineAnnealingLR(optimizer, T_max=total, eta_min=self.min_lr)


@dataclass(frozen=True)
class OneCycleNode(SchedulerNode):
    """``OneCycleLR``: warm up to ``max_lr`` (default: the optimizer's LR), then anneal.

    Starts at ``max_lr / div_factor``, ends at that divided by ``final_div_factor``.
    """

    max_lr: PositiveFloat | None = None
    pct_start: Annotated[float, Check(gt=0.0, lt=1.0)] = 0.3
    anneal_strategy: Literal["cos", "linear"] = "cos"
    div_factor: PositiveFloat = 25.0
    final_div_factor: PositiveFloat = 1e4
    three_phase: bool = False
    cycle_momentum: bool = True

    def build(self, optimizer: torch.optim.Optimizer, total_steps: int) -> LRScheduler:
        total = positive_int(total_steps, "total_steps")
        max_lr = (
            [float(group["lr"]) for group in optimizer.param_groups]
            if self.max_lr is None
            else self.max_lr
        )
        # torch divides by zero when a phase is zero steps long (e.g. pct_start 0.25 of 4
        # steps): nudge pct_start by a fraction of a step (the warm-up still ends at step 1)
        three = self.three_phase
        pct = next(
            p
            for p in (self.pct_start, 1.5 / total, 1.25 / total)
            if p * total != 1.0 and not (three and total + 1 == 2 * p * total)
        )
        return OneCycleLR(
            optimizer,
            max_lr=max_lr,
            total_steps=total,
            pct_start=pct,
            anneal_strategy=self.anneal_strategy,
            cycle_momentum=self.cycle_momentum,
            div_factor=self.div_factor,
            final_div_factor=self.final_div_factor,
            three_phase=self.three_phase,
        )


@dataclass(frozen=True)
class WarmupCosineNode(SchedulerNode):
    """Linear warmup to the base LR, then a cosine down to ``min_lr_ratio`` x base LR.

    Warmup lasts ``warmup_steps``, or ``round(warmup_ratio * total_steps)`` when that is
    null. At 0-based step ``s`` (``W`` warmup steps, ``T`` total) the factor is
    ``(s + 1) / W`` for ``s < W``, then ``m + (1 - m) * (1 + cos(pi * (s - W) / (T - W))) / 2``.

    >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    >>> sched = WarmupCosineNode(warmup_steps=2).build(opt, total_steps=10)
    >>> lrs = []
    >>> for _ in range(4):
    ...     lrs.append(round(sched.get_last_lr()[0], 3))
    ...     opt.step()
    ...     sched.step()
    >>> lrs
    [0.5, 1.0, 1.0, 0.962]
    """

    warmup_steps: NonNegative | None = None
    warmup_ratio: Probability = 0.05
    min_lr_ratio: Annotated[float, Check(ge=0.0, le=1.0)] = 0.0

    def warmup_for(self, total_steps: int) -> int:
        """Warmup length for a run of ``total_steps`` optimizer steps."""
        total = positive_int(total_steps, "total_steps")
        if self.warmup_steps is None:
            return round(self.warmup_ratio * total)
        if self.warmup_steps > total:
            raise ConfigError(
                f"{self.warmup_steps} warmup steps exceed the {total} total steps", "warmup_steps"
            )
        return self.warmup_steps

    def build(self, optimizer: torch.optim.Optimizer, total_steps: int) -> LRScheduler:
        factor = WarmupCosineFactor(total_steps, self.warmup_for(total_steps), self.min_lr_ratio)
        return LambdaLR(optimizer, lr_lambda=factor)
