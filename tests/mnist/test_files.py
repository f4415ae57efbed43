"""The app's one bounded read of a user-named file (images for predict, sweep spaces)."""

from __future__ import annotations

from pathlib import Path

import pytest

from legoml_mnist._files import read_small_file
from legoml_mnist.errors import AppError
from legoml_mnist.sweep.space import MAX_SPACE_BYTES, load_search_space
from legoml_mnist.trainer import TrainerNode


def _read(path: Path, limit: int = 4) -> bytes:
    return read_small_file(path, limit, f"thing {path}", missing="is gone", too_large="is big")


def test_reads_a_file_up_to_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"abcd")
    assert _read(path) == b"abcd"
    path.write_bytes(b"")
    assert _read(path) == b""


def test_each_problem_is_one_line_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "none.bin"
    with pytest.raises(AppError, match=f"^thing {missing} is gone$"):
        _read(missing)
    with pytest.raises(AppError, match=f"^cannot read thing {tmp_path}: "):
        _read(tmp_path)  # a directory
    big = tmp_path / "big.bin"
    big.write_bytes(b"abcde")
    with pytest.raises(AppError, match=f"^thing {big} is big$"):
        _read(big)


def test_search_space_keeps_its_messages(tmp_path: Path) -> None:
    base = TrainerNode()
    missing = tmp_path / "space.json"
    with pytest.raises(AppError, match=f"^search space file {missing} does not exist; check the path$"):
        load_search_space(missing, base)
    huge = tmp_path / "huge.json"
    huge.write_bytes(b" " * (MAX_SPACE_BYTES + 1))
    with pytest.raises(AppError, match="is over 1024 KiB; a space is a few lines$"):
        load_search_space(huge, base)
