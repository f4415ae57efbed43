"""Helpers for exact resume: RNG snapshots, data-source epochs and state-dict checks."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, cast

import structlog
import torch

from legoml.core.errors import ResumeError
from legoml.core.state import State
from legoml.core.values import require_int

__all__ = [
    "ENGINE_STATE_VERSION",
    "capture_rng",
    "check_engine_state",
    "has_state",
    "hold_position",
    "keyed_callbacks",
    "load_callback_states",
    "restore_rng",
    "resume_iterator",
    "set_data_epoch",
]

_log = structlog.get_logger("legoml.core.engine")

ENGINE_STATE_VERSION = 1

_cuda_initialized = cast(Callable[[], bool], torch.cuda.is_initialized)

_INT_KEYS = ("epoch", "step", "global_step")


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
        require_int(value, f"engine state '{key}'", minimum=0, error=ResumeError)
    if "max_epochs" not in state:
        raise ResumeError(
            "engine state has no 'max_epochs'; pass the state engine.state_dict() wrote"
        )
    max_epochs = state["max_epochs"]  # None: no epoch limit (a max_steps run)
    require_int(max_epochs, "engine state 'max_epochs'", minimum=0, optional=True, error=ResumeError)
    max_steps = state.get("max_steps")  # absent in states written before max_steps
    require_int(max_steps, "engine state 'max_steps'", optional=True, error=ResumeError)
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


def keyed_callbacks(callbacks: Sequence[object]) -> list[tuple[str, Any]]:
    """Stateful callbacks with their keys: ``state_key`` (default the class name), with
    ``#1``, ``#2``... appended to repeats, so keys stay stable across runs."""
    seen: Counter[str] = Counter()
    keyed = []
    for callback in callbacks:
        if not has_state(callback):
            continue
        key = str(getattr(callback, "state_key", type(callback).__name__))
        seen[key] += 1
        keyed.append((key if seen[key] == 1 else f"{key}#{seen[key] - 1}", callback))
    return keyed


def load_callback_states(callbacks: Sequence[object], states: Mapping[str, Any]) -> None:
    """Give each stateful callback its saved state; log the ones missing or left over."""
    keyed = keyed_callbacks(callbacks)
    for key, callback in keyed:
        if key in states:
            callback.load_state_dict(states[key])
        else:
            _log.warning("callback_state_missing", callback=key)
    unknown = set(states) - {key for key, _ in keyed}
    if unknown:
        _log.warning("callback_state_unused", callbacks=sorted(unknown))


def _load_data_state(data: Iterable[Any], saved: Mapping[str, Any]) -> bool:
    """Load the saved position into a source that has its own state; whether it did."""
    data_state = saved.get("data")
    if data_state is not None and has_state(data):
        data.load_state_dict(data_state)  # type: ignore[attr-defined]
        return True
    if data_state is not None:
        _log.warning("data_state_ignored", reason="data source has no load_state_dict")
    return False


def hold_position(
    data: Iterable[Any], state: State, saved: Mapping[str, Any]
) -> dict[str, Any] | None:
    """Put the source at the saved mid-epoch position without iterating it (for a resumed
    run that steps no further), and return the epoch-start RNG snapshot to keep."""
    set_data_epoch(data, state.epoch - 1)
    if _load_data_state(data, saved):
        return None
    epoch_rng = saved.get("epoch_rng")
    return dict(epoch_rng) if epoch_rng is not None else None


def resume_iterator(
    data: Iterable[Any], state: State, saved: Mapping[str, Any]
) -> tuple[Iterator[Any], dict[str, Any] | None]:
    """An iterator positioned after the ``state.step`` batches already seen this epoch,
    and the epoch-start RNG snapshot to keep for the next ``state_dict()``.

    A source with its own state loads it and yields only unseen batches; any other source
    is re-created under the epoch's starting RNG state and skipped forward.
    """
    if state.epoch_length is not None and state.step > state.epoch_length:
        raise ResumeError(
            f"resumed at step {state.step} of epoch {state.epoch} but the epoch now has "
            f"{state.epoch_length} steps; resume with the same data and batch size"
        )
    set_data_epoch(data, state.epoch - 1)
    if _load_data_state(data, saved):
        return (data if isinstance(data, Iterator) else iter(data)), None
    epoch_rng = saved.get("epoch_rng")
    if epoch_rng is not None:
        restore_rng(epoch_rng)
    snapshot = dict(epoch_rng) if epoch_rng is not None else capture_rng()
    iterator = data if isinstance(data, Iterator) else iter(data)
    for skipped in range(state.step):
        try:
            next(iterator)
        except StopIteration:
            raise ResumeError(
                f"data ran out after {skipped} batches while skipping to step {state.step} "
                f"of epoch {state.epoch}; resume with the same data"
            ) from None
    return iterator, snapshot
