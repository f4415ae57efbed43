"""MLflow mirror settings and the checks that run before anything is written.

Kept apart from the sink so ``run()`` can validate ``mlflow=...`` and refuse a broken
install early (missing extra, refused file store) without the mirror's threading code.
``mlflow`` is imported only inside :func:`require_mlflow`.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from legoml.track._rundir import read_json
from legoml.track.errors import MissingExtraError, RunError

__all__ = [
    "MLFLOW_FILE",
    "MLflowOptions",
    "default_tracking_uri",
    "mlflow_options",
    "recorded_tracking_uri",
    "require_mlflow",
    "uri_scheme",
]

MLFLOW_FILE = "mlflow.json"  # in the run directory: which MLflow run mirrors it
_HINT = "MLflow logging needs mlflow: pip install 'legoml-track[mlflow]'"
_DB_SCHEMES = {"sqlite", "postgresql", "mysql", "mssql"}  # SQLAlchemy stores


@dataclass(frozen=True)
class MLflowOptions:
    """Where and how a run is mirrored to MLflow (``run(..., mlflow=MLflowOptions(...))``).

    Attributes:
        tracking_uri: any MLflow tracking URI, used as is (``http://host:5000``,
            ``sqlite:///path/mlflow.db``, ...). ``None``: the URI a resumed run was mirrored
            to, else ``sqlite:///<runs root>/mlflow.db``.
        experiment: experiment of a new MLflow run; ``None``: the runs root's folder name
            (``"legoml"`` when it has none). Created when missing.
        log_checkpoints: also upload ``checkpoints/`` when the run closes (large; off).
        flush_secs: scalars are sent in one batch at most every this many seconds (and when
            1000 are waiting, and at close).
    """

    tracking_uri: str | None = None
    experiment: str | None = None
    log_checkpoints: bool = False
    flush_secs: float = 5.0

    def __post_init__(self) -> None:
        uri, experiment = self.tracking_uri, self.experiment
        if uri is not None and (not isinstance(uri, str) or not uri.strip()):
            raise RunError(f"mlflow tracking_uri must be a non-empty string, got {uri!r}")
        if experiment is not None and (not isinstance(experiment, str) or not experiment.strip()):
            raise RunError(f"mlflow experiment must be a non-empty string, got {experiment!r}")
        secs = self.flush_secs
        if isinstance(secs, bool) or not isinstance(secs, (int, float)) or not secs >= 0:
            raise RunError(f"mlflow flush_secs must be a number >= 0, got {secs!r}")


def mlflow_options(value: object) -> MLflowOptions | None:
    """``run(mlflow=...)``: ``False``/``None`` off, ``True`` defaults, a URI string, or options."""
    if value is None or value is False:
        return None
    if value is True:
        return MLflowOptions()
    if isinstance(value, str):
        return MLflowOptions(tracking_uri=value)
    if isinstance(value, MLflowOptions):
        return value
    raise RunError(
        f"mlflow must be True, a tracking URI string or MLflowOptions, got {type(value).__name__}"
    )


def default_tracking_uri(runs_root: Path) -> str:
    """``sqlite:///<absolute runs root>/mlflow.db``: one database beside the run folders."""
    return "sqlite:///" + (runs_root.resolve() / "mlflow.db").as_posix()


def uri_scheme(uri: str) -> str:
    return urlparse(uri).scheme.split("+", 1)[0].lower()


def _is_file_store(uri: str) -> bool:
    scheme = uri_scheme(uri)
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")  # C:\mlruns


def recorded_tracking_uri(run_dir: Path | None) -> str | None:
    """The tracking URI a run directory's mlflow.json names, if any."""
    path = None if run_dir is None else run_dir / MLFLOW_FILE
    if path is None or not path.is_file():
        return None
    try:
        uri = read_json(path).get("tracking_uri")
    except RunError:
        return None
    return uri if isinstance(uri, str) and uri else None


def require_mlflow(tracking_uri: str | None = None, run_dir: Path | None = None) -> None:
    """Fail early (before anything is written) when the mirror cannot work in this install.

    ``None`` stands for the URI recorded in ``run_dir``, else the default SQLite store. A
    file store (``./mlruns``, ``file:///``) is refused by MLflow 3 unless
    ``MLFLOW_ALLOW_FILE_STORE=true``; say so now.
    """
    try:
        import mlflow  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(_HINT) from exc
    uri = tracking_uri or recorded_tracking_uri(run_dir) or "sqlite:///mlflow.db"
    if uri_scheme(uri) in _DB_SCHEMES:
        for module in ("sqlalchemy", "alembic"):
            if importlib.util.find_spec(module) is None:
                raise MissingExtraError(
                    f"the MLflow store {uri} needs {module}: pip install 'legoml-track[mlflow]'"
                )
    if _is_file_store(uri):
        from mlflow.environment_variables import MLFLOW_ALLOW_FILE_STORE

        flag: Any = MLFLOW_ALLOW_FILE_STORE
        try:
            allowed = bool(flag.get())
        except ValueError:
            allowed = False
        if not allowed and _mlflow_major() >= 3:
            raise RunError(
                f"MLflow refuses the file store {uri}: set MLFLOW_ALLOW_FILE_STORE=true, or "
                "use a database such as sqlite:///mlruns.db"
            )


def _mlflow_major() -> int:
    version = getattr(sys.modules.get("mlflow"), "__version__", "0")
    head = str(version).split(".", 1)[0]
    return int(head) if head.isdigit() else 0
