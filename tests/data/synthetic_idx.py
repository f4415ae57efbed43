"""Synthetic IDX datasets written by the tests themselves (no MNIST files, no network)."""

from __future__ import annotations

import gzip
import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from legoml.data import MNIST, IdxDataset

ENV_VARS = ("LEGOML_DATA_DIR", "LEGOML_MNIST_MIRROR", "LEGOML_FASHION_MNIST_MIRROR")


def idx_bytes(array: torch.Tensor, type_code: int = 0x08) -> bytes:
    """The IDX encoding of a uint8 tensor: magic, big-endian dims, raw bytes."""
    dims = tuple(array.shape)
    header = bytes([0, 0, type_code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
    return header + bytes(array.flatten().tolist())


def gz(payload: bytes) -> bytes:
    return gzip.compress(payload, mtime=0)


def sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


@dataclass
class Tiny:
    """A four-file IDX dataset in a mirror folder, with its expected tensors."""

    mirror: Path
    dataset: IdxDataset
    raw: dict[str, bytes]
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor

    def write(self, name: str, content: bytes, compress: bool = True) -> Path:
        """Replace ``name`` in the mirror by ``content`` (gzipped unless told otherwise)."""
        for old in (self.mirror / name, self.mirror / f"{name}.gz"):
            old.unlink(missing_ok=True)
        target = self.mirror / (f"{name}.gz" if compress else name)
        target.write_bytes(gz(content) if compress else content)
        return target


TINY_CLASSES = tuple(f"class-{k}" for k in range(10))
TINY_MEAN, TINY_STD = (0.5,), (0.25,)


def make_tiny(
    folder: Path,
    n_train: int = 12,
    n_test: int = 5,
    seed: int = 0,
    size: tuple[int, int] = (28, 28),
) -> Tiny:
    """Four random IDX files of ``size`` (H, W) images, described as the dataset "tiny"."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {
        "train-images-idx3-ubyte": torch.randint(0, 256, (n_train, *size), generator=generator),
        "train-labels-idx1-ubyte": torch.randint(0, 10, (n_train,), generator=generator),
        "t10k-images-idx3-ubyte": torch.randint(0, 256, (n_test, *size), generator=generator),
        "t10k-labels-idx1-ubyte": torch.randint(0, 10, (n_test,), generator=generator),
    }
    folder.mkdir(parents=True, exist_ok=True)
    raw = {name: idx_bytes(t.to(torch.uint8)) for name, t in tensors.items()}
    for name, payload in raw.items():
        (folder / f"{name}.gz").write_bytes(gz(payload))
    dataset = IdxDataset(
        name="tiny",
        splits=MNIST.splits,
        sha256={name: sha256(payload) for name, payload in raw.items()},
        urls=(),
        classes=TINY_CLASSES,
        image_shape=(1, *size),
        mean=TINY_MEAN,
        std=TINY_STD,
    )
    return Tiny(
        mirror=folder,
        dataset=dataset,
        raw=raw,
        train_images=tensors["train-images-idx3-ubyte"].to(torch.uint8),
        train_labels=tensors["train-labels-idx1-ubyte"],
        test_images=tensors["t10k-images-idx3-ubyte"].to(torch.uint8),
        test_labels=tensors["t10k-labels-idx1-ubyte"],
    )
