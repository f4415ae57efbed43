"""Append-only files of complete lines that survive a crash of the writing process.

Each call hands the kernel whole lines in one ``os.write`` on an ``O_APPEND`` descriptor, so a
process killed at any moment (even SIGKILL) leaves only complete lines; nothing waits in a
Python buffer. When an earlier writer died mid-line (a full disk, a power cut), reopening
truncates the partial tail back to the last newline before appending.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

__all__ = ["LineAppender", "truncate_partial_line"]

_CHUNK = 1 << 16


def truncate_partial_line(path: Path) -> int:
    """Cut ``path`` back to its last newline; return the number of bytes removed."""
    with open(path, "rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        end = size
        while end > 0:
            start = max(0, end - _CHUNK)
            handle.seek(start)
            block = handle.read(end - start)
            newline = block.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            end = start
        else:
            keep = 0
        if keep != size:
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
        return size - keep


class LineAppender:
    """Thread-safe appender of whole lines; writes a header when the file starts empty."""

    def __init__(self, path: Path, header: str | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        if path.exists():
            truncate_partial_line(path)
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if header is not None and os.fstat(self._fd).st_size == 0:
            self.write_lines([header])

    @property
    def closed(self) -> bool:
        return self._fd is None

    def write_lines(self, lines: list[str]) -> None:
        """Append ``lines`` (without newlines) in a single write; ignored once closed."""
        if not lines:
            return
        data = ("\n".join(lines) + "\n").encode("utf-8")
        with self._lock:
            if self._fd is None:
                return
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(self._fd, view) :]
            except OSError:
                # Take back the part of a line that did get written (e.g. disk full).
                done = len(data) - len(view)
                if done:
                    with contextlib.suppress(OSError):
                        os.ftruncate(self._fd, os.lseek(self._fd, 0, os.SEEK_END) - done)
                raise

    def close(self) -> None:
        """Flush to disk and close; safe to call twice."""
        with self._lock:
            if self._fd is None:
                return
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.fsync(fd)
            os.close(fd)
