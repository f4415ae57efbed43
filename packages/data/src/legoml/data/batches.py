"""Batch utilities: moving nested batches, collating, adapting torch loaders.

``normalize_images`` lives in ``legoml.data.normalize`` and is re-exported here.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor
from torch.utils.data import DataLoader, default_collate

from legoml.data.normalize import Stats, normalize_images

__all__ = [
    "EpochLoader",
    "collate_images",
    "move_to_device",
    "normalize_images",
]

T = TypeVar("T")


def move_to_device(batch: T, device: torch.device | str, non_blocking: bool | None = None) -> T:
    """Deprecated: use ``legoml.core.device.move_to_device``, LegoML's one batch mover (the
    engine's steps already move batches). Kept, with a warning, for one release; legoml-data
    cannot import legoml-core, so this copy stays until then.
    """
    warnings.warn(
        "legoml.data.move_to_device is deprecated and will be removed in the next release; "
        "use legoml.core.device.move_to_device",
        DeprecationWarning,
        stacklevel=2,
    )
    target = torch.device(device)
    return _move(batch, target, non_blocking)  # type: ignore[no-any-return]


def _move(obj: Any, device: torch.device, non_blocking: bool | None) -> Any:
    # EpochLoader(device=...) moves batches itself; legoml-data may not import legoml-core,
    # so this is a deliberate private twin of legoml.core.device's mover.
    if isinstance(obj, Tensor):
        blocking = obj.is_pinned() if non_blocking is None else non_blocking
        return obj.to(device, non_blocking=blocking)
    if isinstance(obj, Mapping):
        moved = {key: _move(value, device, non_blocking) for key, value in obj.items()}
        factory: Any = type(obj)
        try:
            return factory(moved)
        except TypeError:  # a mapping type that cannot be built from a dict
            return moved
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(_move(value, device, non_blocking) for value in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_move(value, device, non_blocking) for value in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {
            field.name: _move(getattr(obj, field.name), device, non_blocking)
            for field in dataclasses.fields(obj)
            if field.init
        }
        return dataclasses.replace(obj, **changes)
    return obj


def collate_images(
    samples: Sequence[tuple[Tensor, Any]], mean: Stats = 0.0, std: Stats = 1.0
) -> tuple[Tensor, Tensor]:
    """``collate_fn`` for a torch ``DataLoader`` over (uint8 image, label) samples.

    Stacks with ``default_collate`` and normalizes the whole batch at once, so a plain
    ``DataLoader(TensorDataset(images, labels), collate_fn=collate_images)`` yields what
    ``BatchLoader`` with the same ``mean``/``std`` yields (float32 N×C×H×W, int64 labels);
    bind them with ``functools.partial(collate_images, mean=..., std=...)``.
    """
    images, labels = default_collate(list(samples))
    return normalize_images(images, mean, std), torch.as_tensor(labels, dtype=torch.int64)


class EpochLoader:
    """Wrap any torch ``DataLoader`` for the Engine: ``set_epoch`` reaches its sampler.

    A ``DistributedSampler`` (or any sampler with ``set_epoch``) only reshuffles when told the
    epoch; the Engine tells data sources that have ``set_epoch``, so wrapping forwards it.
    With ``device``, every batch is moved there (non-blocking when the loader pins memory).

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> loader = EpochLoader(DataLoader(TensorDataset(torch.arange(6)), batch_size=4))
        >>> loader.set_epoch(1)
        >>> [len(b[0]) for b in loader], len(loader)
        ([4, 2], 2)
    """

    def __init__(self, loader: DataLoader[Any], device: torch.device | str | None = None) -> None:
        self.loader = loader
        self.device = torch.device(device) if device is not None else None
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        samplers = [self.loader.sampler, getattr(self.loader.batch_sampler, "sampler", None)]
        for sampler in {id(s): s for s in samplers if s is not None}.values():
            set_epoch = getattr(sampler, "set_epoch", None)
            if callable(set_epoch):
                set_epoch(epoch)

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            yield batch if self.device is None else _move(batch, self.device, None)

    def __len__(self) -> int:
        return len(self.loader)
