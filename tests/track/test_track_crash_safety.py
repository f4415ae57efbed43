"""Concurrent runs (threads and processes), SIGKILL mid-logging, torn lines."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
from conftest import csv_lines, read_json

from legoml.track import SCALARS_HEADER, read_scalars, run
from legoml.track._lines import LineAppender, truncate_partial_line
from legoml.track._scalars import SCALARS_FIELDS

ROWS = 300


def _dir_from(lines: Iterable[str]) -> Path:
    """The run directory a child printed as ``DIR=...`` (other lines are its logs)."""
    for line in lines:
        if line.startswith("DIR="):
            return Path(line[4:].strip())
    raise AssertionError("child printed no run directory")


def _check_complete_run(run_dir: Path, tag: str) -> None:
    rows = read_scalars(run_dir)
    assert [(row.step, row.name) for row in rows] == [(i, tag) for i in range(ROWS)]
    assert csv_lines(run_dir).count(SCALARS_HEADER) == 1
    assert read_json(run_dir / "meta.json")["status"] == "completed"


def test_concurrent_threads_get_distinct_dirs_and_lose_nothing(root: Path) -> None:
    workers = 8
    barrier = threading.Barrier(workers)
    dirs: dict[int, Path] = {}
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            barrier.wait()
            with run("same-name", root=root) as r:
                dirs[index] = r.dir
                for step in range(ROWS):
                    r.log_scalar(f"w{index}", float(step), step=step)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(set(dirs.values())) == workers == len(list(root.iterdir()))
    for index, run_dir in dirs.items():
        _check_complete_run(run_dir, f"w{index}")


def test_threads_sharing_one_run_write_whole_lines(root: Path) -> None:
    with run(root=root) as r:

        def work(index: int) -> None:
            for step in range(ROWS):
                r.log_scalars({f"t{index}/a": step, f"t{index}/b": -step}, step=step)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    rows = read_scalars(r.dir)
    assert len(rows) == 4 * ROWS * 2
    assert len(csv_lines(r.dir)) == len(rows) + 1  # nothing malformed was skipped


CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from legoml.track import run

    root, go, tag = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    while not go.exists():
        time.sleep(0.005)
    with run("same-name", root=root) as r:
        for step in range({rows}):
            r.log_scalar(tag, float(step), step=step)
    sys.stdout.write("DIR=" + str(r.dir) + "\\n")
    """
).format(rows=ROWS)


def test_concurrent_processes_get_distinct_dirs_and_lose_nothing(
    root: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(root), str(go), f"p{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    go.touch()  # release them together: same second, same name
    results = [child.communicate(timeout=120) for child in children]
    assert [child.returncode for child in children] == [0] * 4, [err for _, err in results]
    dirs = [_dir_from(out.splitlines()) for out, _ in results]
    assert len(set(dirs)) == 4 == len(list(root.iterdir()))
    for index, run_dir in enumerate(dirs):
        _check_complete_run(run_dir, f"p{index}")


KILLED_CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from legoml.track import run

    with run("killed", root=Path(sys.argv[1])) as r:
        sys.stdout.write("DIR=" + str(r.dir) + "\\n")
        sys.stdout.flush()
        step = 0
        while True:
            step += 1
            r.log_scalars({"train/loss": 1.0 / step, "name, with \\"quotes\\"": step}, step=step,
                          epoch=step // 100)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_mid_logging_leaves_only_complete_lines(root: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_CHILD, str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        run_dir = _dir_from(iter(child.stdout.readline, ""))
        csv_path = run_dir / "logs" / "scalars.csv"
        deadline = time.monotonic() + 120  # a safety net against hanging, not an assertion
        while csv_path.stat().st_size < 200_000 and time.monotonic() < deadline:
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)  # while it is still writing
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL

    raw = csv_path.read_bytes()
    assert raw.endswith(b"\n")
    records = list(csv.reader(raw.decode("utf-8").splitlines()))
    assert tuple(records[0]) == SCALARS_FIELDS
    assert len(records) > 2000
    for record in records[1:]:
        step, epoch, name, value, wall = record  # every line has the five fields
        int(step), int(epoch), float(value), float(wall)
        assert name in {"train/loss", 'name, with "quotes"'}
    steps = [int(r[0]) for r in records[1:]]
    assert steps == sorted(steps) and steps[0] == 1
    assert read_json(run_dir / "meta.json")["status"] == "running"  # never closed

    with run(resume=run_dir) as again:  # and the run can be continued
        again.log_scalar("train/loss", 0.0, step=steps[-1] + 1)
    assert csv_lines(run_dir).count(SCALARS_HEADER) == 1
    assert read_scalars(run_dir)[-1].step == steps[-1] + 1
    assert read_json(run_dir / "meta.json")["status"] == "completed"


def test_truncate_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(b"a\nbb\nccc")
    assert truncate_partial_line(path) == 3
    assert path.read_bytes() == b"a\nbb\n"
    assert truncate_partial_line(path) == 0
    path.write_bytes(b"no newline at all" * 10_000)  # longer than one read chunk
    truncate_partial_line(path)
    assert path.read_bytes() == b""


def test_header_rewritten_when_even_it_was_torn(tmp_path: Path) -> None:
    path = tmp_path / "scalars.csv"
    path.write_text("step,ep")
    appender = LineAppender(path, header=SCALARS_HEADER)
    appender.write_lines(["1,,a,1.0,0.000"])
    appender.close()
    appender.write_lines(["ignored after close"])
    assert path.read_text() == SCALARS_HEADER + "\n1,,a,1.0,0.000\n"


def test_failed_write_takes_back_the_partial_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "scalars.csv"
    appender = LineAppender(path, header=SCALARS_HEADER)
    real_write = os.write
    calls = {"n": 0}

    def flaky_write(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data[:5]))  # short write ...
        raise OSError(28, "No space left on device")  # ... then the disk is full

    monkeypatch.setattr(os, "write", flaky_write)
    with pytest.raises(OSError):
        appender.write_lines(["1,,a,1.0,0.000"])
    monkeypatch.undo()
    appender.write_lines(["2,,a,2.0,0.000"])
    appender.close()
    assert path.read_text() == SCALARS_HEADER + "\n2,,a,2.0,0.000\n"
