"""Names and values as MLflow accepts them: keys, param and tag values, tags, end status.

Pure functions (no MLflow client, no threads) so the mapping of LegoML names onto MLflow's
validation limits can be read and tested on its own. ``mlflow`` is imported only inside
:func:`run_tag`.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from legoml.track._flatten import flatten

__all__ = [
    "MAX_METRICS_PER_BATCH",
    "MAX_PARAMS_PER_BATCH",
    "clip_tag_value",
    "config_params",
    "error_line",
    "mlflow_key",
    "mlflow_status",
    "param_value",
    "run_tag",
    "run_tags",
]

# Limits of MLflow's own validation (mlflow.utils.validation, MLflow 2.10 to 3.x).
_MAX_KEY = 250
_MAX_PARAM_VALUE = 6000
_MAX_TAG_VALUE = 8000
MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
_TRUNCATED = " ...[truncated; the full value is in config.json]"
_BAD_KEY_CHARS = re.compile(r"[^/\w.\- ]")  # MLflow's allowed set, minus ':' (not on Windows)


def mlflow_status(error: BaseException | str | None) -> str:
    """MLflow's end status for a run closed with ``error``: FINISHED, KILLED or FAILED."""
    if error is None:
        return "FINISHED"
    if isinstance(error, (KeyboardInterrupt, SystemExit)):
        return "KILLED"
    return "FAILED"


def mlflow_key(name: str) -> str:
    """An MLflow-valid metric/param key for ``name`` (same name when already valid).

    Characters MLflow refuses become ``_``; a name that is not a clean path (``a//b``, ``/a``,
    ``..``) has its slashes replaced; over 250 characters it is cut and given a short hash.
    """
    key = _BAD_KEY_CHARS.sub("_", name)
    if posixpath.normpath(key) != key or key.startswith(("/", "..")) or key in ("", "."):
        key = key.replace("/", "_")
        if key.startswith("..") or key in ("", "."):
            key = "_" + key
    if len(key) > _MAX_KEY:
        digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
        key = f"{key[: _MAX_KEY - 9]}~{digest}"
    return key


def param_value(value: Any) -> str:
    """What MLflow shows for a config value: ``str(value)`` (as ``mlflow.log_params`` does),
    cut to MLflow's 6000-character limit with a note pointing at config.json."""
    text = str(value)
    if len(text) > _MAX_PARAM_VALUE:
        text = text[: _MAX_PARAM_VALUE - len(_TRUNCATED)] + _TRUNCATED
    return text


def config_params(config: Mapping[str, Any]) -> dict[str, str]:
    """The flattened config as MLflow params (dotted keys, see :func:`mlflow_key`)."""
    if not config:
        return {}
    return {mlflow_key(key): param_value(value) for key, value in flatten(config).items()}


def error_line(exc: BaseException) -> str:
    """``Type: first line`` of an MLflow error, short enough for one warning field."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")[:300]


def clip_tag_value(text: str) -> str:
    """``text`` cut to MLflow's 8000-character tag limit."""
    return text if len(text) <= _MAX_TAG_VALUE else text[: _MAX_TAG_VALUE - 3] + "..."


def run_tag(key: str, value: object) -> Any:
    """An ``mlflow.entities.RunTag`` for ``log_batch`` (value as text, clipped)."""
    from mlflow.entities import RunTag

    return RunTag(key, clip_tag_value(str(value)))


def run_tags(run_dir: Path, meta: Mapping[str, Any]) -> dict[str, object]:
    """Run name, directory, seed, git commit and versions: what a reader filters runs by."""
    tags: dict[str, object] = {
        "legoml.run_dir": run_dir.resolve().as_posix(),
        "legoml.run_id": meta.get("id") or run_dir.name,
        "legoml.resumes": len(meta.get("resumes") or []),
    }
    optional = {
        "legoml.seed": meta.get("seed"),
        "mlflow.source.git.commit": meta.get("git_commit"),
        "legoml.git_commit": meta.get("git_commit"),
        "legoml.git_dirty": meta.get("git_dirty"),
        "legoml.python": meta.get("python"),
        "legoml.torch": meta.get("torch"),
        "legoml.host": meta.get("host"),
    }
    tags.update({key: value for key, value in optional.items() if value is not None})
    packages = meta.get("packages")
    if isinstance(packages, Mapping):
        tags.update({f"legoml.version.{name}": version for name, version in packages.items()})
    return tags
