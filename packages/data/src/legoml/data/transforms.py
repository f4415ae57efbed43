"""Batched augmentations: one call transforms a whole N×C×H×W float batch, no per-sample loop.

A transform is any callable ``transform(images, generator)``; the loader passes a generator
seeded from (seed, epoch, rank, batch index), so an epoch (or a resumed part of it) is
bit-identical however often it is replayed. Images arrive as float32 in [0, 1] (before
normalization), so a fill value of 0 is the background.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

from legoml.data.errors import DataConfigError

__all__ = ["BatchTransform", "Compose", "Lambda", "RandomAffine", "RandomShift"]


@runtime_checkable
class BatchTransform(Protocol):
    """What ``BatchLoader(transform=...)`` calls on every N×C×H×W float batch."""

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor: ...


def _uniform(
    count: int, low: float, high: float, like: Tensor, gen: torch.Generator | None
) -> Tensor:
    draw = torch.rand(count, generator=gen, device=like.device, dtype=like.dtype)
    return draw * (high - low) + low


def _check_batch(images: Tensor, who: str) -> None:
    if images.ndim != 4:
        raise DataConfigError(f"{who} expects an N×C×H×W batch, got shape {tuple(images.shape)}")


class RandomShift:
    """Shift each image by its own random whole-pixel offset, filling the border with ``fill``.

    Example:
        >>> import torch
        >>> batch = torch.rand(8, 1, 28, 28)
        >>> out = RandomShift(max_shift=2)(batch, torch.Generator().manual_seed(0))
        >>> out.shape
        torch.Size([8, 1, 28, 28])
    """

    def __init__(self, max_shift: int = 2, fill: float = 0.0) -> None:
        if max_shift < 0:
            raise DataConfigError(f"RandomShift max_shift must be >= 0, got {max_shift}")
        self.max_shift = max_shift
        self.fill = fill

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        _check_batch(images, "RandomShift")
        m = self.max_shift
        if m == 0 or images.shape[0] == 0:
            return images
        n, c, h, w = images.shape
        shifts = torch.randint(-m, m + 1, (2, n), generator=generator, device=images.device)
        padded = F.pad(images, (m, m, m, m), value=self.fill)
        # out[y, x] = padded[y + m - dy, x + m - dx]: one gather over the flattened planes.
        rows = torch.arange(h, device=images.device) + (m - shifts[0])[:, None]
        cols = torch.arange(w, device=images.device) + (m - shifts[1])[:, None]
        flat = rows[:, :, None] * (w + 2 * m) + cols[:, None, :]
        index = flat.reshape(n, 1, h * w).expand(n, c, h * w)
        return padded.reshape(n, c, -1).gather(2, index).reshape(n, c, h, w)

    def __repr__(self) -> str:
        return f"RandomShift(max_shift={self.max_shift}, fill={self.fill})"


class RandomAffine:
    """Random rotation, translation and scale per image (bilinear, zero fill), batched.

    ``degrees`` bounds the rotation, ``translate`` the shift as a fraction of width/height,
    ``scale`` the zoom range. Any N×C×H×W size: rotations stay rotations in pixels when
    H != W, and every channel of an image gets the same motion.

    Example:
        >>> import torch
        >>> aug = RandomAffine(degrees=10.0, translate=(0.1, 0.1), scale=(0.9, 1.1))
        >>> aug(torch.rand(4, 1, 28, 28), torch.Generator().manual_seed(0)).shape
        torch.Size([4, 1, 28, 28])
    """

    def __init__(
        self,
        degrees: float = 10.0,
        translate: tuple[float, float] = (0.1, 0.1),
        scale: tuple[float, float] = (0.9, 1.1),
    ) -> None:
        if degrees < 0:
            raise DataConfigError(f"RandomAffine degrees must be >= 0, got {degrees}")
        if min(translate) < 0 or max(translate) > 1:
            raise DataConfigError(f"RandomAffine translate must lie in [0, 1], got {translate}")
        if not 0 < scale[0] <= scale[1]:
            raise DataConfigError(
                f"RandomAffine scale must be (low, high), 0 < low <= high, got {scale}"
            )
        self.degrees = degrees
        self.translate = translate
        self.scale = scale

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        _check_batch(images, "RandomAffine")
        if not images.is_floating_point():
            raise DataConfigError("RandomAffine needs a float batch; convert uint8 images first")
        n = images.shape[0]
        if n == 0:
            return images
        radians = math.radians(self.degrees)
        angle = _uniform(n, -radians, radians, images, generator)
        zoom = _uniform(n, self.scale[0], self.scale[1], images, generator)
        # Normalized coordinates span [-1, 1], so a shift of a fraction f is 2f.
        tx = _uniform(n, -2 * self.translate[0], 2 * self.translate[0], images, generator)
        ty = _uniform(n, -2 * self.translate[1], 2 * self.translate[1], images, generator)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        # Normalized coordinates scale x by 2/W and y by 2/H: the off-diagonal terms carry
        # the aspect ratio so a rotation is one in pixels too (x1.0 for square images).
        height, width = images.shape[-2:]
        sin_x, sin_y = sin * (height / width), sin * (width / height)
        # theta maps output coordinates to input ones: the inverse of zoom·rotate then shift.
        theta = torch.stack(
            [
                torch.stack([cos, sin_x, -(cos * tx + sin_x * ty)], dim=1),
                torch.stack([-sin_y, cos, sin_y * tx - cos * ty], dim=1),
            ],
            dim=1,
        )
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        return F.grid_sample(
            images, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )

    def __repr__(self) -> str:
        return (
            f"RandomAffine(degrees={self.degrees}, translate={self.translate}, scale={self.scale})"
        )


class Compose:
    """Apply batch transforms in order, all drawing from the loader's generator.

    Example:
        >>> import torch
        >>> aug = Compose(RandomShift(1), RandomAffine(degrees=5.0))
        >>> aug(torch.rand(2, 1, 28, 28), torch.Generator().manual_seed(0)).shape
        torch.Size([2, 1, 28, 28])
    """

    def __init__(self, *transforms: BatchTransform) -> None:
        self.transforms = transforms

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        for transform in self.transforms:
            images = transform(images, generator)
        return images

    def __repr__(self) -> str:
        return f"Compose({', '.join(repr(t) for t in self.transforms)})"


class Lambda:
    """Wrap a one-argument batch function, e.g. a ``torchvision.transforms.v2`` transform.

    Such functions draw from torch's global RNG; ``Lambda`` runs them with that RNG forked and
    seeded from the loader's generator, so their draws are reproducible too (the global RNG
    state outside is left untouched). Note that torchvision v2 draws one set of parameters per
    call, i.e. per batch, not per image.

    Example:
        >>> import torch
        >>> flip = Lambda(lambda x: x.flip(-1))
        >>> flip(torch.arange(4.0).reshape(1, 1, 2, 2))[0, 0, 0].tolist()
        [1.0, 0.0]
    """

    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        self.fn = fn

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if generator is None:
            return self.fn(images)
        devices = [images.device] if images.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            seed = generator.initial_seed()
            torch.manual_seed(seed)
            return self.fn(images)

    def __repr__(self) -> str:
        return f"Lambda({self.fn!r})"
