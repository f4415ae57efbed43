"""The ``from_dataset`` cache file: written atomically, verified before any of it is trusted.

Layout: ``LEGOML-DATASET-CACHE/1 <sha256 of body hex>\n`` then the body, a ``torch.save``
of the split and its dataset key. A file that fails any check (header, checksum, key, shapes,
dtypes) is logged and ignored, so a torn or stale cache costs a rebuild, never a wrong split.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
from pathlib import Path

import structlog
import torch
from torch import Tensor

from legoml.data._atomic import atomic_write
from legoml.data.splits import Split

__all__ = ["cache_path", "load_cache", "write_cache"]

log = structlog.get_logger(__name__)

_MAGIC = b"LEGOML-DATASET-CACHE/1 "


def load_cache(path: Path, key: str, size: int) -> Split | None:
    """The cached split, or None (logged) when the file is missing or fails any check."""
    try:
        payload = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        payload, problem = b"", f"unreadable: {err}"
    else:
        found = _read_cache(payload, key, size)
        if isinstance(found, Split):
            return found
        problem = found
    log.warning("dataset_cache_rejected", path=str(path), reason=problem, action="rebuilding")
    return None


def _read_cache(payload: bytes, key: str, size: int) -> Split | str:
    """The split in a cache file's ``payload``, or why it cannot be trusted."""
    header_end = payload.find(b"\n", 0, len(_MAGIC) + 80)
    if not payload.startswith(_MAGIC) or header_end < 0:
        return "not a legoml dataset cache file"
    expected = payload[len(_MAGIC) : header_end].decode("ascii", "replace")
    body = memoryview(payload)[header_end + 1 :]
    digest = hashlib.sha256(body).hexdigest()
    if digest != expected:
        return f"checksum mismatch (got {digest[:12]}, expected {expected[:12]})"
    try:
        state = torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
        images, labels = state["images"], state["labels"]
        ok = (
            state["key"] == key
            and isinstance(images, Tensor)
            and isinstance(labels, Tensor)
            and images.dtype == torch.uint8
            and images.ndim == 4
            and labels.dtype == torch.int64
            and tuple(labels.shape) == (size,)
            and int(images.shape[0]) == size
        )
        if not ok:
            return "content does not describe this dataset"
        return Split(
            images,
            labels,
            mean=tuple(state["mean"]),
            std=tuple(state["std"]),
            classes=tuple(state["classes"]),
        )
    except (
        pickle.UnpicklingError,
        EOFError,
        LookupError,
        TypeError,
        ValueError,
        RuntimeError,
    ) as err:
        return f"unreadable content: {err}"


def write_cache(path: Path, key: str, split: Split) -> None:
    """Store ``split`` under ``key``; a failed write is logged, not raised (the split is fine)."""
    buffer = io.BytesIO()
    torch.save(
        {
            "key": key,
            "images": split.images,
            "labels": split.labels,
            "mean": list(split.mean),
            "std": list(split.std),
            "classes": list(split.classes),
        },
        buffer,
    )
    body = buffer.getvalue()
    payload = _MAGIC + hashlib.sha256(body).hexdigest().encode("ascii") + b"\n" + body
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda out: out.write(payload))
    except OSError as err:  # the split is good; only the next run pays the conversion again
        log.warning("dataset_cache_not_written", path=str(path), error=str(err))
        return
    log.info("dataset_cache_written", path=str(path), bytes=len(body))


def cache_path(cache_dir: str | os.PathLike[str], name: str, key: str) -> Path:
    """``<cache_dir>/<name>-<key[:16]>.cache``, ``name`` made safe for any file system."""
    return Path(cache_dir) / f"{_slug(name)}-{key[:16]}.cache"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.").lower() or "dataset"
