"""A run directory: config, meta, crash-safe scalars and event logs, artifacts, checkpoints."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, SupportsFloat

import structlog

from legoml.track._atomic import atomic_write, atomic_write_json
from legoml.track._events import EventLog
from legoml.track._lines import LineAppender
from legoml.track._meta import environment_info, git_info, new_meta, now_iso, parse_iso
from legoml.track._mlflow_format import mlflow_status
from legoml.track._mlflow_options import MLflowOptions, mlflow_options, require_mlflow
from legoml.track._mlflow_sink import MLflowSink
from legoml.track._rundir import (
    check_name_and_seed,
    check_scalars_header,
    config_to_dict,
    find_run_dir,
    make_unique_dir,
    read_json,
    replace_config,
    slug,
)
from legoml.track._scalars import SCALARS_HEADER, format_rows, rewind_scalars, to_float
from legoml.track._tensorboard import TensorBoardSink, require_tensorboard
from legoml.track.errors import RunError

__all__ = ["Run", "config_to_dict", "run"]

log = structlog.get_logger(__name__)

Status = Literal["running", "completed", "failed"]
_TEXT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


class Run:
    """One experiment on disk. Create it with :func:`run`; use it as a context manager.

    Example::

        import tempfile
        from legoml.track import run

        with run("demo", root=tempfile.mkdtemp(), config={"lr": 0.1}) as r:
            r.log_scalars({"train/loss": 0.7}, step=1, epoch=1)
            r.set_final_metrics({"test/accuracy": 0.9})
        print(r.dir, r.status)
    """

    def __init__(
        self,
        directory: Path,
        meta: dict[str, Any],
        *,
        resumed: bool,
        tensorboard: bool,
        mlflow: MLflowOptions | None = None,
    ) -> None:
        self.dir = directory
        self.is_resumed = resumed
        self._meta = meta
        self._lock = threading.RLock()
        self._closed = False
        for sub in ("logs", "artifacts", "checkpoints"):
            (directory / sub).mkdir(exist_ok=True)
        self._scalars = LineAppender(directory / "logs" / "scalars.csv", header=SCALARS_HEADER)
        self._events = EventLog(directory / "logs" / "events.jsonl")
        self._tb: TensorBoardSink | None = None
        if tensorboard:
            self._tb = TensorBoardSink(directory / "tensorboard")
        self._write_meta()
        self._mlflow: MLflowSink | None = None
        if mlflow is not None:  # after config.json and meta.json: it reads both
            self._mlflow = MLflowSink(directory, meta, mlflow, resumed=resumed)

    # -- creation ---------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        name: str | None = None,
        root: str | Path = "runs",
        config: object = None,
        seed: int | None = None,
        *,
        tensorboard: bool = False,
        mlflow: bool | str | MLflowOptions = False,
    ) -> Run:
        """Make a new uniquely named run directory under ``root`` and start the run."""
        config_dict = config_to_dict(config)
        options = require_sinks(tensorboard, mlflow)
        root = Path(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
            directory = make_unique_dir(root, slug(name or "run"))
        except OSError as exc:
            raise RunError(f"cannot create a run under {root}: {exc.strerror or exc}") from exc
        return cls._start(directory, name or "run", config_dict, seed, tensorboard, options)

    @classmethod
    def create_at(
        cls,
        directory: str | Path,
        name: str | None = None,
        config: object = None,
        seed: int | None = None,
        *,
        tensorboard: bool = False,
        mlflow: bool | str | MLflowOptions = False,
    ) -> Run:
        """Start a new run in exactly ``directory`` (created if missing; it must be empty).

        For scripts that name their run directory themselves (``resume_run``); the run's name
        defaults to the folder's name.
        """
        config_dict = config_to_dict(config)
        options = require_sinks(tensorboard, mlflow)
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise RunError(f"cannot start a run in {directory}: it is not a directory; pass a new one")
        if directory.is_dir() and any(directory.iterdir()):
            raise RunError(
                f"cannot start a run in {directory}: it is not empty; pass a new or empty "
                "directory, or resume the run it holds"
            )
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunError(f"cannot create {directory}: {exc.strerror or exc}") from exc
        label = name or directory.resolve().name or "run"
        return cls._start(directory, label, config_dict, seed, tensorboard, options)

    @classmethod
    def _start(
        cls,
        directory: Path,
        name: str,
        config_dict: dict[str, Any],
        seed: int | None,
        tensorboard: bool,
        mlflow: MLflowOptions | None = None,
    ) -> Run:
        atomic_write_json(directory / "config.json", config_dict)
        meta = new_meta(name, directory.resolve().name, seed)
        new = cls(directory, meta, resumed=False, tensorboard=tensorboard, mlflow=mlflow)
        new._events.write("info", "run started", run=directory.name)
        log.info("run started", run=str(directory))
        return new

    @classmethod
    def resume(
        cls,
        path: str | Path,
        config: object = None,
        seed: int | None = None,
        *,
        tensorboard: bool = False,
        mlflow: bool | str | MLflowOptions = False,
        rewind_to_step: int | None = None,
        rewind_to_size: int | None = None,
    ) -> Run:
        """Reopen an existing run (or the run holding ``path``) and append to it.

        ``rewind_to_step`` (the step of the checkpoint being resumed) drops the scalar rows
        logged after it, so the steps that are trained again appear once; ``rewind_to_size``
        (:attr:`scalars_size` when that checkpoint was saved) also drops the rows logged
        after the checkpoint at its own step. With ``mlflow``, the MLflow run recorded in the
        run directory is continued (see :class:`MLflowSink`).
        """
        directory = find_run_dir(Path(path))
        meta = read_json(directory / "meta.json")
        check_scalars_header(directory / "logs" / "scalars.csv")
        config_dict = None if config is None else config_to_dict(config)
        options = require_sinks(tensorboard, mlflow, directory)
        # every check above comes before the first write, so a refused resume changes nothing
        if rewind_to_step is not None:
            rewind_scalars(directory / "logs" / "scalars.csv", rewind_to_step, rewind_to_size)
        entry: dict[str, Any] = {"time": now_iso(), "previous_status": meta.get("status")}
        if config_dict is not None:
            changed = replace_config(directory, config_dict)
            if changed:
                entry["config_changed"] = changed
        if seed is not None and seed != meta.get("seed"):
            entry["previous_seed"] = meta.get("seed")
            meta["seed"] = seed
        env = environment_info()
        entry.update(host=env["host"], pid=env["pid"], git_commit=git_info()["commit"])
        meta.update(status="running", end=None, duration_s=None, error=None)
        meta.update(host=env["host"], pid=env["pid"])
        meta.setdefault("resumes", []).append(entry)
        meta["final_metrics"] = meta.pop("final_metrics", None) or {}  # keep it the last key
        resumed = cls(directory, meta, resumed=True, tensorboard=tensorboard, mlflow=options)
        resumed._events.write("info", "run resumed", run=directory.name)
        log.info("run resumed", run=str(directory))
        return resumed

    # -- paths and state --------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self._meta.get("name", self.dir.name))

    @property
    def status(self) -> Status:
        status: Status = self._meta["status"]
        return status

    @property
    def meta(self) -> dict[str, Any]:
        """A copy of what meta.json holds."""
        with self._lock:
            return json.loads(json.dumps(self._meta, default=str))  # type: ignore[no-any-return]

    @property
    def logs_dir(self) -> Path:
        return self.dir / "logs"

    @property
    def artifacts_dir(self) -> Path:
        return self.dir / "artifacts"

    @property
    def checkpoints_dir(self) -> Path:
        return self.dir / "checkpoints"

    @property
    def scalars_size(self) -> int:
        """Bytes in logs/scalars.csv now; saved with a checkpoint, it lets a resume drop
        exactly the rows logged after that checkpoint (``rewind_to_size``)."""
        return os.path.getsize(self._scalars.path)

    @property
    def config(self) -> dict[str, Any]:
        return read_json(self.dir / "config.json")

    @property
    def mlflow_run_id(self) -> str | None:
        """The MLflow run mirroring this run (``run(..., mlflow=...)``), if it started."""
        return None if self._mlflow is None else self._mlflow.run_id

    # -- logging ----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RunError(f"run {self.dir} is closed; log inside the `with run(...)` block")

    def log_scalar(
        self, name: str, value: SupportsFloat, step: int, epoch: int | None = None
    ) -> None:
        """Append one value to logs/scalars.csv."""
        self.log_scalars({name: value}, step, epoch)

    def log_scalars(
        self, values: Mapping[str, SupportsFloat], step: int, epoch: int | None = None
    ) -> None:
        """Append one CSV row per value; on disk (in the OS) before this returns."""
        self._check_open()
        now = time.time()
        lines = format_rows(values.items(), step, epoch, now)
        try:
            self._scalars.write_lines(lines)
        except OSError as exc:
            raise RunError(
                f"could not write {self._scalars.path}: {exc.strerror or exc}; the rows "
                "logged before are intact (free space or fix the disk, then resume)"
            ) from exc
        if self._tb is not None:
            try:
                self._tb.log_scalars(values, step, epoch)
            except Exception as exc:  # the CSV is the source of truth; never fail training here
                log.warning("tensorboard write failed", run=str(self.dir), error=str(exc))
        if self._mlflow is not None:  # batched; it never raises
            self._mlflow.log_scalars(values, step, now)

    def log_text(self, name: str, text: str) -> Path:
        """Append ``text`` (plus a newline when missing) to ``logs/<name>.txt``."""
        self._check_open()
        if not _TEXT_NAME.match(name) or name.endswith(".txt"):
            raise RunError(f"text log name {name!r} must be a plain file stem like 'report'")
        path = self.logs_dir / f"{name}.txt"
        with self._lock, open(path, "a", encoding="utf-8") as handle:
            handle.write(text if text.endswith("\n") else text + "\n")
        return path

    def log_event(self, event: str, level: str = "info", **fields: Any) -> None:
        """Append a structured JSON line to logs/events.jsonl."""
        self._check_open()
        self._events.write(level, event, **fields)

    def structlog_tee(
        self, logger: Any, method_name: str, event_dict: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        """A structlog processor copying every log entry into this run's events.jsonl.

        ``structlog.configure(processors=[run.structlog_tee, *your_processors])``; after the run
        is closed it passes entries through untouched.
        """
        if not self._closed:
            fields = {key: value for key, value in event_dict.items() if key != "event"}
            self._events.write(method_name, str(event_dict.get("event", "")), **fields)
        return event_dict

    def save_artifact(self, source: str | os.PathLike[str] | bytes, name: str) -> Path:
        """Copy a file (or write bytes) to ``artifacts/<name>`` atomically; returns the path."""
        self._check_open()
        relative = Path(name)
        if not name or relative.is_absolute() or ".." in relative.parts:
            raise RunError(f"artifact name {name!r} must be a relative path inside artifacts/")
        target = self.artifacts_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            atomic_write(target, lambda handle: handle.write(data))
            self._mirror_artifact(target, relative)
            return target
        path = Path(source)
        if not path.is_file():
            raise RunError(f"artifact source {path} is not a file; pass a file path or bytes")

        def copy(handle: IO[bytes]) -> None:
            with open(path, "rb") as src:
                shutil.copyfileobj(src, handle)

        atomic_write(target, copy)
        self._mirror_artifact(target, relative)
        return target

    def _mirror_artifact(self, target: Path, relative: Path) -> None:
        if self._mlflow is not None:
            folder = relative.parent.as_posix()
            remote = "artifacts" if folder == "." else f"artifacts/{folder}"
            self._mlflow.log_artifact(target, remote)

    def set_final_metrics(self, metrics: Mapping[str, SupportsFloat]) -> None:
        """Merge ``metrics`` into meta.json's ``final_metrics`` (written immediately)."""
        values = {str(key): to_float(str(key), value) for key, value in metrics.items()}
        with self._lock:
            self._meta["final_metrics"].update(values)
            self._write_meta()

    # -- lifecycle --------------------------------------------------------------------------
    def _write_meta(self) -> None:
        with self._lock:
            atomic_write_json(self.dir / "meta.json", self._meta)

    def close(self, error: BaseException | str | None = None) -> None:
        """Finish the run: status ``completed`` (or ``failed`` with ``error``); idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            end = now_iso()
            start, stop = parse_iso(self._meta.get("start")), parse_iso(end)
            status: Status = "completed" if error is None else "failed"
            message = None
            if isinstance(error, BaseException):
                message = f"{type(error).__name__}: {error}".rstrip(": ")
            elif error is not None:
                message = error
            self._meta.update(status=status, end=end, error=message)
            if start is not None and stop is not None:
                self._meta["duration_s"] = round((stop - start).total_seconds(), 3)
            self._meta["final_metrics"] = self._meta.pop("final_metrics")  # keep it last
            try:
                self._events.write(
                    "info" if error is None else "error", f"run {status}", error=message
                )
            finally:
                self._scalars.close()
                self._events.close()
                if self._tb is not None:
                    self._tb.close()
                self._write_meta()
                if self._mlflow is not None:  # last: it uploads the final meta.json
                    self._mlflow.close(mlflow_status(error))
        if message is None:
            log.info("run finished", run=str(self.dir), status=status)
        else:
            log.warning("run finished", run=str(self.dir), status=status, error=message)

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, SystemExit) and exc.code in (None, 0):
            exc = None
        self.close(exc)

    def __repr__(self) -> str:
        return f"Run({str(self.dir)!r}, status={self.status!r})"


def require_sinks(
    tensorboard: bool, mlflow: bool | str | MLflowOptions, run_dir: Path | None = None
) -> MLflowOptions | None:
    """Refuse a sink this install cannot serve before the run writes anything; returns the
    MLflow options (``None``: no mirror). ``run_dir``: a resumed run's recorded MLflow URI."""
    if tensorboard:
        require_tensorboard()
    options = mlflow_options(mlflow)
    if options is not None:
        require_mlflow(options.tracking_uri, run_dir)
    return options


def run(
    name: str | None = None,
    root: str | Path = "runs",
    config: object = None,
    resume: str | Path | None = None,
    seed: int | None = None,
    *,
    tensorboard: bool = False,
    mlflow: bool | str | MLflowOptions = False,
    rewind_to_step: int | None = None,
    rewind_to_size: int | None = None,
) -> Run:
    """Start a run under ``root`` (or resume the run directory ``resume``); use with ``with``.

    ``mlflow`` mirrors the run to MLflow: ``True`` (``sqlite:///<root>/mlflow.db``), a
    tracking URI, or :class:`MLflowOptions`; needs ``legoml-track[mlflow]``.

    When resuming, ``rewind_to_step`` drops the scalar rows logged after that step (and
    ``rewind_to_size``, a saved :attr:`Run.scalars_size`, those logged after that point).
    Leaving the ``with`` block marks the run completed, or failed (with the error) when an
    exception escapes; rows already logged are on disk either way.
    """
    check_name_and_seed(name, seed)
    if resume is not None:
        return Run.resume(
            resume,
            config=config,
            seed=seed,
            tensorboard=tensorboard,
            mlflow=mlflow,
            rewind_to_step=rewind_to_step,
            rewind_to_size=rewind_to_size,
        )
    return Run.create(name, root, config, seed, tensorboard=tensorboard, mlflow=mlflow)
