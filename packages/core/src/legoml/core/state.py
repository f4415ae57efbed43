"""The engine's run state: the loop's vocabulary in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["State"]


@dataclass(slots=True)
class State:
    """Where the loop is and what it has produced so far.

    Attributes:
        epoch: 1-based number of the current (or last) epoch; 0 before the first one.
        step: 1-based number of the current step within the epoch; during STEP_END and
            between steps it equals the number of steps completed in this epoch.
        global_step: steps started over the whole run (the current one included); equals
            steps completed outside a step. Survives resume.
        max_epochs: number of epochs this run stops after.
        epoch_length: steps per epoch; ``None`` until known (unsized data, first epoch).
        output: the last step's output (a ``StepOutput``), ``None`` before the first step.
        batch: the batch of the current (or last) step as the data source yielded it.
        metrics: scalar results by name (``"train/loss"``, ``"val/accuracy"``...); written
            by callbacks at EPOCH_END.
        timings: durations in seconds (``"epoch"``, ``"total"``, ``"step"``, ``"data"``,
            ``"eval"``), plus rates whose key ends in ``"_per_s"``.

    Example:
        >>> State().global_step
        0
    """

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    max_epochs: int = 1
    epoch_length: int | None = None
    output: Any = None
    batch: Any = None
    metrics: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
