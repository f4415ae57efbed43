"""TimerCallback: per-epoch step time, data wait time and throughput into state.timings."""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING

from legoml.core._callback_base import Callback, Priority
from legoml.core._utils import batch_size

if TYPE_CHECKING:
    from legoml.core.context import Context
    from legoml.core.engine import Engine

__all__ = ["TimerCallback"]


class TimerCallback(Callback):
    """Measure each epoch and write, at EPOCH_END, ``state.timings``:

    ``step`` (mean seconds inside the step, STEP_START to STEP_END), ``data`` (mean
    seconds per step outside it: waiting for the next batch plus the loop's own work),
    ``samples_per_s`` and ``steps_per_s`` (over the whole epoch). Per step it reads the
    clock twice and the batch size once; ``data`` is derived at EPOCH_END. On GPU, step times are launch times
    unless the step synchronises.

    Example:
        >>> import torch
        >>> from legoml.core import Context, Engine
        >>> engine = Engine(lambda e, b, c: {"loss": None}, Context(torch.nn.Identity()),
        ...                 [TimerCallback()])
        >>> sorted(engine.loop([torch.zeros(4, 2)] * 3).timings)
        ['data', 'epoch', 'samples_per_s', 'step', 'steps_per_s', 'total']
    """

    priority = Priority.TIMER

    def __init__(self) -> None:
        self._epoch_start = self._step_start = self._step_time = 0.0
        self._first_step = self._samples = 0

    def on_epoch_start(self, engine: Engine, context: Context) -> None:
        self._epoch_start = perf_counter()
        self._first_step = engine.state.step  # > 0 in an epoch resumed mid-way
        self._step_time = 0.0
        self._samples = 0

    def on_step_start(self, engine: Engine, context: Context) -> None:
        self._step_start = perf_counter()

    def on_step_end(self, engine: Engine, context: Context) -> None:
        self._step_time += perf_counter() - self._step_start
        self._samples += batch_size(engine.state.batch)

    def on_epoch_end(self, engine: Engine, context: Context) -> None:
        steps = engine.state.step - self._first_step
        if steps <= 0:
            return
        elapsed = max(perf_counter() - self._epoch_start, 1e-9)
        timings = engine.state.timings
        timings["step"] = self._step_time / steps
        timings["data"] = max(elapsed - self._step_time, 0.0) / steps
        timings["samples_per_s"] = self._samples / elapsed
        timings["steps_per_s"] = steps / elapsed
