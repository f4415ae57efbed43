"""EvalOnEpochEndCallback: run an evaluation engine every N epochs, merge its metrics."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext
from time import perf_counter
from typing import TYPE_CHECKING, Any

from legoml.core._callback_base import Callback, Priority
from legoml.core.callbacks.metrics import MetricsCallback
from legoml.core.errors import CallbackError

if TYPE_CHECKING:
    from legoml.core.callbacks.ema import EMACallback
    from legoml.core.context import Context
    from legoml.core.engine import Engine

__all__ = ["EvalOnEpochEndCallback"]


class EvalOnEpochEndCallback(Callback):
    """At the trainer's EPOCH_END (every ``every_n_epochs`` and after the last epoch, also
    one that ``max_steps`` cut short), run ``evaluator.loop(data)`` and copy its metrics
    into the trainer's ``state.metrics``.

    Evaluator metric names get ``prefix`` once: a name that already starts with it is kept,
    one that starts with ``train/`` or with the prefix of one of the evaluator's
    MetricsCallbacks loses that first, so ``accuracy``, ``train/accuracy`` (an evaluator
    MetricsCallback left at its default prefix) and ``val/accuracy`` all become
    ``val/accuracy``.
    The evaluation time goes to ``state.timings["eval"]``.

    With ``ema`` (an :class:`~legoml.core.callbacks.ema.EMACallback` of the trainer) the
    evaluator's model holds the averaged weights during the evaluation and its own weights
    again after; add two of these callbacks (``prefix="val/"`` and ``prefix="val_ema/"``)
    to measure both.

    Example:
        >>> import torch
        >>> from legoml.core import Context, Engine, Events
        >>> ctx = Context(torch.nn.Identity())
        >>> evaluator = Engine(lambda e, b, c: {"loss": None}, ctx)
        >>> _ = evaluator.add_event_handler(
        ...     Events.EPOCH_END, lambda e, c: e.state.metrics.update(score=1.0))
        >>> trainer = Engine(lambda e, b, c: {"loss": None}, ctx,
        ...                  [EvalOnEpochEndCallback(evaluator, [0, 1])])
        >>> trainer.loop([0, 1, 2], max_epochs=2).metrics
        {'val/score': 1.0}
    """

    priority = Priority.EVALUATION

    def __init__(
        self,
        evaluator: Engine,
        data: Iterable[Any],
        every_n_epochs: int = 1,
        prefix: str = "val/",
        epoch_length: int | None = None,
        eval_last: bool = True,
        ema: EMACallback | None = None,
    ) -> None:
        if (
            isinstance(every_n_epochs, bool)
            or not isinstance(every_n_epochs, int)
            or every_n_epochs < 1
        ):
            raise CallbackError(f"every_n_epochs must be an int >= 1, got {every_n_epochs!r}")
        self.evaluator = evaluator
        self.data = data
        self.every_n_epochs = every_n_epochs
        self.prefix = prefix
        self.epoch_length = epoch_length
        self.eval_last = eval_last
        if ema is not None and not callable(getattr(ema, "swapped", None)):
            raise CallbackError(
                f"EvalOnEpochEndCallback(ema=...) must be an EMACallback, got {type(ema).__name__}"
            )
        self.ema = ema
        self.last_metrics: dict[str, float] = {}

    def on_epoch_end(self, engine: Engine, context: Context) -> None:
        state = engine.state
        due = state.epoch % self.every_n_epochs == 0
        if not due and not (self.eval_last and state.is_last_epoch()):
            return
        started = perf_counter()
        ema = self.ema
        with ema.swapped(self.evaluator.context.model) if ema is not None else nullcontext():
            results = self.evaluator.loop(
                self.data, max_epochs=1, epoch_length=self.epoch_length
            )
        prefix = self.prefix
        self.last_metrics = {
            self._rename(key, prefix, self._split_prefixes()): value
            for key, value in results.metrics.items()
        }
        state.metrics.update(self.last_metrics)
        state.timings["eval"] = perf_counter() - started

    def _split_prefixes(self) -> tuple[str, ...]:
        """``train/`` and the non-empty prefixes of the evaluator's MetricsCallbacks."""
        found = ["train/"]
        for callback in self.evaluator.callbacks:
            split = getattr(callback, "prefix", "") if isinstance(callback, MetricsCallback) else ""
            if split and split not in found:
                found.append(split)
        return tuple(found)

    @staticmethod
    def _rename(key: str, prefix: str, splits: tuple[str, ...]) -> str:
        if key.startswith(prefix):
            return key
        for split in splits:
            if key.startswith(split):
                return prefix + key[len(split) :]
        return prefix + key
