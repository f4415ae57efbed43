"""Optional MLflow mirror of a run: scalars, params, tags, artifacts and status.

The run directory stays the source of truth: MLflow gets a batched copy, and a failing
tracking server costs one warning, never the run. ``mlflow`` is imported only inside the
methods that talk to it, so ``import legoml.track`` never loads it. Settings and install
checks live in ``_mlflow_options``, name and value formatting in ``_mlflow_format``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, SupportsFloat

import structlog

from legoml.track._atomic import atomic_write_json
from legoml.track._mlflow_format import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_PER_BATCH,
    clip_tag_value,
    config_params,
    error_line,
    mlflow_key,
    run_tag,
    run_tags,
)
from legoml.track._mlflow_options import (
    MLFLOW_FILE,
    MLflowOptions,
    default_tracking_uri,
    recorded_tracking_uri,
    uri_scheme,
)
from legoml.track._rundir import read_json
from legoml.track._scalars import read_scalars, to_float

__all__ = ["MLflowSink"]

log = structlog.get_logger(__name__)


def _is_rank_zero() -> bool:
    """Rank 0 of ``torch.distributed`` (or of torchrun's ``RANK``), or not distributed."""
    torch = sys.modules.get("torch")
    dist = getattr(torch, "distributed", None)
    try:
        if dist is not None and dist.is_available() and dist.is_initialized():
            return int(dist.get_rank()) == 0
    except (RuntimeError, ValueError):
        pass
    rank = os.environ.get("RANK", "0").strip()
    return not rank.isdigit() or int(rank) == 0


class MLflowSink:
    """Mirrors one run directory to one MLflow run; never raises once started.

    Made by :class:`legoml.track.Run` for ``run(..., mlflow=...)``. A new run directory gets
    a new MLflow run, recorded in ``<run>/mlflow.json``; a resumed one continues that MLflow
    run and first sends the rows of ``scalars.csv`` that MLflow does not have yet (steps past
    the last one MLflow holds for each name), so an MLflow run never holds a (name, step)
    twice. Scalars are queued and sent by a background thread in batches (every
    ``flush_secs``, at 1000 values, and at close), so a slow store or server does not slow
    the training loop. Any MLflow error logs one warning and stops the mirror for the rest
    of the session; the local files go on, and resuming the run sends what MLflow missed.
    """

    def __init__(
        self,
        run_dir: Path,
        meta: Mapping[str, Any],
        options: MLflowOptions,
        *,
        resumed: bool,
    ) -> None:
        self.dir = run_dir
        self.options = options
        self.run_id: str | None = None
        self.tracking_uri: str | None = None
        self._client: Any = None
        self._metric_cls: Any = None
        self._lock = threading.Lock()  # guards the queue and the flags below
        self._wake = threading.Condition(self._lock)
        self._client_lock = threading.Lock()  # one MLflow call at a time
        self._sender: threading.Thread | None = None
        self._sending = False
        self._flush_asked = False
        self._stopping = False
        self._buffer: list[Any] = []
        self._keys: dict[str, str] = {}
        self._marks: dict[str, int] = {}  # key -> last step MLflow held when the run resumed
        self._uploaded: dict[str, tuple[int, int]] = {}  # artifact path -> (size, mtime_ns)
        self._last_flush = time.monotonic()
        self._broken = False
        self._closed = False
        if not _is_rank_zero():
            log.debug("mlflow mirror: not rank 0, nothing sent", run=str(run_dir))
            self._closed = True
            return
        try:
            self._start(meta, resumed)
        except Exception as exc:  # a server down or a store that cannot open: keep the run
            self._fail("start", exc)
            return
        self._sender = threading.Thread(target=self._send_loop, name="legoml-mlflow", daemon=True)
        self._sender.start()

    @property
    def active(self) -> bool:
        """True while scalars and artifacts still go to MLflow."""
        return self._client is not None and not self._broken and not self._closed

    # -- start ------------------------------------------------------------------------------
    def _start(self, meta: Mapping[str, Any], resumed: bool) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Metric

        self._metric_cls = Metric
        record_path = self.dir / MLFLOW_FILE
        record = read_json(record_path) if record_path.is_file() else {}
        uri = self.options.tracking_uri or recorded_tracking_uri(self.dir)
        if uri is None:
            uri = default_tracking_uri(self.dir.resolve().parent)
        self.tracking_uri = uri
        client = MlflowClient(tracking_uri=uri)
        run_id = self._existing_run(client, record, uri)
        config = read_json(self.dir / "config.json") if (self.dir / "config.json").is_file() else {}
        params = config_params(config)
        if run_id is None:
            run_id = self._create_run(client, meta, uri)
            self._log_params(client, run_id, params, {})
        else:
            client.update_run(run_id, status="RUNNING")
            known = dict(client.get_run(run_id).data.params)
            self._log_params(client, run_id, params, known)
        tags = [run_tag(key, value) for key, value in run_tags(self.dir, meta).items()]
        client.log_batch(run_id, tags=tags)
        self._client, self.run_id = client, run_id
        if resumed:
            self._catch_up()
        log.info("mlflow mirror started", run=str(self.dir), mlflow_run_id=run_id, uri=uri)

    def _existing_run(self, client: Any, record: Mapping[str, Any], uri: str) -> str | None:
        run_id = record.get("run_id")
        if not isinstance(run_id, str) or not run_id:
            return None
        if record.get("tracking_uri") != uri:
            log.warning(
                "mlflow: this run was mirrored to another tracking URI; starting a new MLflow run",
                run=str(self.dir),
                recorded=record.get("tracking_uri"),
                uri=uri,
            )
            return None
        from mlflow.exceptions import MlflowException

        try:
            found = client.get_run(run_id)
        except MlflowException:
            found = None
        if found is None or found.info.lifecycle_stage != "active":
            log.warning(
                "mlflow: the recorded MLflow run is gone or deleted; starting a new one",
                run=str(self.dir),
                mlflow_run_id=run_id,
            )
            return None
        return run_id

    def _create_run(self, client: Any, meta: Mapping[str, Any], uri: str) -> str:
        root = self.dir.resolve().parent
        name = self.options.experiment or root.name or "legoml"
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            location = None
            if uri_scheme(uri) == "sqlite":  # else MLflow puts artifacts in ./mlruns of the cwd
                database = Path(uri[len("sqlite:///") :])
                location = (database.resolve().parent / "mlartifacts").as_uri()
            try:
                experiment_id = client.create_experiment(name, artifact_location=location)
            except Exception:  # another process created it first
                experiment = client.get_experiment_by_name(name)
                if experiment is None:
                    raise
                experiment_id = experiment.experiment_id
        created = client.create_run(experiment_id, run_name=str(meta.get("name") or self.dir.name))
        run_id = str(created.info.run_id)
        atomic_write_json(
            self.dir / MLFLOW_FILE,
            {
                "tracking_uri": uri,
                "experiment": name,
                "experiment_id": experiment_id,
                "run_id": run_id,
            },
        )
        return run_id

    def _log_params(
        self, client: Any, run_id: str, params: Mapping[str, str], known: Mapping[str, str]
    ) -> None:
        """Send the params MLflow lacks; MLflow refuses to change a logged param, so a
        config changed on resume is named in a warning and the ``legoml.params_changed``
        tag (config.json and its archived predecessor hold both versions)."""
        from mlflow.entities import Param

        changed = sorted(
            key for key, value in params.items() if key in known and known[key] != value
        )
        new = [Param(key, value) for key, value in params.items() if key not in known]
        for start in range(0, len(new), MAX_PARAMS_PER_BATCH):
            client.log_batch(run_id, params=new[start : start + MAX_PARAMS_PER_BATCH])
        if changed:
            log.warning(
                "mlflow keeps the params of the run's first start; changed on resume",
                run=str(self.dir),
                params=changed,
            )
            client.set_tag(run_id, "legoml.params_changed", clip_tag_value(",".join(changed)))

    def _catch_up(self) -> None:
        """Queue the CSV rows past what MLflow already holds, name by name."""
        rows = read_scalars(self.dir)
        keys = {self._key(row.name) for row in rows}
        for key in sorted(keys):
            history = self._client.get_metric_history(self.run_id, key)
            if history:
                self._marks[key] = max(int(point.step) for point in history)
        missing = [row for row in rows if self._keep(self._key(row.name), row.step)]
        self._buffer.extend(
            self._metric_cls(self._key(r.name), r.value, round(r.time * 1000), r.step)
            for r in missing
        )
        if missing:
            log.info("mlflow: sending rows it missed", run=str(self.dir), rows=len(missing))
        pending, self._buffer = self._buffer, []
        self._send(pending)

    # -- logging ----------------------------------------------------------------------------
    def _key(self, name: str) -> str:
        key = self._keys.get(name)
        if key is None:
            key = self._keys[name] = mlflow_key(name)
            if key != name:
                log.debug("mlflow metric key differs from the scalar name", name=name, key=key)
        return key

    def _keep(self, key: str, step: int) -> bool:
        mark = self._marks.get(key)
        return mark is None or step > mark

    def log_scalars(self, values: Mapping[str, SupportsFloat], step: int, wall_time: float) -> None:
        """Queue the values for the sender thread (a few microseconds each)."""
        if not self.active:
            return
        stamp = round(float(f"{wall_time:.3f}") * 1000)  # the CSV's time, in milliseconds
        with self._lock:
            was_empty = not self._buffer
            for name, value in values.items():
                key = self._key(name)
                if self._keep(key, step):
                    self._buffer.append(self._metric_cls(key, to_float(name, value), stamp, step))
            if self._buffer and (was_empty or len(self._buffer) >= MAX_METRICS_PER_BATCH):
                self._wake.notify()  # the sender re-plans its wait

    def flush(self) -> None:
        """Send every queued value now and wait until MLflow has them (or the mirror failed)."""
        with self._lock:
            if self._sender is None or not self._sender.is_alive():
                return
            self._flush_asked = True
            self._wake.notify_all()
            while (self._buffer or self._sending) and self.active:
                self._wake.wait(timeout=1.0)
            self._flush_asked = False

    def _due_in(self) -> float | None:
        """Seconds until the queue should go out (0: now); ``None``: nothing queued."""
        if not self._buffer:
            return 0.0 if self._stopping else None
        if self._stopping or self._flush_asked or len(self._buffer) >= MAX_METRICS_PER_BATCH:
            return 0.0
        return max(0.0, self.options.flush_secs - (time.monotonic() - self._last_flush))

    def _send_loop(self) -> None:
        """The sender thread: wait until the queue is due, send it outside the lock."""
        while True:
            with self._lock:
                wait = self._due_in()
                while wait is None or wait > 0:
                    self._wake.wait(timeout=wait)
                    wait = self._due_in()
                if self._broken or (self._stopping and not self._buffer):
                    self._wake.notify_all()
                    return
                pending, self._buffer = self._buffer, []
                self._sending = True
                self._last_flush = time.monotonic()
            try:
                self._send(pending)
            finally:
                with self._lock:
                    self._sending = False
                    self._wake.notify_all()

    def _send(self, pending: list[Any]) -> None:
        try:
            with self._client_lock:
                for start in range(0, len(pending), MAX_METRICS_PER_BATCH):
                    batch = pending[start : start + MAX_METRICS_PER_BATCH]
                    self._client.log_batch(self.run_id, metrics=batch)
        except Exception as exc:
            with self._lock:
                self._fail("log scalars", exc)

    def log_artifact(self, path: Path, artifact_path: str | None) -> None:
        """Upload one file now (``save_artifact``); at close only changed files go again."""
        if not self.active:
            return
        self._upload(path, artifact_path)

    def _upload(self, path: Path, artifact_path: str | None) -> None:
        if self._broken or not path.is_file():
            return
        stat = path.stat()
        remote = f"{artifact_path}/{path.name}" if artifact_path else path.name
        signature = (stat.st_size, stat.st_mtime_ns)
        if self._uploaded.get(remote) == signature:
            return
        try:
            with self._client_lock:
                self._client.log_artifact(self.run_id, str(path), artifact_path)
        except Exception as exc:
            with self._lock:
                self._fail("upload artifact", exc)
            return
        self._uploaded[remote] = signature

    def _upload_tree(self, folder: Path, prefix: str) -> None:
        if not folder.is_dir():
            return
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.name.startswith("."):  # not atomic-write temps
                parent = path.parent.relative_to(folder).as_posix()
                self._upload(path, prefix if parent == "." else f"{prefix}/{parent}")

    def close(self, status: str) -> None:
        """Flush, upload config.json, meta.json and artifacts/ (and checkpoints/ when asked),
        then end the MLflow run with ``status``; idempotent."""
        with self._lock:
            if self._closed or self._stopping:
                return
            self._stopping = True
            self._wake.notify_all()
        if self._sender is not None:
            self._sender.join()  # sends what is queued; bounded by MLflow's request timeouts
        if self.active:
            for name in ("config.json", "meta.json"):
                self._upload(self.dir / name, None)
            self._upload_tree(self.dir / "artifacts", "artifacts")
            if self.options.log_checkpoints:
                self._upload_tree(self.dir / "checkpoints", "checkpoints")
        if self.active:
            try:
                with self._client_lock:
                    self._client.set_terminated(self.run_id, status)
            except Exception as exc:
                with self._lock:
                    self._fail("end run", exc)
        self._closed = True

    def _fail(self, action: str, exc: BaseException) -> None:
        """Warn once, then stop mirroring; the run's own files are unaffected. Called with
        ``_lock`` held, except at start (no sender thread yet)."""
        self._buffer.clear()
        if self._broken:
            return
        self._broken = True
        log.warning(
            "mlflow mirror failed; the run goes on with its local files only",
            run=str(self.dir),
            action=action,
            uri=self.tracking_uri,
            error=error_line(exc),
            fix="check the tracking server, then resume the run to send what MLflow missed",
        )
