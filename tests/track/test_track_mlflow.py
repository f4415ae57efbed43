"""The optional MLflow mirror, read back with the real ``mlflow.MlflowClient``: scalars,
params, tags, artifacts, status, resume into the same MLflow run, failures that never cost
the local run, and a clear error when mlflow is not installed."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
import structlog
import torch
from conftest import read_json
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from legoml.core import (
    CheckpointCallback,
    Context,
    Engine,
    Events,
    MetricsCallback,
    Priority,
    make_supervised_train_step,
)
from legoml.metrics import MeanLoss
from legoml.track import (
    MissingExtraError,
    MLflowOptions,
    RunError,
    TrackingCallback,
    read_scalars,
    resume_run,
    run,
    save_checkpoint,
)

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("sqlalchemy")
from mlflow import MlflowClient  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")


@pytest.fixture(scope="module")
def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs root whose default store (``mlflow.db`` in it) every test shares: creating
    an MLflow database takes seconds."""
    return tmp_path_factory.mktemp("shared-runs").resolve()


@pytest.fixture(scope="module")
def uri(shared_root: Path) -> str:
    return "sqlite:///" + (shared_root / "mlflow.db").as_posix()


def _client(uri: str) -> Any:
    return MlflowClient(tracking_uri=uri)


def _history(client: Any, run_id: str | None, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def _csv(run_dir: Path, name: str) -> list[tuple[int, float]]:
    return sorted((row.step, row.value) for row in read_scalars(run_dir) if row.name == name)


def _artifacts(client: Any, run_id: str | None, path: str | None = None) -> set[str]:
    found: set[str] = set()
    for entry in client.list_artifacts(run_id, path):
        found |= _artifacts(client, run_id, entry.path) if entry.is_dir else {entry.path}
    return found


def _warnings(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["log_level"] == "warning" and "mlflow" in e["event"]]


# -- what a run mirrors ----------------------------------------------------------------------
def test_scalars_params_tags_and_artifacts_are_mirrored(
    root: Path, tmp_path: Path, uri: str
) -> None:
    config = {"lr": 0.1, "model": {"widths": [8, 4], "act": "relu"}, "note": None, "amp": True}
    with run("mirror", root=root, config=config, seed=7, mlflow=uri) as r:
        for step in range(1, 8):
            r.log_scalars({"train/loss": 1.0 / step, "train/lr": 0.1 * step}, step=step, epoch=1)
        r.log_scalars({"val/accuracy": 0.75}, step=7, epoch=1)
        r.save_artifact(b"report", "reports/summary.txt")
        source = r.dir / "notes.txt"
        source.write_text("hi", encoding="utf-8")
        r.save_artifact(source, "notes.txt")
        save_checkpoint(r.checkpoints_dir / "step-00000007.pt", {"global_step": 7})
    client = _client(uri)
    found = client.get_run(r.mlflow_run_id)
    assert found.info.status == "FINISHED"
    assert found.info.run_name == "mirror"
    rows = read_scalars(r.dir)
    for name in ("train/loss", "train/lr", "val/accuracy"):
        assert _history(client, r.mlflow_run_id, name) == _csv(r.dir, name)
    stamps = {(m.step, m.timestamp) for m in client.get_metric_history(r.mlflow_run_id, "train/lr")}
    assert stamps == {(row.step, round(row.time * 1000)) for row in rows if row.name == "train/lr"}
    assert found.data.params == {
        "lr": "0.1",
        "model.widths.0": "8",
        "model.widths.1": "4",
        "model.act": "relu",
        "note": "None",
        "amp": "True",
    }
    tags = found.data.tags
    assert tags["legoml.seed"] == "7"
    assert tags["legoml.run_id"] == r.dir.name
    assert tags["legoml.version.legoml-track"] == r.meta["packages"]["legoml-track"]
    assert tags["legoml.torch"] == r.meta["torch"]
    assert tags.get("mlflow.source.git.commit") == r.meta["git_commit"]
    assert _artifacts(client, r.mlflow_run_id) == {
        "config.json",
        "meta.json",
        "artifacts/notes.txt",
        "artifacts/reports/summary.txt",
    }  # no checkpoints by default
    local = client.download_artifacts(r.mlflow_run_id, "meta.json", str(tmp_path))
    meta = json.loads(Path(local).read_text(encoding="utf-8"))
    assert meta["status"] == "completed"  # the final meta.json, written before the upload
    record = read_json(r.dir / "mlflow.json")
    assert record["run_id"] == r.mlflow_run_id and record["tracking_uri"] == uri


def test_default_store_is_sqlite_beside_the_runs(
    shared_root: Path, uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with run("default", root=shared_root, mlflow=MLflowOptions(log_checkpoints=True)) as r:
        r.log_scalar("train/loss", 0.5, step=1)
        save_checkpoint(r.checkpoints_dir / "step-00000001.pt", {"global_step": 1})
    assert read_json(r.dir / "mlflow.json")["tracking_uri"] == uri  # <root>/mlflow.db
    client = _client(uri)
    found = client.get_run(r.mlflow_run_id)
    assert client.get_experiment(found.info.experiment_id).name == shared_root.name
    assert "checkpoints/step-00000001.pt" in _artifacts(client, r.mlflow_run_id)
    assert (shared_root / "mlartifacts").is_dir()  # artifacts beside the database
    assert list(tmp_path.iterdir()) == []  # nothing in the working directory (no ./mlruns)


def test_names_mlflow_refuses_are_mapped_and_long_values_cut(root: Path, uri: str) -> None:
    config = {"long": "x" * 7000, "bad key!": 1}
    options = MLflowOptions(uri, experiment="named here")
    with run("names", root=root, config=config, mlflow=options) as r:
        r.log_scalars({"val/acc@top5": 0.5, "a//b": 1.0, "/lead": 2.0}, step=3)
    client = _client(uri)
    found = client.get_run(r.mlflow_run_id)
    assert client.get_experiment(found.info.experiment_id).name == "named here"
    assert found.data.metrics == {"val/acc_top5": 0.5, "a__b": 1.0, "_lead": 2.0}
    assert found.data.params["bad key_"] == "1"
    long = found.data.params["long"]
    assert len(long) == 6000 and long.startswith("xxx") and long.endswith("in config.json]")
    assert len(read_json(r.dir / "config.json")["long"]) == 7000  # the run keeps it whole


def test_scalars_are_sent_in_batches(root: Path, uri: str) -> None:
    client = _client(uri)
    with run("batches", root=root, mlflow=MLflowOptions(uri, flush_secs=3600)) as r:
        for step in range(1, 11):
            r.log_scalar("train/loss", float(step), step=step)
        assert client.get_metric_history(r.mlflow_run_id, "train/loss") == []  # still queued
        for step in range(11, 1002):
            r.log_scalar("train/loss", float(step), step=step)
        deadline = time.monotonic() + 60  # 1000 queued: sent now, not in an hour
        while len(client.get_metric_history(r.mlflow_run_id, "train/loss")) < 1000:
            assert time.monotonic() < deadline, "a full queue was never sent"
            time.sleep(0.05)
    assert _history(client, r.mlflow_run_id, "train/loss") == _csv(r.dir, "train/loss")


@pytest.mark.parametrize(
    ("error", "status"), [(ValueError("boom"), "FAILED"), (KeyboardInterrupt(), "KILLED")]
)
def test_a_crash_ends_the_mlflow_run_failed_or_killed(
    root: Path, uri: str, error: BaseException, status: str
) -> None:
    with pytest.raises(type(error)), run("crash", root=root, mlflow=uri) as r:
        r.log_scalar("train/loss", 0.25, step=1)
        raise error
    assert r.status == "failed"
    found = _client(uri).get_run(r.mlflow_run_id)
    assert found.info.status == status
    assert found.data.metrics == {"train/loss": 0.25}


def test_no_mirror_on_other_ranks(root: Path, uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    with run("rank1", root=root, mlflow=uri) as r:
        r.log_scalar("train/loss", 0.5, step=1)
    assert r.mlflow_run_id is None and not (r.dir / "mlflow.json").exists()
    assert len(read_scalars(r.dir)) == 1


# -- resume ----------------------------------------------------------------------------------
def test_resume_continues_the_same_run_and_logs_each_step_once(root: Path, uri: str) -> None:
    def values(step: int) -> dict[str, float]:
        return {"train/loss": 1.0 / step, "train/lr": 0.01 * step}

    with pytest.raises(RuntimeError), run("resume", root=root, config={"lr": 1}, mlflow=uri) as r:
        for step in range(1, 11):
            r.log_scalars(values(step), step=step)
        raise RuntimeError("killed after step 10; last checkpoint at step 6")
    first = r.mlflow_run_id
    client = _client(uri)
    assert client.get_run(first).info.status == "FAILED"
    config = {"lr": 2, "extra": "new"}
    with run(resume=r.dir, config=config, mlflow=True, rewind_to_step=6) as again:
        for step in range(7, 13):
            again.log_scalars(values(step), step=step)
    assert again.mlflow_run_id == first
    found = client.get_run(first)
    assert found.info.status == "FINISHED"
    for name in ("train/loss", "train/lr"):
        history = _history(client, first, name)
        assert [step for step, _ in history] == list(range(1, 13))  # each step once
        assert history == _csv(r.dir, name)
    assert found.data.params == {"lr": "1", "extra": "new"}  # MLflow cannot change a param
    assert found.data.tags["legoml.params_changed"] == "lr"
    assert found.data.tags["legoml.resumes"] == "1"


_KILLED_CHILD = """
import os, sys, time
from mlflow import MlflowClient
from legoml.track import MLflowOptions, run
r = run("killed", root=sys.argv[1], mlflow=MLflowOptions(sys.argv[2], flush_secs=3600))
def log(steps):
    for step in steps:
        r.log_scalars({"train/loss": 1.0 / step, "train/acc": step / 600}, step=step)
log(range(1, 501))  # 1000 values: a full queue, sent at once
client = MlflowClient(sys.argv[2])
while len(client.get_metric_history(r.mlflow_run_id, "train/acc")) < 500:
    time.sleep(0.05)
log(range(501, 601))  # 200 values wait for the next batch, an hour away
print(r.dir, flush=True)
os._exit(0)  # dies like SIGKILL: no close, the queued values are lost
"""


def test_resume_after_a_kill_sends_what_mlflow_missed(root: Path, uri: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_CHILD, str(root), uri],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    run_dir = Path(done.stdout.strip().splitlines()[-1])
    record = read_json(run_dir / "mlflow.json")
    client = _client(uri)
    assert client.get_run(record["run_id"]).info.status == "RUNNING"
    assert len(client.get_metric_history(record["run_id"], "train/loss")) == 500
    with run(resume=run_dir, mlflow=True, rewind_to_step=550) as r:  # checkpoint at 550
        for step in range(551, 601):
            r.log_scalars({"train/loss": 1.0 / step, "train/acc": step / 600}, step=step)
    assert r.mlflow_run_id == record["run_id"]
    for name in ("train/loss", "train/acc"):
        history = _history(client, r.mlflow_run_id, name)
        assert [step for step, _ in history] == list(range(1, 601))
        assert history == _csv(run_dir, name)
    assert client.get_run(r.mlflow_run_id).info.status == "FINISHED"


EPOCHS, STEPS = 2, 5


def _script(path: Path, uri: str, kill_at: int | None = None) -> Any:
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    context = Context(model, optimizer, nn.CrossEntropyLoss())
    engine = Engine(make_supervised_train_step(), context, [MetricsCallback(loss=MeanLoss())])
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(STEPS * 8, 4, generator=generator)
    y = torch.randint(0, 3, (STEPS * 8,), generator=generator)
    loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)

    def kill(engine: Any, context: Any) -> None:
        raise RuntimeError(f"killed at step {engine.state.global_step}")

    with resume_run(path, context, engine, config={"lr": 0.1}, tensorboard=True, mlflow=uri) as r:
        engine.callbacks += [
            TrackingCallback(r, log_every_n_steps=1),
            CheckpointCallback(r.checkpoints_dir, saver=save_checkpoint, every_n_steps=3),
        ]
        if kill_at is not None:
            engine.add_event_handler(
                Events.STEP_END(once=kill_at), kill, priority=Priority.CHECKPOINT + 1
            )
        engine.loop(loader, max_epochs=EPOCHS)
    return r


def test_resume_run_with_tensorboard_and_mlflow(tmp_path: Path, uri: str) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    path = tmp_path / "runs" / "exp"
    with pytest.raises(RuntimeError, match="killed at step 8"):
        _script(path, uri, kill_at=8)  # last checkpoint at step 6
    first = read_json(path / "mlflow.json")["run_id"]
    client = _client(uri)
    assert client.get_run(first).info.status == "FAILED"
    r = _script(path, uri)
    assert r.mlflow_run_id == first and r.status == "completed"
    assert client.get_run(first).info.status == "FINISHED"
    rows = read_scalars(path)
    assert Counter((row.step, row.name) for row in rows).most_common(1)[0][1] == 1
    for name in {row.name for row in rows}:
        history = _history(client, first, name)
        assert len({step for step, _ in history}) == len(history)  # no step twice
        assert history == _csv(path, name)
    assert [s for s, _ in _history(client, first, "train/step_loss")] == list(range(1, 11))
    accumulator = EventAccumulator(str(path / "tensorboard"))
    accumulator.Reload()
    assert {e.step for e in accumulator.Scalars("train/step_loss")} == set(range(1, 11))


# -- failures --------------------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("kind", ["server", "store"])
def test_an_unreachable_store_costs_one_warning_not_the_run(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    (tmp_path / "a-file").write_text("not a folder", encoding="utf-8")
    target = (
        f"http://127.0.0.1:{_closed_port()}"
        if kind == "server"
        else "sqlite:///" + (tmp_path / "a-file" / "mlflow.db").as_posix()  # cannot be created
    )
    with structlog.testing.capture_logs() as logs, run("down", root=root, mlflow=target) as r:
        for step in range(1, 4):
            r.log_scalar("train/loss", 1.0 / step, step=step)
        r.save_artifact(b"x", "a.bin")
    assert len(_warnings(logs)) == 1
    assert _warnings(logs)[0]["uri"] == target
    assert r.status == "completed" and r.mlflow_run_id is None
    assert [row.step for row in read_scalars(r.dir)] == [1, 2, 3]
    assert (r.artifacts_dir / "a.bin").read_bytes() == b"x"
    assert not (r.dir / "mlflow.json").exists()


def test_a_store_failing_mid_run_then_resume_sends_everything(root: Path, uri: str) -> None:
    client = _client(uri)
    with structlog.testing.capture_logs() as logs, run("midway", root=root, mlflow=uri) as r:
        r.log_scalar("train/loss", 1.0, step=1)
        client.delete_run(r.mlflow_run_id)  # the server now refuses every write to it
        for step in range(2, 5):
            r.log_scalar("train/loss", 1.0 / step, step=step)
    assert len(_warnings(logs)) == 1 and _warnings(logs)[0]["action"] == "log scalars"
    assert r.status == "completed" and len(read_scalars(r.dir)) == 4
    with run(resume=r.dir, mlflow=True) as again:  # a deleted MLflow run: a new one, caught up
        again.log_scalar("train/loss", 0.2, step=5)
    assert again.mlflow_run_id != r.mlflow_run_id
    assert _history(client, again.mlflow_run_id, "train/loss") == _csv(r.dir, "train/loss")


# -- bad input and missing extras ------------------------------------------------------------
def test_missing_mlflow_is_one_clear_error(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'legoml-track\[mlflow\]'"):
        run(root=root, mlflow=True)
    context = Context(nn.Linear(2, 2))
    engine = Engine(make_supervised_train_step(), context)
    with pytest.raises(MissingExtraError, match=r"legoml-track\[mlflow\]"):
        resume_run(root / "exp", context, engine, mlflow="sqlite:///x.db")
    assert not root.exists()  # refused before anything was written


def test_sqlite_store_without_sqlalchemy_is_one_clear_error(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)
    with pytest.raises(MissingExtraError, match=r"needs sqlalchemy: pip install"):
        run(root=root, mlflow=True)
    assert not root.exists()


def test_file_store_needs_mlflow_allow_file_store(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = (tmp_path / "mlruns").as_uri()
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(RunError, match="set MLFLOW_ALLOW_FILE_STORE=true"):
        run(root=root, mlflow=store)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    with run("file", root=root, mlflow=store) as r:
        r.log_scalar("train/loss", 0.5, step=2)
    assert _history(_client(store), r.mlflow_run_id, "train/loss") == [(2, 0.5)]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (3, "mlflow must be True, a tracking URI string or MLflowOptions"),
        ("  ", "tracking_uri must be a non-empty string"),
    ],
)
def test_bad_mlflow_options_are_refused(root: Path, option: Any, message: str) -> None:
    with pytest.raises(RunError, match=message):
        run(root=root, mlflow=option)
    assert not root.exists()


def test_bad_options_fields_are_refused() -> None:
    with pytest.raises(RunError, match="flush_secs must be a number >= 0"):
        MLflowOptions(flush_secs=-1)
    with pytest.raises(RunError, match="experiment must be a non-empty string"):
        MLflowOptions(experiment="")


def test_import_never_loads_mlflow(root: Path) -> None:
    code = (
        "import sys; from legoml.track import run\n"
        f"with run('plain', root={str(root)!r}) as r: r.log_scalar('a', 1.0, step=1)\n"
        "assert 'mlflow' not in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
