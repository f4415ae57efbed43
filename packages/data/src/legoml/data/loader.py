"""BatchLoader: a whole split held as uint8 in memory, served as normalized float batches.

Each batch is one ``index_select`` on the uint8 tensor plus one float conversion (and, when
asked, one batched augmentation call): no per-sample Python work, no worker processes.
Any uint8 N×C×H×W split works (N×H×W is one channel). Normalization is ``(x / 255 - mean)
/ std`` with a scalar or per-channel mean/std; the defaults (0, 1) only scale to [0, 1], and
``from_split`` uses the split's own statistics (MNIST's for ``load_mnist``).

Sharding (``rank``/``world_size``) interleaves the epoch's order like ``DistributedSampler``:
rank ``r`` takes positions ``r, r + W, r + 2W, ...``, and every rank yields the same number
of batches so collective ops stay in step:

- ``drop_last=False`` (default): the order is padded by repeating its first positions until
  it divides evenly, so each rank holds ``ceil(N / W)`` samples and at most ONE duplicate,
  always the last sample of its last batch. ``valid_mask()`` tells real samples from that
  duplicate (pass it as ``mask=`` to legoml-metrics); ``num_padded`` counts them.
- ``drop_last=True``: the order is truncated to ``W * (N // W)`` and incomplete batches are
  dropped: no duplicates, some samples skipped (different ones each epoch when shuffled).
- ``even_shards=False`` (evaluation): no padding, no truncation; ranks may differ by one
  batch, so use it only where no collective op runs per step.

Resume: ``state_dict()`` holds (epoch, position); after ``load_state_dict`` the next
``iter()`` yields exactly the remaining batches of that epoch, bit-identical (the order
derives from (seed, epoch), augmentation from (seed, epoch, rank, batch index)).

Global batches: with per-rank ``batch_size = B / W``, step ``k`` of an epoch covers exactly
the positions ``[k*B, (k+1)*B)`` of the epoch's order across the ``W`` ranks (the same
examples a single process with ``batch_size=B`` takes at step ``k``), and an epoch has the
same number of steps. So ``position`` counts global batches, and a state saved with ``W``
ranks loads into ``W'`` ranks when ``batch_size * world_size`` is unchanged (only the padded
tail and the per-rank augmentation draws differ).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from legoml.data._seeding import AUGMENT, SHUFFLE, derive_seed
from legoml.data.errors import DataConfigError
from legoml.data.normalize import Normalizer, Stats, channel_stats
from legoml.data.splits import Split
from legoml.data.transforms import BatchTransform

__all__ = ["BatchLoader"]

_CHECKED_KEYS = ("seed", "num_examples", "drop_last", "shuffle")


class BatchLoader:
    """Fast deterministic in-memory batches: ``(float32 N×C×H×W normalized, int64 N)``.

    Iterating runs the current epoch; after a full pass the epoch advances by itself, and
    ``set_epoch(e)`` (the Engine calls it) selects an epoch explicitly. One live iterator at
    a time: the loader's position is shared state. ``mean``/``std`` take one value or one
    per channel (of pixels in [0, 1]); ``from_split`` takes them from the split.

    Example:
        >>> import torch
        >>> images = torch.randint(0, 256, (10, 28, 28), dtype=torch.uint8)
        >>> loader = BatchLoader(images, torch.arange(10), batch_size=4, seed=1)
        >>> x, y = next(iter(loader))
        >>> x.shape, x.dtype, y.dtype, len(loader), float(x.min()) >= 0.0
        (torch.Size([4, 1, 28, 28]), torch.float32, torch.int64, 3, True)
        >>> rgb = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
        >>> loader = BatchLoader(rgb, torch.arange(6), 4, mean=(0.5, 0.4, 0.3), std=0.25)
        >>> next(iter(loader))[0].shape
        torch.Size([4, 3, 32, 32])
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        transform: BatchTransform | None = None,
        device: torch.device | str | None = None,
        rank: int = 0,
        world_size: int = 1,
        mean: Stats = 0.0,
        std: Stats = 1.0,
        even_shards: bool = True,
    ) -> None:
        _check_arguments(images, labels, batch_size, rank, world_size)
        stored = images.unsqueeze(1) if images.ndim == 3 else images
        self.mean, self.std = channel_stats(mean, std, int(stored.shape[1]), "BatchLoader")
        self.device = torch.device(device) if device is not None else images.device
        self.images = stored.to(self.device).contiguous()
        self.labels = labels.to(device=self.device, dtype=torch.int64)
        self._sample_values = int(self.images[0].numel())
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.transform = transform
        self.rank = rank
        self.world_size = world_size
        self._normalize = Normalizer(self.mean, self.std, self.device)
        self.even_shards = even_shards
        self._slots = _rank_slots(len(self.labels), world_size, rank, drop_last, even_shards)
        self._len = self._slots // batch_size if drop_last else math.ceil(self._slots / batch_size)
        if self._len == 0 and rank < len(self.labels):
            raise DataConfigError(
                f"BatchLoader yields no batch: {len(self.labels)} examples over {world_size} "
                f"rank(s) fill no batch of {batch_size}; lower batch_size or set drop_last=False"
            )
        self._epoch = 0
        self._position = 0
        self._restored_epoch: int | None = None
        self._generator: torch.Generator | None = None

    @classmethod
    def from_split(cls, split: Split, batch_size: int, **kwargs: Any) -> BatchLoader:
        """A loader over ``split``, normalized with ``split.mean``/``split.std`` unless
        ``mean=``/``std=`` are given; other keyword arguments as ``__init__``.

        So ``BatchLoader.from_split(load_mnist("train"), 128)`` uses MNIST's statistics.
        """
        kwargs.setdefault("mean", split.mean)
        kwargs.setdefault("std", split.std)
        return cls(split.images, split.labels, batch_size, **kwargs)

    # -- sizes -------------------------------------------------------------------------
    def __len__(self) -> int:
        """Batches per epoch on this rank (the same on every rank when ``even_shards``)."""
        return self._len

    @property
    def num_examples(self) -> int:
        """Examples in the whole split (all ranks)."""
        return int(self.labels.shape[0])

    @property
    def num_padded(self) -> int:
        """Duplicated (padding) samples this rank yields per epoch: 0 or 1."""
        used = min(self._len * self.batch_size, self._slots)
        last = self.rank + self.world_size * (used - 1)
        return int(used > 0 and last >= self.num_examples)

    @property
    def epoch(self) -> int:
        """The epoch (0-based) the next batch belongs to."""
        return self._epoch

    @property
    def position(self) -> int:
        """Batches of the current epoch already yielded."""
        return self._position

    # -- epochs and state --------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first batch, unless ``load_state_dict`` just restored it."""
        if epoch < 0:
            raise DataConfigError(f"BatchLoader.set_epoch needs epoch >= 0, got {epoch}")
        restored, self._restored_epoch = self._restored_epoch, None
        if restored is not None and epoch == restored:
            return
        self._epoch, self._position = epoch, 0

    def state_dict(self) -> dict[str, int | bool]:
        """Plain ints/bools (``torch.load(weights_only=True)``-safe): where the epoch stands."""
        return {
            "epoch": self._epoch,
            "position": self._position,
            "seed": self.seed,
            "num_examples": self.num_examples,
            "batch_size": self.batch_size,
            "world_size": self.world_size,
            "drop_last": self.drop_last,
            "shuffle": self.shuffle,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state``: the next ``iter()`` yields that epoch's unseen batches."""
        for key in ("epoch", "position"):
            if not isinstance(state.get(key), int) or state[key] < 0:
                raise DataConfigError(f"BatchLoader state needs a non-negative int {key!r}")
        for key in _CHECKED_KEYS:
            if key in state and state[key] != getattr(self, key):
                raise DataConfigError(
                    f"BatchLoader state has {key}={state[key]!r} but this loader has "
                    f"{getattr(self, key)!r}: build the loader as it was when the state was saved"
                )
        if "batch_size" in state or "world_size" in state:
            size, world = state.get("batch_size"), state.get("world_size", self.world_size)
            size = self.batch_size if size is None else size
            if size * world != self.batch_size * self.world_size:
                raise DataConfigError(
                    f"BatchLoader state has batch_size={size} x world_size={world} (global "
                    f"batch {size * world}) but this loader has batch_size={self.batch_size} x "
                    f"world_size={self.world_size} (global batch "
                    f"{self.batch_size * self.world_size}): keep the global batch when resuming"
                )
        if state["position"] > self._len:
            raise DataConfigError(
                f"BatchLoader state position {state['position']} exceeds the {self._len} "
                "batches of an epoch"
            )
        self._epoch, self._position = int(state["epoch"]), int(state["position"])
        self._restored_epoch = self._epoch

    # -- batches -----------------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if self._position > 0 and self._position >= self._len:
            self._epoch, self._position = self._epoch + 1, 0  # the last pass ran to the end
        self._restored_epoch = None
        return self._run(self._epoch, self._position)

    def _run(self, epoch: int, start: int) -> Iterator[tuple[Tensor, Tensor]]:
        indices = self.epoch_indices(epoch)
        size = self.batch_size
        for index in range(start, self._len):
            batch = self._batch(indices[index * size : (index + 1) * size], epoch, index)
            self._position = index + 1
            yield batch
        if self._epoch == epoch and self._position >= self._len:
            self._epoch, self._position = epoch + 1, 0

    def epoch_indices(self, epoch: int) -> Tensor:
        """Example indices this rank visits in ``epoch``, in order (padding included)."""
        n = self.num_examples
        if self.shuffle:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, SHUFFLE, epoch))
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        used = min(self._len * self.batch_size, self._slots)
        positions = torch.arange(used) * self.world_size + self.rank
        return order[positions % n].to(self.device)

    def valid_mask(self, batch_index: int | None = None) -> Tensor:
        """True for real samples, False for padding duplicates, in batch ``batch_index``.

        Defaults to the batch yielded last; pass it as ``mask=`` to legoml-metrics.
        """
        index = self._position - 1 if batch_index is None else batch_index
        if not 0 <= index < self._len:
            raise DataConfigError(f"batch index {index} out of range for {self._len} batches")
        used = min(self._len * self.batch_size, self._slots)
        slots = torch.arange(index * self.batch_size, min((index + 1) * self.batch_size, used))
        return (slots * self.world_size + self.rank < self.num_examples).to(self.device)

    def _batch(self, indices: Tensor, epoch: int, index: int) -> tuple[Tensor, Tensor]:
        with _small_ops(self.device, indices.numel() * self._sample_values):
            images = self.images.index_select(0, indices)
            labels = self.labels.index_select(0, indices)
            if self.transform is None:
                return self._normalize(images), labels
            pixels = images.to(torch.float32).mul_(1.0 / 255.0)
            pixels = self.transform(pixels, self._augment_generator(epoch, index))
            return self._normalize.from_unit(pixels), labels

    def _augment_generator(self, epoch: int, index: int) -> torch.Generator:
        if self._generator is None:
            self._generator = torch.Generator(device=self.device)
        seed = derive_seed(self.seed, AUGMENT, epoch, self.rank, index)
        return self._generator.manual_seed(seed)

    def __repr__(self) -> str:
        return (
            f"BatchLoader(num_examples={self.num_examples}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, seed={self.seed}, drop_last={self.drop_last}, "
            f"transform={self.transform!r}, device={str(self.device)!r}, rank={self.rank}, "
            f"world_size={self.world_size}, mean={self.mean}, std={self.std}, "
            f"epoch={self._epoch}, position={self._position})"
        )


_SMALL_BATCH = 1 << 20  # values per batch below which one CPU thread is the faster choice


@contextmanager
def _small_ops(device: torch.device, values: int) -> Iterator[None]:
    """Assemble a small CPU batch (gather, convert, augment) on one thread.

    An MNIST batch of 128 is ~100 K values: spreading such ops over the intra-op pool saves
    nothing, and when cores are shared every parallel region waits for a descheduled thread
    (measured 2-10x slower per batch on a busy 2-core machine). Large batches keep the pool.
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1 or values >= _SMALL_BATCH:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _rank_slots(n: int, world_size: int, rank: int, drop_last: bool, even: bool) -> int:
    """Sample slots rank ``rank`` walks through per epoch, before dropping a short batch."""
    if drop_last:
        return n // world_size
    if even:
        return math.ceil(n / world_size)
    return max(0, math.ceil((n - rank) / world_size))


def _check_arguments(
    images: Tensor, labels: Tensor, batch_size: int, rank: int, world_size: int
) -> None:
    if images.dtype != torch.uint8 or images.ndim not in (3, 4):
        raise DataConfigError(
            f"BatchLoader images must be uint8 N×H×W or N×C×H×W, got {images.dtype} "
            f"{tuple(images.shape)}"
        )
    if labels.ndim != 1 or labels.is_floating_point() or labels.is_complex():
        raise DataConfigError(
            f"BatchLoader labels must be a 1-d integer tensor, got {labels.dtype} {tuple(labels.shape)}"
        )
    if images.shape[0] != labels.shape[0]:
        raise DataConfigError(
            f"BatchLoader got {images.shape[0]} images but {labels.shape[0]} labels"
        )
    if images.shape[0] == 0:
        raise DataConfigError("BatchLoader got an empty split: pass at least one example")
    if batch_size < 1:
        raise DataConfigError(f"BatchLoader batch_size must be >= 1, got {batch_size}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise DataConfigError(
            f"BatchLoader needs 0 <= rank < world_size, got rank={rank}, world_size={world_size}"
        )
