"""Any map-style (image, label) dataset converted once into a uint8 ``Split``, cached on disk.

``from_dataset`` reads a ``torch.utils.data.Dataset`` (a torchvision ``MNIST``, ``CIFAR10``,
``ImageFolder``, a ``TensorDataset``, ...) through a torch ``DataLoader`` in batches, turns
every image (PIL image, uint8 or [0, 1] float tensor, numpy H×W×C array) into uint8 C×H×W,
and returns the whole split in memory with its per-channel statistics and class names, so
``BatchLoader.from_split`` serves it without per-sample Python work.

With ``cache_dir`` the result is stored once and reloaded on later runs: the cache key is
``legoml.data.fingerprint.dataset_key``, its file format (written atomically with a
SHA-256 header, rebuilt when any check fails) is ``legoml.data._dataset_cache``.

torchvision is never imported here: PIL images are read through their own buffer.
"""

from __future__ import annotations

import dataclasses
import operator
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from legoml.data._dataset_cache import cache_path, load_cache, write_cache
from legoml.data.errors import DataConfigError, DataError
from legoml.data.fingerprint import dataset_key
from legoml.data.normalize import pixel_stats
from legoml.data.splits import Split

__all__ = ["from_dataset"]

log = structlog.get_logger(__name__)

_MAX_NESTING = 6  # how far up Subset-style ``.dataset`` parents to look for class names
# PIL modes whose bands are 8 bits each, read as they are; others are converted or refused.
_PIL_8BIT_MODES = {"L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
_PIL_CONVERT = {"1": "L", "P": "RGB", "PA": "RGBA", "La": "LA", "RGBa": "RGBA"}


def from_dataset(
    dataset: Dataset[Any],
    *,
    classes: Sequence[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    name: str | None = None,
    batch_size: int = 256,
    num_workers: int = 0,
    refresh: bool = False,
) -> Split:
    """The (image, label) samples of ``dataset`` as one uint8 N×C×H×W ``Split``.

    Images may be PIL images (8-bit modes; "1" and "P" are converted), uint8 or integer
    tensors C×H×W / H×W in [0, 255], float tensors in [0, 1] (``ToTensor`` output, restored
    exactly), or numpy arrays H×W×C / H×W. Labels must be integers (class indices).
    ``classes`` defaults to ``dataset.classes``. With ``cache_dir``, the split is loaded
    from ``<cache_dir>/<name>-<key>.cache`` when that file is intact and written there
    otherwise; ``refresh=True`` rebuilds it. ``num_workers`` runs ``__getitem__`` (image
    decoding, transforms) in DataLoader worker processes.

    Example:
        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> images = torch.randint(0, 256, (6, 3, 4, 5), dtype=torch.uint8)
        >>> split = from_dataset(TensorDataset(images, torch.arange(6) % 2), classes=("a", "b"))
        >>> split.images.shape, bool(split.images.equal(images)), split.classes
        (torch.Size([6, 3, 4, 5]), True, ('a', 'b'))
    """
    _check_arguments(batch_size, num_workers)
    who = type(dataset).__name__
    try:
        size = len(dataset)  # type: ignore[arg-type]
    except TypeError as err:
        raise DataConfigError(
            f"from_dataset needs a map-style dataset with len(), got {who}: wrap an "
            "iterable dataset's samples in a list or a TensorDataset first"
        ) from err
    if size == 0:
        raise DataError(f"{who} is empty: from_dataset has nothing to convert")
    names = _class_names(dataset, classes)
    path: Path | None = None
    key = ""
    if cache_dir is not None:
        key = dataset_key(dataset, exclude=Path(cache_dir))
        path = cache_path(cache_dir, name or who, key)
        if not refresh:
            cached = load_cache(path, key, size)
            if cached is not None:
                _check_classes(cached.labels, names, who)
                log.info("dataset_cache_hit", dataset=who, path=str(path), examples=size)
                return dataclasses.replace(cached, classes=names)
    start = time.perf_counter()
    images, labels = _convert(dataset, size, batch_size, num_workers, who)
    _check_classes(labels, names, who)
    mean, std = pixel_stats(images)
    if min(std) == 0.0:  # a constant channel: normalizing only shifts it
        log.warning("dataset_constant_channel", dataset=who, std=std, using=1.0)
        std = tuple(s if s > 0.0 else 1.0 for s in std)
    split = Split(images, labels, mean=mean, std=std, classes=names)
    log.info(
        "dataset_converted",
        dataset=who,
        examples=size,
        image_shape=tuple(images.shape[1:]),
        seconds=round(time.perf_counter() - start, 3),
    )
    if path is not None:
        write_cache(path, key, split)
    return split


# -- conversion ------------------------------------------------------------------------


@dataclass
class _Batch:
    start: int
    images: Tensor
    labels: Tensor


@dataclass
class _Problem:
    """A bad sample found inside a DataLoader worker, raised as one line in the caller."""

    message: str


class _Indexed(Dataset[tuple[int, Any]]):
    """``(index, sample)`` so the collate function can name the sample it rejects."""

    def __init__(self, dataset: Dataset[Any], size: int) -> None:
        self.dataset = dataset
        self.size = size

    def __getitem__(self, index: int) -> tuple[int, Any]:
        return index, self.dataset[index]

    def __len__(self) -> int:
        return self.size


def _convert(
    dataset: Dataset[Any], size: int, batch_size: int, num_workers: int, who: str
) -> tuple[Tensor, Tensor]:
    loader = DataLoader(
        _Indexed(dataset, size),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
    )
    images: Tensor | None = None
    labels = torch.empty(size, dtype=torch.int64)
    filled = 0
    for batch in loader:
        if isinstance(batch, _Problem):
            raise DataError(f"{who} {batch.message}")
        if images is None:
            images = torch.empty((size, *batch.images.shape[1:]), dtype=torch.uint8)
        elif batch.images.shape[1:] != images.shape[1:]:
            raise DataError(
                _size_mismatch(who, batch.start, tuple(batch.images.shape[1:]), 0, images.shape[1:])
            )
        count = int(batch.labels.shape[0])
        images[batch.start : batch.start + count] = batch.images
        labels[batch.start : batch.start + count] = batch.labels
        filled += count
    if images is None or filled != size:
        raise DataError(f"{who} yielded {filled} samples but its len() is {size}: fix __len__")
    return images, labels


def _collate(samples: list[tuple[int, Any]]) -> _Batch | _Problem:
    """Samples -> one uint8 N×C×H×W batch and int64 labels, or the first problem found."""
    try:
        return _collate_checked(samples)
    except _SampleError as err:
        return _Problem(str(err))


class _SampleError(Exception):
    pass


def _collate_checked(samples: list[tuple[int, Any]]) -> _Batch:
    images: list[Tensor] = []
    labels: list[int] = []
    for index, sample in samples:
        if not isinstance(sample, (tuple, list)) or len(sample) != 2:
            raise _SampleError(
                f"sample {index} is a {type(sample).__name__}, not an (image, label) pair: "
                "from_dataset needs datasets that yield (image, label)"
            )
        image = _to_uint8_chw(sample[0], index)
        if images and image.shape != images[0].shape:
            first = samples[0][0]
            raise _SampleError(
                _size_mismatch("", index, tuple(image.shape), first, tuple(images[0].shape))
            )
        images.append(image)
        labels.append(_to_label(sample[1], index))
    return _Batch(samples[0][0], torch.stack(images), torch.tensor(labels, dtype=torch.int64))


def _size_mismatch(
    who: str, index: int, shape: tuple[int, ...], first: int, first_shape: Sequence[int]
) -> str:
    height, width = first_shape[-2], first_shape[-1]
    return (
        f"{who + ' ' if who else ''}image {index} is {_shape(shape)} (C×H×W) but image {first} "
        f"is {_shape(first_shape)}: all images must share one size and channel count; add "
        f"transforms.Resize(({height}, {width})) (and transforms.Grayscale or .convert('RGB') "
        "for mixed channels) to the dataset's transform"
    ).lstrip()


def _shape(shape: Sequence[int]) -> str:
    return "×".join(str(int(d)) for d in shape)


def _to_uint8_chw(image: Any, index: int) -> Tensor:
    if isinstance(image, Tensor):
        tensor = image.detach().cpu()
        if tensor.ndim == 2:
            tensor = tensor.unsqueeze(0)
        if tensor.ndim != 3:
            raise _SampleError(
                f"image {index} is a tensor of shape {tuple(image.shape)}: expected C×H×W or H×W"
            )
        return _pixels_to_uint8(tensor, index)
    module = type(image).__module__
    if module.startswith("PIL.") or module == "PIL":
        return _pil_to_uint8(image, index)
    if module.startswith("numpy") and hasattr(image, "ndim"):
        try:
            array = torch.from_numpy(image if image.flags.writeable else image.copy())
        except TypeError as err:
            raise _SampleError(
                f"image {index} is a numpy array of dtype {image.dtype}, which torch cannot "
                "hold: yield uint8 (or float in [0, 1]) pixels"
            ) from err
        if array.ndim == 2:
            array = array.unsqueeze(-1)
        if array.ndim != 3:
            raise _SampleError(
                f"image {index} is a numpy array of shape {tuple(image.shape)}: expected "
                "H×W×C or H×W"
            )
        return _pixels_to_uint8(array.permute(2, 0, 1), index)
    raise _SampleError(
        f"image {index} is a {module}.{type(image).__qualname__}, which from_dataset cannot "
        "convert: yield a PIL image, a tensor (uint8, or float in [0, 1]) or a numpy array "
        "(e.g. add transforms.ToTensor() or transforms.PILToTensor())"
    )


def _pixels_to_uint8(pixels: Tensor, index: int) -> Tensor:
    """C×H×W pixels of any dtype -> uint8, refusing values that would not survive."""
    if pixels.dtype == torch.uint8:
        return pixels.contiguous()
    if pixels.numel() == 0:
        raise _SampleError(f"image {index} is empty (shape {_shape(pixels.shape)})")
    if pixels.is_floating_point():
        low, high = float(pixels.min()), float(pixels.max())
        if not (0.0 <= low and high <= 1.0):  # also catches NaN
            raise _SampleError(
                f"image {index} is a float image with values in [{low:.4g}, {high:.4g}]: float "
                "images must lie in [0, 1]; drop transforms.Normalize (BatchLoader normalizes "
                "with the split's mean/std)"
            )
        return pixels.to(torch.float32).mul(255.0).round_().to(torch.uint8)
    if pixels.dtype in (torch.bool, torch.complex64, torch.complex128):
        raise _SampleError(
            f"image {index} is a {pixels.dtype} tensor: expected uint8 or float in [0, 1]"
        )
    low_i, high_i = int(pixels.min()), int(pixels.max())
    if low_i < 0 or high_i > 255:
        raise _SampleError(
            f"image {index} is a {pixels.dtype} image with values in [{low_i}, {high_i}]: "
            "integer images must lie in [0, 255] (rescale them to uint8 in the transform)"
        )
    return pixels.to(torch.uint8).contiguous()


def _pil_to_uint8(image: Any, index: int) -> Tensor:
    mode = str(image.mode)
    if mode in _PIL_CONVERT:
        image, mode = image.convert(_PIL_CONVERT[mode]), _PIL_CONVERT[mode]
    if mode not in _PIL_8BIT_MODES:
        raise _SampleError(
            f"image {index} is a PIL image in mode {mode!r}, not 8 bits per band: convert it "
            "in the transform (e.g. img.convert('L'), or transforms.ToTensor() scaled to [0, 1])"
        )
    width, height = image.size
    bands = len(image.getbands())
    raw = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return raw.view(height, width, bands).permute(2, 0, 1).contiguous()


def _to_label(label: Any, index: int) -> int:
    problem = ""
    if type(label).__name__ in ("bool", "bool_"):  # Python and numpy bools
        problem = "a bool"
    elif isinstance(label, Tensor) and (
        label.numel() != 1 or label.is_floating_point() or label.dtype == torch.bool
    ):
        problem = f"a {label.dtype} tensor of shape {tuple(label.shape)}"
    if not problem:
        try:
            value = operator.index(label.item() if isinstance(label, Tensor) else label)  # type: ignore[arg-type]
        except TypeError:
            problem = f"{label!r} ({type(label).__name__})"[:80]
        else:
            if value >= 0:
                return value
            problem = f"negative ({value})"
    raise _SampleError(
        f"label {index} is {problem}: labels must be integer class indices >= 0 "
        "(map them with target_transform)"
    )


# -- classes ---------------------------------------------------------------------------


def _class_names(dataset: Any, classes: Sequence[str] | None) -> tuple[str, ...]:
    if classes is not None:
        if isinstance(classes, str) or not all(isinstance(c, str) and c for c in classes):
            raise DataConfigError(
                f"classes must be a sequence of non-empty names, one per label, got {classes!r}"
            )
        return tuple(classes)
    for _ in range(_MAX_NESTING):  # a Subset keeps its parent's class names
        found = getattr(dataset, "classes", None)
        if isinstance(found, Sequence) and not isinstance(found, str) and found:
            return tuple(str(c) for c in found)
        dataset = getattr(dataset, "dataset", None)
        if dataset is None:
            break
    return ()


def _check_classes(labels: Tensor, classes: tuple[str, ...], who: str) -> None:
    if classes and int(labels.max()) >= len(classes):
        raise DataError(
            f"{who} labels reach {int(labels.max())} but only {len(classes)} class names are "
            "known: pass classes= with one name per label"
        )


def _check_arguments(batch_size: int, num_workers: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DataConfigError(f"from_dataset batch_size must be an int >= 1, got {batch_size!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise DataConfigError(f"from_dataset num_workers must be an int >= 0, got {num_workers!r}")
