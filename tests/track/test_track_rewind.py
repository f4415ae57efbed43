"""Resuming from a checkpoint rewinds the scalars so every step appears once."""

from __future__ import annotations

from pathlib import Path

import pytest

from legoml.track import SCALARS_HEADER, RunError, read_scalars, rewind_scalars, run
from legoml.track._scalars import HEADER_SIZE


def test_resume_with_rewind_drops_rows_after_the_checkpoint(tmp_path: Path) -> None:
    with run(name="r", root=tmp_path) as first:
        for step in range(1, 8):
            first.log_scalar("train/loss", 1.0 / step, step=step, epoch=1)
    with open(first.dir / "logs" / "scalars.csv", "a", encoding="utf-8") as handle:
        handle.write("8,1,train/lo")  # torn line of a killed process
    with run(resume=first.dir, rewind_to_step=4) as again:
        for step in range(5, 10):
            again.log_scalar("train/loss", 0.5 / step, step=step, epoch=1)
    steps = [row.step for row in read_scalars(first.dir)]
    assert steps == list(range(1, 10))
    text = (first.dir / "logs" / "scalars.csv").read_text()
    assert text.count("step,epoch,name,value,time") == 1


def test_rewind_keeps_earlier_rows_and_reports_count(tmp_path: Path) -> None:
    with run(name="r", root=tmp_path) as r:
        r.log_scalars({"a": 1.0, "b": 2.0}, step=1)
        r.log_scalars({"a": 3.0}, step=2)
    assert rewind_scalars(r.dir, 1) == 1
    assert [(row.step, row.name) for row in read_scalars(r.dir)] == [(1, "a"), (1, "b")]
    assert rewind_scalars(r.dir, 1) == 0
    assert rewind_scalars(tmp_path / "missing.csv", 0) == 0


def test_a_refused_resume_rewinds_nothing(tmp_path: Path) -> None:
    """Every check of Run.resume comes before its first write."""
    with run(name="r", root=tmp_path) as first:
        first.log_scalars({"a": 1.0}, step=1)
        first.log_scalars({"a": 2.0}, step=2)
    before = (first.dir / "logs" / "scalars.csv").read_bytes()
    with pytest.raises(RunError, match="config must be a mapping"):
        run(resume=first.dir, config=3, rewind_to_step=1)
    assert (first.dir / "logs" / "scalars.csv").read_bytes() == before


def test_header_size_drops_every_row(tmp_path: Path) -> None:
    with run(name="r", root=tmp_path) as r:
        r.log_scalars({"a": 1.0}, step=0)
        r.log_scalars({"a": 2.0}, step=1)
    assert rewind_scalars(r.dir, 0, HEADER_SIZE) == 2
    assert (r.dir / "logs" / "scalars.csv").read_text() == SCALARS_HEADER + "\n"
