"""What meta.json records about the environment: versions, git commit, host, times."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "LEGOML_DISTRIBUTIONS",
    "environment_info",
    "git_info",
    "new_meta",
    "now_iso",
    "parse_iso",
]

LEGOML_DISTRIBUTIONS = (
    "legoml-core",
    "legoml-nn",
    "legoml-data",
    "legoml-metrics",
    "legoml-track",
    "legoml-mnist",
)


def now_iso() -> str:
    """Local time with its UTC offset, millisecond precision (sortable, unambiguous)."""
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def parse_iso(value: object) -> datetime | None:
    """Parse a time written by :func:`now_iso`; ``None`` for anything else."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_info(cwd: Path | None = None) -> dict[str, Any]:
    """Commit of the repository holding ``cwd`` (the working directory by default), if any."""
    where = cwd if cwd is not None else Path.cwd()
    commit = _git(["rev-parse", "HEAD"], where)
    if not commit:
        return {"commit": None, "dirty": None}
    status = _git(["status", "--porcelain", "--untracked-files=no"], where)
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def environment_info() -> dict[str, Any]:
    """Versions of python, torch and every installed legoml distribution, plus host and pid."""
    packages = {name: v for name in LEGOML_DISTRIBUTIONS if (v := _version(name)) is not None}
    return {
        "python": platform.python_version(),
        "torch": _version("torch"),
        "packages": packages,
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def new_meta(name: str, run_id: str, seed: int | None) -> dict[str, Any]:
    """meta.json of a run that starts now (``final_metrics`` last, where readers look)."""
    git = git_info()
    return {
        "name": name,
        "id": run_id,
        "status": "running",
        "start": now_iso(),
        "end": None,
        "duration_s": None,
        "seed": seed,
        "error": None,
        **environment_info(),
        "git_commit": git["commit"],
        "git_dirty": git["dirty"],
        "resumes": [],
        "final_metrics": {},
    }
