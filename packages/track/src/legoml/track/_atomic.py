"""Atomic file replacement: temp file in the same directory, fsync, os.replace, fsync the dir.

A deliberate copy of ``legoml.core.atomic``: ``import legoml.track`` must stay light (no torch,
which importing legoml-core loads). ``tests/test_atomic_writes.py`` holds every copy to the
same behaviour.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "atomic_write_json", "fsync_dir"]


def _current_umask() -> int:
    mask = os.umask(0o022)  # read once at import; os.umask can only be read by setting it
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()  # what open() would give (mkstemp alone gives 0o600)


def fsync_dir(directory: Path) -> None:
    """Persist a directory entry change (a rename) where the OS supports it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` through ``write(file)`` so readers see the old or the new file, never half.

    The temporary file lives beside ``path`` (same file system, so the rename is atomic) and is
    removed on any failure, leaving a previous ``path`` untouched.
    """
    directory = path.parent
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(directory)


def atomic_write_json(path: Path, data: Any) -> None:
    """Atomically write ``data`` as indented UTF-8 JSON (keys keep their insertion order)."""
    text = json.dumps(data, indent=2, default=str, allow_nan=True) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
