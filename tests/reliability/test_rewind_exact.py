"""In-process: resuming rewinds scalars.csv to exactly where it stood when the checkpoint
was saved, including rows logged later at the checkpoint's own step (epoch-end metrics, a
final evaluation), and never drops a row it should keep."""

from __future__ import annotations

from pathlib import Path

from legoml.track import read_scalars, rewind_scalars, run


def _rows(run_dir: Path) -> list[tuple[int, str, float]]:
    return [(row.step, row.name, row.value) for row in read_scalars(run_dir)]


def test_rewind_to_size_drops_rows_logged_after_the_checkpoint_at_its_step(tmp_path: Path) -> None:
    with run("exact", root=tmp_path) as first:
        for step in range(1, 5):
            first.log_scalars({"train/step_loss": 1.0 / step}, step=step, epoch=1)
        size = first.scalars_size  # the checkpoint of step 4 is saved here
        first.log_scalars({"train/loss": 0.4, "train/accuracy": 0.5}, step=4, epoch=1)  # epoch end
        first.log_scalars({"train/step_loss": 0.2}, step=5, epoch=2)
    with run(resume=first.dir, rewind_to_step=4, rewind_to_size=size) as again:
        again.log_scalars({"train/loss": 0.4, "train/accuracy": 0.5}, step=4, epoch=1)
    assert _rows(again.dir) == [
        (1, "train/step_loss", 1.0),
        (2, "train/step_loss", 0.5),
        (3, "train/step_loss", 1.0 / 3),
        (4, "train/step_loss", 0.25),
        (4, "train/loss", 0.4),
        (4, "train/accuracy", 0.5),
    ]


def test_rewind_keeps_rows_whose_names_hold_unusual_separators(tmp_path: Path) -> None:
    odd = "train/odd\u2028name\x0bx"  # not a CSV line break; must survive a rewind
    with run("odd", root=tmp_path) as r:
        r.log_scalars({odd: 1.0, "b": 2.0}, step=1)
        r.log_scalars({odd: 3.0}, step=2)
    assert rewind_scalars(r.dir, 1) == 1
    assert _rows(r.dir) == [(1, odd, 1.0), (1, "b", 2.0)]


def test_a_size_from_another_timeline_never_cuts_a_row_in_half(tmp_path: Path) -> None:
    with run("torn", root=tmp_path) as r:
        r.log_scalars({"a": 1.0}, step=1)
        r.log_scalars({"a": 2.0}, step=2)
        size = r.scalars_size
        r.log_scalars({"a": 3.0}, step=3)
    assert rewind_scalars(r.dir, 3, size + 5) == 1  # mid-row: the torn row goes
    assert _rows(r.dir) == [(1, "a", 1.0), (2, "a", 2.0)]
    assert (r.dir / "logs" / "scalars.csv").read_text().endswith("\n")
