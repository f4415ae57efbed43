"""Context: the objects a step function and the callbacks work on."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
import torch
from torch import nn
from torch.nn.parallel import DataParallel, DistributedDataParallel
from torch.optim.lr_scheduler import LRScheduler

from legoml.core.errors import ResumeError

__all__ = ["Context", "unwrap_model"]

_log = structlog.get_logger(__name__)
_COMPONENTS = ("optimizer", "scheduler", "scaler")


def unwrap_model(model: nn.Module) -> nn.Module:
    """Return the plain module under DDP/DataParallel and ``torch.compile`` wrappers.

    State dicts are taken from the unwrapped model so a checkpoint written by a DDP run
    loads into a single-process model and back (no ``module.`` prefixes).
    """
    while True:
        if isinstance(model, (DistributedDataParallel, DataParallel)):
            model = model.module
        else:
            inner = getattr(model, "_orig_mod", None)
            if not isinstance(inner, nn.Module):
                return model
            model = inner


@dataclass
class Context:
    """Model, optimizer, loss, device and friends, handed to steps and callbacks.

    Only ``model`` is required: an evaluation context has no optimizer. ``extras`` holds
    anything else a custom step needs (e.g. an EMA model).

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(2, 1)
        >>> ctx = Context(model, torch.optim.SGD(model.parameters(), lr=0.1))
        >>> sorted(ctx.state_dict())
        ['model', 'optimizer']
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer | None = None
    loss_fn: Callable[..., torch.Tensor] | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    scheduler: LRScheduler | None = None
    scaler: torch.amp.GradScaler | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        """State of the model (unwrapped), optimizer, scheduler and scaler that are set."""
        state: dict[str, Any] = {"model": unwrap_model(self.model).state_dict()}
        for name in _COMPONENTS:
            component = getattr(self, name)
            if component is not None:
                state[name] = component.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> None:
        """Restore what :meth:`state_dict` saved into the components this context has.

        Components absent from this context are ignored (loading a training checkpoint
        into an evaluation context is fine); a component present here but missing from
        ``state`` is logged and left as is. ``strict`` applies to the model's keys.
        """
        if "model" not in state:
            raise ResumeError(
                "context state has no 'model' entry; pass the 'context' part of a checkpoint"
            )
        unwrap_model(self.model).load_state_dict(state["model"], strict=strict)
        for name in _COMPONENTS:
            component = getattr(self, name)
            if component is None:
                continue
            if name in state:
                component.load_state_dict(state[name])
            else:
                _log.warning("context_state_missing", component=name)
