"""Fault injection for the reliability suite: a disk that fills up, writes that fail with a
chosen errno, and a run directory that refuses every change (even to root).

Everything patches the ``os``/``io`` functions LegoML's writers go through (``os.fdopen`` for
atomic files and checkpoints, ``os.write`` for the append-only CSV/JSONL logs, ``os.fsync``,
``os.replace``...), and only for paths under one folder, so the rest of the process is left
alone. Use them as context managers inside a test (they undo themselves).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "FailingWrites",
    "FullDisk",
    "ReadOnlyTree",
    "fd_path",
    "tmpfs",
]


def fd_path(fd: int) -> str:
    """The path an open descriptor points at ('' when the OS will not say)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def _under(path: str | os.PathLike[str] | int, root: Path) -> bool:
    if isinstance(path, int):
        text = fd_path(path)
    else:
        text = os.path.abspath(os.fspath(path))
    return text == str(root) or text.startswith(str(root) + os.sep)


def _error(code: int, filename: str | None = None) -> OSError:
    return OSError(code, os.strerror(code), filename) if filename else OSError(code, os.strerror(code))


class _Patches:
    """Set attributes and put them back on exit."""

    def __init__(self) -> None:
        self._saved: list[tuple[Any, str, Any]] = []

    def set(self, owner: Any, name: str, value: Any) -> None:
        self._saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    def undo(self) -> None:
        while self._saved:
            owner, name, value = self._saved.pop()
            setattr(owner, name, value)


class _BudgetFile:
    """A writable file whose writes draw from a shared byte budget, then fail like a disk."""

    def __init__(
        self, raw: Any, take: Callable[[int, str], int], name: str, code: int = errno.ENOSPC
    ) -> None:
        self._raw = raw
        self._take = take
        self._name = name
        self._code = code

    def write(self, data: Any) -> int:
        size = len(memoryview(data).cast("B"))
        allowed = self._take(size, self._name)
        if allowed:
            self._raw.write(memoryview(data).cast("B")[:allowed])
        if allowed < size:
            raise _error(self._code)
        return size

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def __enter__(self) -> _BudgetFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._raw.close()


class FullDisk:
    """A disk under ``root`` with ``free_bytes`` left: writes beyond it fail with ENOSPC
    (after writing what still fits, as a real file system does). Deletions free nothing."""

    def __init__(self, root: Path, free_bytes: int) -> None:
        self.root = Path(root).resolve()
        self.free = free_bytes
        self.failures: list[str] = []
        self._patches = _Patches()

    def _take(self, size: int, name: str) -> int:
        allowed = max(0, min(size, self.free))
        self.free -= allowed
        if allowed < size:
            self.failures.append(name)
        return allowed

    def __enter__(self) -> FullDisk:
        real_fdopen, real_write = os.fdopen, os.write

        def fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            handle = real_fdopen(fd, mode, *args, **kwargs)
            if any(flag in mode for flag in "wax+") and _under(fd, self.root):
                return _BudgetFile(handle, self._take, fd_path(fd))
            return handle

        def write(fd: int, data: Any) -> int:
            if not _under(fd, self.root):
                return real_write(fd, data)
            view = memoryview(data).cast("B")
            allowed = self._take(len(view), fd_path(fd))
            if allowed == 0 and len(view):
                raise _error(errno.ENOSPC)
            return real_write(fd, view[:allowed])

        self._patches.set(os, "fdopen", fdopen)
        self._patches.set(os, "write", write)
        return self

    def __exit__(self, *exc: object) -> None:
        self._patches.undo()


class FailingWrites:
    """Make one kind of operation on files under ``root`` fail with ``code``.

    ``where`` is ``"write"`` (data written through os.fdopen files or os.write), ``"fsync"``
    or ``"replace"``; ``match`` narrows it to paths containing that text; ``after`` lets that
    many matching calls succeed first. ``hits`` counts the failures raised.
    """

    def __init__(
        self, root: Path, code: int, where: str = "write", match: str = "", after: int = 0
    ) -> None:
        self.root = Path(root).resolve()
        self.code = code
        self.where = where
        self.match = match
        self.after = after
        self.hits = 0
        self._seen = 0
        self._patches = _Patches()

    def _fails(self, path: str) -> bool:
        if not _under(path, self.root) or self.match not in path:
            return False
        self._seen += 1
        if self._seen <= self.after:
            return False
        self.hits += 1
        return True

    def __enter__(self) -> FailingWrites:
        real_fdopen, real_write, real_fsync, real_replace = os.fdopen, os.write, os.fsync, os.replace
        code = self.code

        if self.where == "write":

            def fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
                handle = real_fdopen(fd, mode, *args, **kwargs)
                path = fd_path(fd)
                if any(flag in mode for flag in "wax+") and self._fails(path):
                    budget = [100]  # the file accepts a few bytes, then the device fails

                    def take(size: int, name: str) -> int:
                        allowed = min(size, budget[0])
                        budget[0] -= allowed
                        return allowed

                    return _BudgetFile(handle, take, path, code)
                return handle

            def write(fd: int, data: Any) -> int:
                if self._fails(fd_path(fd)):
                    raise _error(code)
                return real_write(fd, data)

            self._patches.set(os, "fdopen", fdopen)
            self._patches.set(os, "write", write)
        elif self.where == "fsync":

            def fsync(fd: int) -> None:
                if self._fails(fd_path(fd)):
                    raise _error(code)
                real_fsync(fd)

            self._patches.set(os, "fsync", fsync)
        elif self.where == "replace":

            def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
                if self._fails(os.path.abspath(os.fspath(dst))):
                    raise _error(code, os.fspath(src))
                real_replace(src, dst, *args, **kwargs)

            self._patches.set(os, "replace", replace)
        else:
            raise ValueError(f"where={self.where!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._patches.undo()


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class ReadOnlyTree:
    """``root`` behaves like a read-only mount: creating, writing, renaming or deleting
    anything in it fails with EROFS (reading works). Works for root, unlike chmod."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.refused: list[str] = []
        self._patches = _Patches()

    def _refuse(self, path: Any) -> None:
        if not isinstance(path, int) and _under(path, self.root):
            self.refused.append(os.fspath(path))
            raise _error(errno.EROFS, os.fspath(path))

    def __enter__(self) -> ReadOnlyTree:
        real_open, real_io_open = os.open, io.open

        def os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            if flags & _WRITE_FLAGS:
                self._refuse(path)
            return real_open(path, flags, *args, **kwargs)

        def py_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            if any(flag in mode for flag in "wax+"):
                self._refuse(file)
            return real_io_open(file, mode, *args, **kwargs)

        def guard(name: str) -> None:
            real = getattr(os, name)

            def refused(path: Any, *args: Any, **kwargs: Any) -> Any:
                self._refuse(path)
                if args and name in ("replace", "rename"):
                    self._refuse(args[0])
                return real(path, *args, **kwargs)

            self._patches.set(os, name, refused)

        self._patches.set(os, "open", os_open)
        self._patches.set(builtins, "open", py_open)
        self._patches.set(io, "open", py_open)
        for name in ("replace", "rename", "unlink", "remove", "mkdir", "rmdir", "truncate", "chmod"):
            guard(name)
        return self

    def __exit__(self, *exc: object) -> None:
        self._patches.undo()


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` mounted at ``where`` (needs mount rights, else OSError)."""
    where.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        raise OSError("no mount command")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise OSError(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


def remount(where: Path, options: str) -> None:
    """``mount -o remount,OPTIONS`` a tmpfs from :func:`tmpfs` (e.g. ``ro``, ``size=64m``)."""
    subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True, capture_output=True)
