"""The ``from_dataset`` cache key: one SHA-256 over what defines a dataset's samples.

The key must change whenever the samples could, and stay put across runs otherwise, so it is
built from the dataset's description (class, length, public attributes) rather than from its
samples: reading every sample again would cost as much as the conversion it saves.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["dataset_key"]

_KEY_VERSION = "legoml-dataset-key/1"
_MAX_DEPTH = 6  # values nested deeper count by type name only
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def dataset_key(dataset: Dataset[Any], exclude: Path | None = None) -> str:
    """SHA-256 hex of what defines ``dataset``'s samples: the ``from_dataset`` cache key.

    The key covers the dataset's class, ``len`` and every attribute not starting with ``_``:
    numbers, strings and flags by value; tensors and numpy arrays by dtype, shape and
    content; strings naming an existing file (``ImageFolder.samples``) also by its size and
    mtime; lists, tuples and dicts item by item; nested datasets (``Subset``,
    ``ConcatDataset``) recursively; functions by qualified name; other objects (transforms)
    by ``repr`` with memory addresses removed. Keep counters and caches in ``_`` attributes:
    they would change the key. Files under ``exclude`` (the cache folder) are not looked at.
    """
    fingerprint = _Fingerprint(exclude.resolve() if exclude is not None else None)
    fingerprint.feed_dataset(dataset, 0)
    return fingerprint.hasher.hexdigest()


class _Fingerprint:
    """Feeds a dataset's description into one SHA-256, token by token."""

    def __init__(self, exclude: Path | None) -> None:
        self.hasher = hashlib.sha256(_KEY_VERSION.encode())
        self.exclude = exclude
        self.seen: set[int] = set()
        self.containers: dict[int, int] = {}
        self.kept: list[Any] = []  # keeps aliased containers alive so ids stay unique

    def alias(self, value: Any) -> bool:
        """True (and one token) when this container object was already fed: ``imgs is samples``."""
        if not isinstance(value, (list, dict)):
            return False
        ordinal = self.containers.get(id(value))
        if ordinal is not None:
            self.token("alias", ordinal)
            return True
        self.containers[id(value)] = len(self.containers)
        self.kept.append(value)
        return False

    def token(self, *parts: object) -> None:
        self.hasher.update(json.dumps([str(p) for p in parts]).encode() + b"\x00")

    def feed_dataset(self, dataset: Any, depth: int) -> None:
        kind = type(dataset)
        self.token("dataset", kind.__module__, kind.__qualname__)
        if id(dataset) in self.seen:
            self.token("seen")
            return
        self.seen.add(id(dataset))
        try:
            self.token("len", len(dataset))
        except TypeError:
            self.token("len", None)
        for name, value in sorted(vars(dataset).items()):
            if not name.startswith("_"):
                self.token("attr", name)
                self.feed(value, depth + 1)

    def feed(self, value: Any, depth: int) -> None:
        if value is None or isinstance(value, (bool, int, float)):
            self.token(type(value).__name__, repr(value))
        elif isinstance(value, str):
            self.feed_str(value)
        elif isinstance(value, os.PathLike):
            self.feed_str(os.fspath(value))
        elif isinstance(value, Tensor):
            self.feed_tensor(value)
        elif type(value).__module__.startswith("numpy") and hasattr(value, "dtype"):
            try:
                self.feed_tensor(torch.as_tensor(value))
            except (TypeError, RuntimeError):  # object arrays: their repr is all there is
                self.token("ndarray", value.dtype, _ADDRESS.sub("", repr(value)))
        elif depth > _MAX_DEPTH:
            self.token("deep", type(value).__qualname__)
        elif isinstance(value, Dataset):
            self.feed_dataset(value, depth)
        elif self.alias(value):
            return
        elif isinstance(value, Mapping):
            self.token("map", len(value))
            for key in sorted(value, key=repr):
                self.feed(key, depth + 1)
                self.feed(value[key], depth + 1)
        elif isinstance(value, (list, tuple, set, frozenset)):
            items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
            self.token("seq", type(value).__name__, len(items))
            for item in items:
                self.feed(item, depth + 1)
        elif callable(value) and hasattr(value, "__qualname__"):  # functions, classes
            self.token("callable", getattr(value, "__module__", ""), value.__qualname__)
        else:  # transforms and other objects: their repr names their settings
            self.token("object", type(value).__qualname__, _ADDRESS.sub("", repr(value)))

    def feed_str(self, text: str) -> None:
        self.token("str", text)
        if os.sep in text or (os.altsep and os.altsep in text):
            path = Path(text)
            try:
                if path.is_file() and not self._excluded(path):
                    stat = path.stat()
                    self.token("file", stat.st_size, stat.st_mtime_ns)
            except OSError:  # unreadable or odd names: the path text alone counts
                pass

    def _excluded(self, path: Path) -> bool:
        return self.exclude is not None and path.resolve().is_relative_to(self.exclude)

    def feed_tensor(self, tensor: Tensor) -> None:
        data = tensor.detach().cpu().contiguous()
        self.token("tensor", data.dtype, tuple(data.shape))
        nbytes = data.numel() * data.element_size()
        if nbytes:  # hash the memory in place: no copy, no numpy needed
            view = (ctypes.c_ubyte * nbytes).from_address(data.data_ptr())
            self.hasher.update(view)
