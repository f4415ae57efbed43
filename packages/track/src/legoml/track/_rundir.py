"""Run directory helpers: unique names, config to JSON, reading and resuming a run dir."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from legoml.track._atomic import atomic_write_json
from legoml.track._flatten import config_differences
from legoml.track._scalars import SCALARS_HEADER
from legoml.track.errors import RunError

__all__ = [
    "check_name_and_seed",
    "check_scalars_header",
    "config_to_dict",
    "find_run_dir",
    "make_unique_dir",
    "read_json",
    "replace_config",
    "slug",
]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def config_to_dict(config: object) -> dict[str, Any]:
    """A JSON-safe dict from a Node-like object (anything with ``to_dict()``) or a mapping."""
    if config is None:
        return {}
    to_dict = getattr(config, "to_dict", None)
    data = to_dict() if callable(to_dict) else config
    if not isinstance(data, Mapping):
        raise RunError(
            f"config must be a mapping or have to_dict(), got {type(config).__name__}; "
            "pass a dict or a Node"
        )
    try:
        return dict(json.loads(json.dumps(dict(data), allow_nan=True)))
    except (TypeError, ValueError) as exc:
        raise RunError(f"config cannot be written as JSON ({exc}); use plain values") from exc


def check_name_and_seed(name: object, seed: object) -> None:
    """Refuse a run name that is not a string and a seed that is not an int."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RunError(f"seed must be an int or None, got {seed!r}")
    if name is not None and not isinstance(name, str):
        raise RunError(f"run name must be a string, got {type(name).__name__}")


def slug(name: str) -> str:
    return _UNSAFE.sub("-", name).strip("-.")[:64] or "run"


def _timestamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def make_unique_dir(root: Path, slug: str) -> Path:
    """``<root>/<YYYYmmdd-HHMMSS>-<slug>-<6 hex>``, created atomically (safe across processes)."""
    for _ in range(64):
        candidate = root / f"{_timestamp()}-{slug}-{secrets.token_hex(3)}"
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise RunError(f"could not create a unique run directory under {root}")


def find_run_dir(path: Path) -> Path:
    """The run directory for ``path``: itself, or the run holding a file such as a checkpoint."""
    for candidate in (path, *list(path.parents)[:2]):
        if (candidate / "meta.json").is_file():
            return candidate
    raise RunError(f"cannot resume {path}: no meta.json there; pass a run directory")


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise RunError(f"{path} does not hold a JSON object")
    return data


def check_scalars_header(path: Path) -> None:
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, encoding="utf-8", errors="replace") as handle:
        first = handle.readline()
    if first.endswith("\n") and first.rstrip("\r\n") != SCALARS_HEADER:
        raise RunError(f"{path} does not start with the header {SCALARS_HEADER!r}; cannot append")


def replace_config(directory: Path, new: dict[str, Any]) -> list[str]:
    """Write a changed config on resume, keeping the previous one as an artifact."""
    path = directory / "config.json"
    old = read_json(path) if path.exists() else {}
    changed = sorted(config_differences([old, new]))
    if changed:
        archive = directory / "artifacts"
        archive.mkdir(exist_ok=True)
        index = len(list(archive.glob("config-before-resume-*.json"))) + 1
        atomic_write_json(archive / f"config-before-resume-{index}.json", old)
        atomic_write_json(path, new)
    return changed
