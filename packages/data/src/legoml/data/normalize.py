"""Pixel normalization ``(x / 255 - mean) / std``, scalar or per channel, and pixel statistics.

``mean``/``std`` describe pixels scaled to [0, 1]. One value applies to every channel; a
sequence gives one value per channel. The scale and shift are precomputed once (a Python
float, or a C×1×1 tensor when channels differ), so a batch costs one conversion and two
in-place ops either way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real

import torch
from torch import Tensor

from legoml.data.errors import DataConfigError

__all__ = ["Normalizer", "Stats", "channel_stats", "normalize_images", "pixel_stats"]

Stats = float | Sequence[float] | Tensor
"""One value for every channel, or one value per channel (a sequence or 1-d tensor)."""


def _as_tuple(value: object, name: str, who: str) -> tuple[float, ...]:
    if isinstance(value, Tensor):
        value = value.tolist()
    items = [value] if isinstance(value, Real) else value
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise DataConfigError(
            f"{who} {name} must be a number or a sequence of numbers (one per channel), "
            f"got {type(value).__name__}"
        )
    if not all(isinstance(v, Real) and not isinstance(v, bool) for v in items):
        raise DataConfigError(f"{who} {name} must hold numbers only, got {list(items)!r}")
    values = tuple(float(v) for v in items)
    if not all(math.isfinite(v) for v in values):
        raise DataConfigError(f"{who} {name} must be finite, got {values}")
    return values


def channel_stats(
    mean: Stats, std: Stats, channels: int, who: str
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Validated ``(mean, std)`` as tuples of length 1 or ``channels``; ``who`` names the caller."""
    means, stds = _as_tuple(mean, "mean", who), _as_tuple(std, "std", who)
    for name, values in (("mean", means), ("std", stds)):
        if len(values) not in (1, channels):
            raise DataConfigError(
                f"{who} {name} has {len(values)} values for {channels}-channel images: "
                f"pass one value or {channels}"
            )
    if min(stds) <= 0:
        raise DataConfigError(f"{who} std must be > 0, got {stds}")
    return means, stds


class Normalizer:
    """uint8 (or [0, 1] float) N×C×H×W batches -> normalized float32, precomputed per channel.

    Equal values across channels take the scalar path (Python floats, as plain MNIST always
    did); otherwise ``scale``/``shift`` are C×1×1 float32 tensors on ``device``.
    """

    def __init__(
        self,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        device: torch.device | str | None = None,
    ) -> None:
        self.mean: float | Tensor
        self.std: float | Tensor
        self.scale: float | Tensor
        self.shift: float | Tensor
        if len(set(mean)) == 1 and len(set(std)) == 1:
            m, s = mean[0], std[0]
            self.mean, self.std, self.scale, self.shift = m, s, 1.0 / (255.0 * s), m / s
            return
        channels = max(len(mean), len(std))
        m64 = torch.tensor(mean, dtype=torch.float64).expand(channels)
        s64 = torch.tensor(std, dtype=torch.float64).expand(channels)

        def column(values: Tensor) -> Tensor:
            return values.to(device=device, dtype=torch.float32).view(channels, 1, 1)

        self.mean, self.std = column(m64), column(s64)
        self.scale, self.shift = column(1.0 / (255.0 * s64)), column(m64 / s64)

    def __call__(self, images: Tensor) -> Tensor:
        """uint8 pixels -> ``(x / 255 - mean) / std``: one conversion, two in-place ops."""
        return images.to(torch.float32).mul_(self.scale).sub_(self.shift)

    def from_unit(self, pixels: Tensor) -> Tensor:
        """Float pixels already in [0, 1] (e.g. after augmentation) -> normalized (a new tensor)."""
        return torch.sub(pixels, self.mean).div_(self.std)


def normalize_images(images: Tensor, mean: Stats = 0.0, std: Stats = 1.0) -> Tensor:
    """uint8 pixels -> float32 ``(x / 255 - mean) / std``, per channel when given a sequence.

    A 3-d N×H×W batch gains the channel axis (N×1×H×W). The defaults only scale to [0, 1].

    Example:
        >>> import torch
        >>> images = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
        >>> normalize_images(images, mean=(0.5, 0.0, 0.0), std=(0.5, 1.0, 2.0))[0, :, 0, 0]
        tensor([1.0000, 1.0000, 0.5000])
    """
    if images.ndim == 3:
        images = images.unsqueeze(1)
    if images.ndim != 4:
        raise DataConfigError(
            f"normalize_images expects N×H×W or N×C×H×W images, got shape {tuple(images.shape)}"
        )
    means, stds = channel_stats(mean, std, int(images.shape[1]), "normalize_images")
    return Normalizer(means, stds, images.device)(images)


def pixel_stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) of uint8 N×H×W or N×C×H×W pixels scaled to [0, 1].

    What a new dataset's ``IdxDataset(mean=..., std=...)`` should hold (of its train split).
    Computed from a 256-bin histogram per channel: exact, and no float copy of the images.

    Example:
        >>> import torch
        >>> images = torch.tensor([[[0, 255]], [[255, 0]]], dtype=torch.uint8)
        >>> pixel_stats(images)
        ((0.5,), (0.5,))
    """
    if images.ndim == 3:
        images = images.unsqueeze(1)
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[0] == 0:
        raise DataConfigError(
            "pixel_stats expects a non-empty uint8 N×H×W or N×C×H×W batch, got "
            f"{images.dtype} {tuple(images.shape)}"
        )
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = torch.bincount(images[:, channel].flatten(), minlength=256).cpu()
        weights = counts.to(torch.float64) / counts.sum()
        mean = float((weights * levels).sum())
        means.append(mean)
        stds.append(math.sqrt(max(0.0, float((weights * (levels - mean) ** 2).sum()))))
    return tuple(means), tuple(stds)
