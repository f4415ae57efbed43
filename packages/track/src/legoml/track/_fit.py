"""Find a model state_dict inside a checkpoint and check that it fits a model, key by key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from legoml.track.errors import CheckpointError

__all__ = ["fit_state_dict", "model_state_dict"]

_DEFAULT_KEYS = ("model", "context.model", "state_dict")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile
_SHOWN = 5


def _lookup(data: Mapping[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _is_state_dict(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and bool(value)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
    )


def model_state_dict(data: Mapping[str, Any], key: str | None, source: str) -> dict[str, Any]:
    """The model weights in ``data``: under ``key``, a default key, or ``data`` itself."""
    candidates = (key,) if key is not None else _DEFAULT_KEYS
    for candidate in candidates:
        found = _lookup(data, candidate)
        if _is_state_dict(found):
            return dict(found)
        if key is not None:
            what = "nothing" if found is None else f"a {type(found).__name__}"
            raise CheckpointError(
                f"checkpoint {source} has {what} under {key!r}, not a model state_dict; "
                f"top-level keys: {', '.join(map(str, data)) or '(none)'}"
            )
    if _is_state_dict(data):
        return dict(data)
    raise CheckpointError(
        f"checkpoint {source} holds no model state_dict (top-level keys: "
        f"{', '.join(map(str, data)) or '(none)'}); pass key='path.to.state_dict'"
    )


def _unwrap_prefixes(state: dict[str, Any], expected: set[str]) -> dict[str, Any]:
    """Strip or add a DDP/compile wrapper prefix when that is the only difference."""
    for prefix in _WRAPPER_PREFIXES:
        ours = all(k.startswith(prefix) for k in state)
        theirs = all(k.startswith(prefix) for k in expected)
        if ours and not theirs:
            state = {k[len(prefix) :]: v for k, v in state.items()}
        elif theirs and not ours:
            state = {prefix + k: v for k, v in state.items()}
    return state


def _listing(label: str, keys: list[str]) -> str:
    more = f" (+{len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
    return f"{label}: {', '.join(keys[:_SHOWN])}{more}"


def fit_state_dict(
    model: torch.nn.Module, state: dict[str, Any], source: str, *, strict: bool
) -> dict[str, Any]:
    """``state`` adjusted to ``model``'s key names; CheckpointError listing what does not fit."""
    expected = model.state_dict()
    if not expected:
        return state
    state = _unwrap_prefixes(state, set(expected))
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{name} checkpoint {tuple(state[name].shape)} vs model {tuple(tensor.shape)}"
        for name, tensor in expected.items()
        if name in state and tuple(state[name].shape) != tuple(tensor.shape)
    ]
    problems = []
    if strict and missing:
        problems.append(_listing("missing keys", missing))
    if strict and unexpected:
        problems.append(_listing("unexpected keys", unexpected))
    if mismatched:
        problems.append(_listing("shape mismatch", mismatched))
    if problems:
        hint = "; use the model the checkpoint was trained with" + (
            " or strict=False to skip missing/unexpected keys" if not mismatched else ""
        )
        raise CheckpointError(
            f"checkpoint {source} does not fit {type(model).__name__}: "
            + "; ".join(problems)
            + hint
        )
    return state
