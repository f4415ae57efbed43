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
        max_epochs: number of epochs this run stops after; ``None``: no epoch limit
            (``max_steps`` ends the run).
        max_steps: global steps this run stops after (the epoch it falls in ends there,
            EPOCH_END included); ``None``: no step limit.
        epoch_length: steps per epoch; ``None`` until known (unsized data, first epoch).
        output: the last step's output (a ``StepOutput``), ``None`` before the first step.
        batch: the batch of the current (or last) step as the data source yielded it.
        metrics: scalar results by name (``"train/loss"``, ``"val/accuracy"``...); written
            by callbacks at EPOCH_END.
        timings: durations in seconds (``"epoch"``, ``"total"``, ``"step"``, ``"data"``,
            ``"eval"``), plus rates whose key ends in ``"_per_s"``.

    Example:
        >>> state = State(epoch=2, step=2, global_step=7, epoch_length=5, max_epochs=None,
        ...               max_steps=8)  # step 8 is the 3rd of this 5-step epoch
        >>> state.epoch_end_step(), state.is_last_epoch()
        (3, True)
    """

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    max_epochs: int | None = 1
    max_steps: int | None = None
    epoch_length: int | None = None
    output: Any = None
    batch: Any = None
    metrics: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def epoch_end_step(self) -> int | None:
        """The step the current epoch ends at: ``epoch_length``, or earlier where
        ``max_steps`` falls inside the epoch (with the length unknown, where it would
        fall); ``None`` while neither is known."""
        end = self.epoch_length
        if self.max_steps is not None:
            stop = self.step + max(self.max_steps - self.global_step, 0)
            end = stop if end is None else min(end, stop)
        return end

    def is_last_epoch(self) -> bool:
        """Whether the run ends with the current epoch: it is epoch ``max_epochs``, or
        ``max_steps`` falls inside it or on its end (while the epoch's length is unknown,
        only once ``max_steps`` steps are done)."""
        if self.max_epochs is not None and self.epoch >= self.max_epochs:
            return True
        if self.max_steps is None:
            return False
        if self.epoch_length is None:
            return self.global_step >= self.max_steps
        end = self.epoch_end_step()
        assert end is not None
        return self.global_step - self.step + end >= self.max_steps
