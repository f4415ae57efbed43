"""The doors between legoml-core and other packages: small structural protocols.

legoml-core imports no other LegoML package; metrics, trackers and checkpoint writers
meet these protocols structurally (``mypy`` proves the fit where they are wired).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

__all__ = ["CheckpointSaver", "MetricLike", "ScalarSink", "StatefulLike"]


@runtime_checkable
class MetricLike(Protocol):
    """An update/compute/reset metric (``legoml.metrics.Metric`` meets it).

    ``compute()`` returns a scalar Tensor/float, or a dict of them (flattened as
    ``<name>/<key>``). An optional ``all_reduce()`` sums count states across ranks in
    place; :class:`~legoml.core.callbacks.MetricsCallback` calls it under DDP.
    """

    def update(self, predictions: Tensor, targets: Tensor, /) -> None: ...

    def compute(self) -> Any: ...

    def reset(self) -> None: ...


class CheckpointSaver(Protocol):
    """Writes ``state`` to ``path`` atomically (``legoml.track.checkpoints.save_checkpoint``)."""

    def __call__(self, path: Path, state: Mapping[str, Any], /) -> None: ...


@runtime_checkable
class ScalarSink(Protocol):
    """Receives scalar logs (a ``legoml.track`` run meets it)."""

    def log_scalars(
        self, values: Mapping[str, float], step: int, epoch: int | None = None
    ) -> None: ...


@runtime_checkable
class StatefulLike(Protocol):
    """An object whose state survives a restart (data sources, callbacks)."""

    def state_dict(self) -> Mapping[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any], /) -> None: ...
