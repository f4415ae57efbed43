"""Helpers for exact resume: RNG snapshots, data-source epochs and state-dict checks."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any, cast

import torch

from legoml.core.errors import ResumeError

__all__ = [
    "ENGINE_STATE_VERSION",
    "capture_rng",
    "check_engine_state",
    "has_state",
    "restore_rng",
    "set_data_epoch",
]

ENGINE_STATE_VERSION = 1

_cuda_initialized = cast(Callable[[], bool], torch.cuda.is_initialized)

_INT_KEYS = ("epoch", "step", "global_step", "max_epochs")


def capture_rng() -> dict[str, Any]:
    """Snapshot torch CPU, CUDA (when CUDA was used) and Python ``random`` generators."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    # is_initialized() never starts CUDA: a process that did not use CUDA has no CUDA RNG to save.
    if _cuda_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Restore a :func:`capture_rng` snapshot (the CUDA part only where CUDA exists)."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(cuda))


def has_state(data: object) -> bool:
    """Whether a data source can save and restore its position."""
    return callable(getattr(data, "state_dict", None)) and callable(
        getattr(data, "load_state_dict", None)
    )


def set_data_epoch(data: object, epoch_index: int) -> None:
    """Call ``set_epoch`` on the source, or on a DataLoader's (batch) sampler."""
    for owner in (data, getattr(data, "sampler", None), getattr(data, "batch_sampler", None)):
        set_epoch = getattr(owner, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch_index)
            return


def check_engine_state(state: Mapping[str, Any]) -> None:
    """Raise :class:`ResumeError` naming the first missing or mistyped entry."""
    if not isinstance(state, Mapping):
        raise ResumeError(
            f"engine state must be a mapping, got {type(state).__name__}; pass checkpoint['engine']"
        )
    version = state.get("version")
    if version != ENGINE_STATE_VERSION:
        raise ResumeError(
            f"engine state version {version!r} is not {ENGINE_STATE_VERSION}; "
            "pass the 'engine' entry written by engine.state_dict()"
        )
    for key in _INT_KEYS:
        value = state.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ResumeError(f"engine state '{key}' must be an int >= 0, got {value!r}")
    length = state.get("epoch_length")
    if length is not None and (not isinstance(length, int) or length < 1):
        raise ResumeError(
            f"engine state 'epoch_length' must be None or an int >= 1, got {length!r}"
        )
    if not isinstance(state.get("epoch_complete"), bool):
        raise ResumeError("engine state 'epoch_complete' must be a bool")
    if not isinstance(state.get("rng"), Mapping):
        raise ResumeError("engine state 'rng' must be a mapping of generator states")
    if not isinstance(state.get("callbacks", {}), Mapping):
        raise ResumeError("engine state 'callbacks' must be a mapping keyed by callback")
