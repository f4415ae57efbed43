"""One bounded read of a small file the user named (an image, a search space)."""

from __future__ import annotations

from pathlib import Path

from legoml_mnist.errors import AppError

__all__ = ["read_small_file"]


def read_small_file(path: Path, limit: int, name: str, *, missing: str, too_large: str) -> bytes:
    """The bytes of ``path``, reading at most ``limit + 1`` so a wrong path to a huge file stops
    early. A missing, unreadable or oversized file is one ``AppError`` line:
    ``"{name} {missing}"``, ``"cannot read {name}: <reason>"`` or ``"{name} {too_large}"``."""
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise AppError(f"{name} {missing}") from None
    except OSError as err:
        raise AppError(f"cannot read {name}: {err.strerror or err}") from None
    if len(data) > limit:
        raise AppError(f"{name} {too_large}")
    return data
