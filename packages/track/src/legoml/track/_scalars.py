"""The long-format scalars CSV: one row per value, so the header never changes."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import structlog

from legoml.track._atomic import atomic_write
from legoml.track.errors import RunError

__all__ = [
    "SCALARS_FIELDS",
    "HEADER_SIZE",
    "SCALARS_HEADER",
    "ScalarRow",
    "format_rows",
    "last_values",
    "read_scalars",
    "rewind_scalars",
    "scalars_path",
    "to_float",
]

log = structlog.get_logger(__name__)

SCALARS_FIELDS = ("step", "epoch", "name", "value", "time")
SCALARS_HEADER = ",".join(SCALARS_FIELDS)
HEADER_SIZE = len(SCALARS_HEADER) + 1  # bytes of a scalars.csv that holds no rows


class ScalarRow(NamedTuple):
    """One logged value: training step, epoch (or None), name, value, wall time (unix seconds)."""

    step: int
    epoch: int | None
    name: str
    value: float
    time: float


def scalars_path(run_or_csv: str | Path) -> Path:
    """The CSV of a run directory (or the CSV path itself)."""
    path = Path(run_or_csv)
    return path / "logs" / "scalars.csv" if path.is_dir() else path


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise RunError(f"scalar name must be a non-empty string, got {name!r}")
    if any(ch in name for ch in "\r\n\x00"):
        raise RunError(f"scalar name {name!r} contains a line break or NUL; use '/' or '_'")
    return name


def to_float(name: str, value: object) -> float:
    """``float(value)`` for numbers and one-element tensors, else a RunError naming the scalar."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, RuntimeError) as exc:
        raise RunError(
            f"scalar {name!r} must be a number or a one-element tensor, got {type(value).__name__}"
        ) from exc


def _check_int(what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RunError(f"{what} must be an int, got {value!r}")
    return value


def format_rows(
    values: Iterable[tuple[str, object]], step: int, epoch: int | None, time: float
) -> list[str]:
    """CSV lines (without newline) for ``values``; validates names, numbers, step and epoch."""
    step = _check_int("step", step)
    epoch_text = "" if epoch is None else str(_check_int("epoch", epoch))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for name, value in values:
        number = to_float(_check_name(name), value)
        writer.writerow([step, epoch_text, name, repr(number), f"{time:.3f}"])
    return buffer.getvalue().split("\n")[:-1]  # not splitlines(): names may hold \x0b, \u2028


def _parse(record: list[str]) -> ScalarRow:
    step, epoch, name, value, time = record
    return ScalarRow(int(step), int(epoch) if epoch else None, name, float(value), float(time))


def read_scalars(run_or_csv: str | Path) -> list[ScalarRow]:
    """Every complete row of a run's ``logs/scalars.csv`` (a torn last line is ignored)."""
    path = scalars_path(run_or_csv)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise RunError(
            f"no scalars file at {path}; is this a legoml.track run directory?"
        ) from None
    except OSError as exc:
        raise RunError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    rows: list[ScalarRow] = []
    skipped = 0
    for index, record in enumerate(csv.reader(io.StringIO(text))):
        if index == 0 and tuple(record) == SCALARS_FIELDS:
            continue
        try:
            rows.append(_parse(record))
        except ValueError:
            skipped += 1
    if skipped:
        log.warning("skipped malformed scalar rows", path=str(path), rows=skipped)
    return rows


def last_values(rows: Iterable[ScalarRow]) -> dict[str, float]:
    """The most recently logged value of each scalar name (finite or not)."""
    latest: dict[str, float] = {}
    for row in rows:
        latest[row.name] = row.value
    return latest


def rewind_scalars(run_or_csv: str | Path, step: int, size: int | None = None) -> int:
    """Drop every row logged after training step ``step`` (and a torn last line); return
    how many rows went.

    A run resumed from the checkpoint of step ``step`` logs the later steps again; rewinding
    first keeps each step in the CSV exactly once. ``size`` (``Run.scalars_size`` when that
    checkpoint was saved) also drops the rows logged after it at the same step, such as
    epoch-end metrics or a final evaluation; ``HEADER_SIZE`` drops every row. The file is
    replaced atomically.
    """
    path = scalars_path(run_or_csv)
    if not path.is_file():
        return 0
    raw = path.read_bytes()
    cut = len(raw)
    if size is not None and len(SCALARS_HEADER) < size < len(raw):
        cut = size
    dropped = raw[cut:].count(b"\n")  # whole rows logged after the checkpoint was saved
    if cut < len(raw) and raw[cut - 1 : cut] != b"\n":
        dropped -= 1  # a row cut in two: counted below as a torn line
    text = raw[:cut].decode("utf-8", errors="replace")
    parts = text.split("\n")  # not splitlines(): a name may hold other line separators
    lines = [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    kept: list[str] = []
    for index, line in enumerate(lines):
        if not line.endswith("\n"):
            dropped += 1
            continue
        if index == 0 and line.rstrip("\r\n") == SCALARS_HEADER:
            kept.append(line)
            continue
        try:
            row_step = int(line.split(",", 1)[0])
        except ValueError:
            kept.append(line)
            continue
        if row_step > step:
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        payload = "".join(kept).encode("utf-8")
        atomic_write(path, lambda handle: handle.write(payload))
        log.info("scalars rewound", path=str(path), step=step, rows_dropped=dropped)
    return dropped
