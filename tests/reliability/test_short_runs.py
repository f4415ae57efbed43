"""Very short runs (a few steps, e.g. ``--epochs 0.25`` on a small subset) must train, not
crash inside the learning-rate schedule: OneCycle with any pct_start and any step count."""

from __future__ import annotations

import math

import pytest
import torch

from legoml.nn import OneCycleNode


@pytest.mark.parametrize("three_phase", [False, True])
@pytest.mark.parametrize("pct_start", [0.05, 0.1, 0.2, 0.25, 0.3, 0.5, 0.6, 0.75, 0.99])
def test_one_cycle_builds_and_steps_for_every_short_length(pct_start: float, three_phase: bool) -> None:
    for total in range(1, 41):
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        schedule = OneCycleNode(pct_start=pct_start, three_phase=three_phase).build(optimizer, total)
        rates = [schedule.get_last_lr()[0]]
        for _ in range(total - 1):
            optimizer.step()
            schedule.step()
            rates.append(schedule.get_last_lr()[0])
        assert all(math.isfinite(rate) and rate > 0 for rate in rates), (total, rates)
        assert max(rates) <= 1.0 + 1e-12
