"""NonFiniteLossGuard: stop with a clear error as soon as the loss is NaN or Inf."""

from __future__ import annotations

from math import isfinite
from typing import TYPE_CHECKING

import torch

from legoml.core._callback_base import Callback, Priority
from legoml.core.errors import CallbackError, NonFiniteLossError
from legoml.core.values import require_int

if TYPE_CHECKING:
    from legoml.core.context import Context
    from legoml.core.engine import Engine

__all__ = ["NonFiniteLossGuard"]


class NonFiniteLossGuard(Callback):
    """Raise :class:`NonFiniteLossError` from STEP_END when the loss is not finite.

    It runs first at STEP_END (priority GUARD), so a checkpoint due at the same step is
    never written; checkpoints also refuse non-finite states themselves. Checking reads
    the loss (a device sync on GPU): ``check_every`` > 1 trades detection delay for speed.

    Example:
        >>> import torch
        >>> from legoml.core import Context, Engine
        >>> engine = Engine(lambda e, b, c: {"loss": b}, Context(torch.nn.Identity()),
        ...                 [NonFiniteLossGuard()])
        >>> engine.loop([torch.tensor(1.0), torch.tensor(float("nan"))])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        legoml.core.errors.NonFiniteLossError: loss is nan at epoch 1, step 2 (global step 2); ...
    """

    priority = Priority.GUARD

    def __init__(self, check_every: int = 1) -> None:
        require_int(check_every, "NonFiniteLossGuard(check_every=...)", error=CallbackError)
        self.check_every = check_every

    def on_step_end(self, engine: Engine, context: Context) -> None:
        state = engine.state
        every = self.check_every
        if every != 1 and state.global_step % every:
            return
        loss = getattr(state.output, "loss", None)
        if loss is None:
            return
        try:
            value = float(loss)
        except (TypeError, ValueError, RuntimeError):  # a per-sample loss tensor
            value = float("nan") if not bool(torch.isfinite(torch.as_tensor(loss)).all()) else 0.0
        if not isfinite(value):
            raise NonFiniteLossError(
                f"loss is {value} at epoch {state.epoch}, step {state.step} "
                f"(global step {state.global_step}); training stopped before saving this state: "
                "lower the learning rate, clip gradients or check the inputs"
            )
