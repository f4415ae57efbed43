"""ProgressBarCallback: a tqdm bar per epoch with loss, samples/s and epoch metrics."""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING, Any, TextIO

from tqdm.auto import tqdm  # type: ignore[import-untyped,unused-ignore]

from legoml.core._callback_base import Priority, _ReleasingCallback
from legoml.core._utils import batch_size
from legoml.core.distributed import is_main_process
from legoml.core.errors import CallbackError
from legoml.core.values import require_int, to_scalar

if TYPE_CHECKING:
    from legoml.core.context import Context
    from legoml.core.engine import Engine

__all__ = ["ProgressBarCallback"]


class ProgressBarCallback(_ReleasingCallback):
    """One tqdm bar per epoch; off on ranks other than 0.

    The bar advances every ``refresh_every`` steps and reads the loss (a device sync)
    only every ``postfix_every`` steps, so it stays cheap in the hot loop. At EPOCH_END
    it shows the epoch's metrics (or the last loss when no ``*/loss`` metric exists) and
    throughput. Extra keyword arguments go to ``tqdm`` (``mininterval``, ``ncols``...).

    Example:
        >>> import io, torch
        >>> from legoml.core import Context, Engine
        >>> bar = ProgressBarCallback(file=io.StringIO())
        >>> Engine(lambda e, b, c: {"loss": b}, Context(torch.nn.Identity()), [bar]).loop(
        ...     [torch.tensor(1.0)] * 3).step
        3
    """

    priority = Priority.REPORTING

    def __init__(
        self,
        desc: str = "epoch",
        refresh_every: int = 10,
        postfix_every: int = 50,
        file: TextIO | None = None,
        leave: bool = True,
        disable: bool = False,
        **tqdm_kwargs: Any,
    ) -> None:
        for name, value in (("refresh_every", refresh_every), ("postfix_every", postfix_every)):
            require_int(value, f"ProgressBarCallback({name}=...)", error=CallbackError)
        self.desc = desc
        self.refresh_every = refresh_every
        self.postfix_every = postfix_every
        self.file = file
        self.leave = leave
        self.disable = disable
        self.tqdm_kwargs = tqdm_kwargs
        self.bar: Any = None
        self._pending = 0
        self._enabled = False
        self._mark_time = 0.0
        self._mark_step = 0
        self._epoch_time = 0.0
        self._epoch_first_step = 0
        self._samples = 0

    def on_engine_start(self, engine: Engine, context: Context) -> None:
        self._enabled = not self.disable and is_main_process()

    def on_epoch_start(self, engine: Engine, context: Context) -> None:
        self._release()
        if not self._enabled:
            return
        state = engine.state
        of = "" if state.max_epochs is None else f"/{state.max_epochs}"
        self.bar = tqdm(
            total=state.epoch_end_step(),  # a last epoch cut by max_steps ends early
            initial=state.step,
            desc=f"{self.desc} {state.epoch}{of}",
            file=self.file,
            leave=self.leave,
            dynamic_ncols=True,
            unit="step",
            **self.tqdm_kwargs,
        )
        self._pending = 0
        self._mark_time = self._epoch_time = perf_counter()
        self._mark_step = self._epoch_first_step = state.step
        self._samples = 0

    def on_step_end(self, engine: Engine, context: Context) -> None:
        bar = self.bar
        if bar is None:
            return
        pending = self._pending + 1
        if pending < self.refresh_every:
            self._pending = pending
            return
        self._pending = 0
        bar.update(pending)
        state = engine.state
        if state.step - self._mark_step >= self.postfix_every:
            now = perf_counter()
            steps = state.step - self._mark_step
            samples = steps * batch_size(state.batch)
            self._samples += samples
            postfix = {"samples/s": f"{samples / max(now - self._mark_time, 1e-9):.0f}"}
            loss = to_scalar(getattr(state.output, "loss", None))
            if loss is not None:
                postfix = {"loss": f"{loss:.4f}", **postfix}
            bar.set_postfix(postfix, refresh=False)
            self._mark_time, self._mark_step = now, state.step

    def on_epoch_end(self, engine: Engine, context: Context) -> None:
        bar = self.bar
        if bar is None:
            return
        state = engine.state
        if self._pending:
            bar.update(self._pending)
            self._pending = 0
        elapsed = max(perf_counter() - self._epoch_time, 1e-9)
        samples = self._samples + (state.step - self._mark_step) * batch_size(state.batch)
        postfix = {name: f"{value:.4g}" for name, value in state.metrics.items()}
        if not any(name.endswith("/loss") for name in postfix):
            loss = to_scalar(getattr(state.output, "loss", None))
            if loss is not None:
                postfix = {"loss": f"{loss:.4f}", **postfix}
        if state.step > self._epoch_first_step:
            postfix["samples/s"] = f"{samples / elapsed:.0f}"
        bar.set_postfix(postfix, refresh=False)
        self._release()

    def _release(self) -> None:
        """Close the epoch's bar (at the epoch's end, or when the loop ends or fails)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
