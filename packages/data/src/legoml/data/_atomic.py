"""Atomic file replacement: a temporary file in the same folder, flushed and fsynced, renamed
over the target, then the folder fsynced, with the mode a plain ``open()`` would give.

A deliberate copy of ``legoml.core.atomic``: legoml-data may not import legoml-core.
``tests/test_atomic_writes.py`` holds every copy to the same behaviour.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "fsync_dir"]


def _current_umask() -> int:
    mask = os.umask(0o022)  # os.umask can only be read by setting it: read once, at import
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()


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


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` through ``write(file)``: readers see the old file or the new one, never
    half of one, and a failure (or a crash) leaves a previous ``path`` untouched."""
    path = Path(path)
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
