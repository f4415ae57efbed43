"""Small private helpers shared by the built-in callbacks."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch

from legoml.core.values import to_scalar

__all__ = ["batch_size", "flatten_scalars", "is_finite_number", "snake_case"]

_Tensor = torch.Tensor
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def batch_size(batch: Any) -> int:
    """Leading dimension of the first tensor in a (nested) batch; 1 if there is none."""
    if type(batch) is tuple and batch:  # the common (inputs, targets) batch, read per step
        first = batch[0]
        if type(first) is _Tensor and first.dim():
            return len(first)
    while True:
        if isinstance(batch, torch.Tensor):
            shape = batch.shape
            return int(shape[0]) if shape else 1
        if isinstance(batch, (tuple, list)) and batch:
            batch = batch[0]
        elif isinstance(batch, Mapping) and batch:
            batch = next(iter(batch.values()))
        else:
            return 1


def flatten_scalars(name: str, value: Any, into: dict[str, float]) -> None:
    """Write scalar ``value`` (or a nested dict of them as ``name/key``) into ``into``."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            flatten_scalars(f"{name}/{key}", item, into)
        return
    scalar = to_scalar(value)
    if scalar is not None:
        into[name] = scalar


def snake_case(name: str) -> str:
    """``MultiClassAccuracy`` -> ``multi_class_accuracy``."""
    return _CAMEL.sub("_", name).lower()


def is_finite_number(value: float) -> bool:
    """math.isfinite, spelled once."""
    return math.isfinite(value)
