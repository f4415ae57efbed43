"""The Metric base: declared count states that reset, merge and reduce across ranks.

A subclass declares each state once with :meth:`Metric.add_state` (a tensor and how ranks
combine it); ``reset``, ``merge``, ``all_reduce``, ``state_dict`` and moving to the device
of the incoming data then follow from the declaration. Its ``update`` hands one batch's
statistics from the functional ``_<name>_update`` to ``_accumulate``; its ``compute`` reads
the states through ``_<name>_compute``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from legoml.metrics.errors import MetricStateError

__all__ = ["Metric", "Reduction"]

Reduction = Literal["sum", "max"]
M = TypeVar("M", bound="Metric")


class Metric(ABC):
    """update/compute/reset metric whose state is a few declared tensors.

    ``update(predictions, targets, mask=None)`` accumulates (``mask``: bool N, True = count
    the sample, e.g. a loader's ``valid_mask()``), ``compute()`` reads the result,
    ``merge(other)`` adds another metric's counts, ``all_reduce()`` sums counts across
    ``torch.distributed`` ranks in place (a no-op when not initialized or with one rank).
    States follow the device of the data passed to ``update``.
    """

    name: str = "metric"

    def __init__(self) -> None:
        self._defaults: dict[str, Tensor] = {}
        self._reductions: dict[str, Reduction] = {}
        self._growable: set[str] = set()
        self._states: dict[str, Tensor] = {}
        self._reduced = False

    # -- declaration -------------------------------------------------------------------
    def add_state(
        self, name: str, default: Tensor, reduce: Reduction = "sum", growable: bool = False
    ) -> None:
        """Declare a state: its reset value, how ranks combine it, whether its shape may grow."""
        self._defaults[name] = default.detach().clone()
        self._reductions[name] = reduce
        if growable:
            self._growable.add(name)
        self._states[name] = default.detach().clone()

    def config(self) -> dict[str, Any]:
        """Settings that must agree for two metrics to merge (and that ``repr`` shows)."""
        return {}

    @property
    def device(self) -> torch.device:
        first = next(iter(self._states.values()), None)
        return first.device if first is not None else torch.device("cpu")

    # -- the contract ------------------------------------------------------------------
    @abstractmethod
    def update(self, predictions: Tensor, targets: Tensor, mask: Tensor | None = None) -> None:
        """Accumulate one batch."""

    @abstractmethod
    def compute(self) -> Any:
        """The result over everything accumulated since the last reset."""

    def reset(self) -> None:
        device = self.device
        self._states = {name: d.clone().to(device) for name, d in self._defaults.items()}
        self._reduced = False

    def merge(self: M, other: M) -> M:
        """Add ``other``'s counts to this metric (same type and settings); returns self."""
        if type(other) is not type(self) or other.config() != self.config():
            raise MetricStateError(
                f"cannot merge {other!r} into {self!r}: merge metrics of one type and settings"
            )
        for name, value in other._states.items():
            self._combine(name, value.to(self._states[name].device))
        self._reduced = False
        return self

    def all_reduce(self, group: Any = None) -> None:
        """Combine states across ranks in place (sum, or max where declared).

        Call it once per epoch on every rank before ``compute()``; repeated calls without an
        update in between are no-ops, so the counts are never added twice.
        """
        if not (dist.is_available() and dist.is_initialized()):
            return
        if dist.get_world_size(group) == 1 or self._reduced:
            return
        self._align_across_ranks(group)
        for name, value in self._states.items():
            op = dist.ReduceOp.MAX if self._reductions[name] == "max" else dist.ReduceOp.SUM
            value = value.contiguous()
            dist.all_reduce(value, op=op, group=group)
            self._states[name] = value
        self._reduced = True

    # -- persistence -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Tensor]:
        """The count states as CPU tensors (safe for ``torch.load(weights_only=True)``)."""
        return {name: value.detach().cpu().clone() for name, value in self._states.items()}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        missing = sorted(set(self._defaults) - set(state))
        if missing:
            raise MetricStateError(f"{type(self).__name__} state lacks {', '.join(missing)}")
        device = self.device
        loaded: dict[str, Tensor] = {}
        for name, default in self._defaults.items():
            value = state[name]
            same = isinstance(value, Tensor) and (
                value.shape == default.shape
                or (name in self._growable and value.ndim == default.ndim)
            )
            if not same:
                raise MetricStateError(
                    f"{type(self).__name__} state {name!r} must be a tensor shaped like "
                    f"{tuple(default.shape)}, got {getattr(value, 'shape', type(value).__name__)}"
                )
            loaded[name] = value.to(device=device, dtype=default.dtype).clone()
        self._states = loaded
        self._reduced = False

    def to(self: M, device: torch.device | str) -> M:
        self._states = {name: value.to(device) for name, value in self._states.items()}
        return self

    # -- helpers for subclasses --------------------------------------------------------
    def _accumulate(self, **values: Tensor) -> None:
        """Combine one batch's statistics (from its ``_<name>_update``) into the declared
        states, the way ranks combine them (sum, or max where declared).

        States follow the device of the statistics (that of the batch's predictions); new
        counts make the state unreduced again.
        """
        for name, value in values.items():
            if value.device != self.device:
                self.to(value.device)
            self._combine(name, value)
        self._reduced = False

    def _combine(self, name: str, value: Tensor) -> None:
        """state = state + value (or max); a growable state and ``value`` are first
        zero-padded to their larger shape."""
        mine = self._states[name]
        if name in self._growable:
            shape = _max_shape(mine.shape, value.shape)
            mine, value = _pad_to(mine, shape), _pad_to(value, shape)
        if self._reductions[name] == "max":
            self._states[name] = torch.maximum(mine, value)
        else:
            self._states[name] = mine + value

    def _align_across_ranks(self, group: Any) -> None:
        for name in sorted(self._growable):
            sizes = torch.tensor(self._states[name].shape, device=self.device)
            dist.all_reduce(sizes, op=dist.ReduceOp.MAX, group=group)
            self._states[name] = _pad_to(self._states[name], torch.Size(sizes.tolist()))

    def __repr__(self) -> str:
        settings = ", ".join(f"{key}={value!r}" for key, value in self.config().items())
        return f"{type(self).__name__}({settings})"


def _max_shape(a: torch.Size, b: torch.Size) -> torch.Size:
    return torch.Size(max(x, y) for x, y in zip(a, b, strict=True))


def _pad_to(value: Tensor, shape: torch.Size) -> Tensor:
    """Zero-pad ``value`` at the end of each axis up to ``shape``."""
    if value.shape == shape:
        return value
    out = value.new_zeros(shape)
    out[tuple(slice(0, n) for n in value.shape)] = value
    return out
