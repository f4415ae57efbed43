"""Read run directories back: meta, config, final metrics; list the runs under a root."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from legoml.track._meta import parse_iso
from legoml.track.errors import RunError

__all__ = ["RunInfo", "list_runs", "read_run"]


@dataclass(frozen=True)
class RunInfo:
    """A run as recorded on disk (status ``unreadable`` when meta.json cannot be parsed)."""

    dir: Path
    name: str
    status: str
    start: datetime | None
    end: datetime | None
    duration_s: float | None
    final_metrics: dict[str, float] = field(default_factory=dict)
    seed: int | None = None
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


def _load_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path} is missing; is {path.parent} a legoml.track run?") from None
    except (OSError, ValueError) as exc:
        raise RunError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise RunError(f"{path} does not hold a JSON object")
    return data


def read_run(directory: str | Path) -> RunInfo:
    """Read one run directory (RunError when it is not a readable run)."""
    path = Path(directory)
    if not path.is_dir():
        raise RunError(f"run directory not found: {path}")
    meta = _load_object(path / "meta.json")
    config = _load_object(path / "config.json") if (path / "config.json").exists() else {}
    start, end = parse_iso(meta.get("start")), parse_iso(meta.get("end"))
    duration = meta.get("duration_s")
    if not isinstance(duration, (int, float)) and start is not None and end is not None:
        duration = (end - start).total_seconds()
    raw_metrics = meta.get("final_metrics")
    metrics = {
        str(k): float(v)
        for k, v in (raw_metrics.items() if isinstance(raw_metrics, dict) else ())
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    seed = meta.get("seed")
    return RunInfo(
        dir=path,
        name=str(meta.get("name", path.name)),
        status=str(meta.get("status", "unknown")),
        start=start,
        end=end,
        duration_s=float(duration) if isinstance(duration, (int, float)) else None,
        final_metrics=metrics,
        seed=seed if isinstance(seed, int) else None,
        error=meta.get("error") if isinstance(meta.get("error"), str) else None,
        meta=meta,
        config=config,
    )


def list_runs(root: str | Path = "runs") -> list[RunInfo]:
    """Every run directly under ``root`` (directories holding meta.json), oldest first."""
    base = Path(root)
    if not base.is_dir():
        raise RunError(f"runs root not found: {base}; pass the directory given to run(root=...)")
    runs: list[RunInfo] = []
    for child in sorted(base.iterdir()):
        if not (child / "meta.json").is_file():
            continue
        try:
            runs.append(read_run(child))
        except RunError as exc:
            runs.append(RunInfo(child, child.name, "unreadable", None, None, None, error=str(exc)))
    runs.sort(key=lambda r: (r.start.timestamp() if r.start else float("-inf"), r.dir.name))
    return runs
