"""The one atomic write, held to one behaviour in each package that must keep its own copy
(legoml-core's original, legoml-track's light copy, legoml-data's copy): temp file beside
the target, fsync of the file and of its folder, rename, the umask's mode, and nothing lost
or left behind on failure."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pytest
import torch

from legoml.core.atomic import atomic_write as core_write
from legoml.core.callbacks import atomic_torch_save
from legoml.data._atomic import atomic_write as data_write
from legoml.track._atomic import atomic_write as track_write

Writer = Callable[[Path, Callable[[IO[bytes]], Any]], None]
WRITERS = {"core": core_write, "track": track_write, "data": data_write}


@pytest.fixture(params=sorted(WRITERS))
def write(request: pytest.FixtureRequest) -> Writer:
    return WRITERS[request.param]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_writes_and_replaces_with_the_mode_open_would_give(write: Writer, tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    write(target, lambda handle: handle.write(b"first"))
    write(target, lambda handle: handle.write(b"second"))
    assert target.read_bytes() == b"second"
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_umask()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]


def test_the_temporary_file_lives_beside_the_target(write: Writer, tmp_path: Path) -> None:
    seen: list[str] = []

    def body(handle: IO[bytes]) -> None:
        seen.extend(p.name for p in tmp_path.iterdir())
        handle.write(b"x")

    write(tmp_path / "state.pt", body)
    (tmp_name,) = seen
    assert tmp_name.startswith(".state.pt.") and tmp_name.endswith(".tmp")


def test_a_failing_write_keeps_the_old_file_and_leaves_nothing(write: Writer, tmp_path: Path) -> None:
    target = tmp_path / "meta.json"
    write(target, lambda handle: handle.write(b"good"))

    def crash(handle: IO[bytes]) -> None:
        handle.write(b"half")
        raise KeyboardInterrupt  # BaseException too: a Ctrl-C mid-save

    with pytest.raises(KeyboardInterrupt):
        write(target, crash)
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]


def test_the_file_and_then_its_folder_are_fsynced(
    write: Writer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync
    synced: list[str] = []

    def recording_fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    write(tmp_path / "x", lambda handle: handle.write(b"x"))
    assert synced == ["file", "dir"]


def test_checkpoints_are_saved_through_the_same_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync
    synced: list[str] = []
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(
        "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"), real_fsync(fd)))
    target = tmp_path / "nested" / "step-00000001.pt"
    atomic_torch_save(target, {"w": torch.arange(3)})
    assert torch.equal(torch.load(target, weights_only=True)["w"], torch.arange(3))
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_umask()
    assert synced == ["file", "dir"]
