"""Run directories: layout, file contents, failure handling, resume, bad input."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog
import torch
from conftest import csv_lines, read_json

import legoml.track._run as run_module
import legoml.track._rundir as rundir_module
from legoml.track import (
    SCALARS_HEADER,
    MissingExtraError,
    Run,
    RunError,
    read_scalars,
    run,
)


@dataclass
class FakeNode:
    """Structural stand-in for a legoml.nn Node: anything with to_dict()."""

    width: int = 32
    blocks: list[dict[str, Any]] = field(default_factory=lambda: [{"kind": "conv"}])

    def to_dict(self) -> dict[str, Any]:
        return {"type": "FakeNode", "width": self.width, "blocks": self.blocks}


def test_layout_and_contents(root: Path) -> None:
    with run("mnist baseline/1", root=root, config={"lr": 0.1}, seed=7) as r:
        assert r.status == "running"
        assert read_json(r.dir / "meta.json")["status"] == "running"
        r.log_scalars({"train/loss": 0.5, "train/acc": torch.tensor(0.25)}, step=10, epoch=1)
        r.log_scalar("val/accuracy", 0.75, step=10)
        r.log_text("report", "line one")
        r.log_text("report", "line two\n")
        r.log_event("custom event", answer=42)
        r.set_final_metrics({"test/accuracy": 0.9})
        r.set_final_metrics({"test/loss": torch.tensor(0.125)})
        assert r.checkpoints_dir == r.dir / "checkpoints"
        assert not r.is_resumed

    assert r.dir.parent == root
    assert "mnist-baseline-1" in r.dir.name  # unsafe characters replaced
    assert {p.name for p in r.dir.iterdir()} == {
        "config.json",
        "meta.json",
        "logs",
        "artifacts",
        "checkpoints",
    }
    assert read_json(r.dir / "config.json") == {"lr": 0.1}

    meta = read_json(r.dir / "meta.json")
    assert meta["status"] == "completed"
    assert meta["name"] == "mnist baseline/1"
    assert meta["seed"] == 7
    assert meta["error"] is None
    assert meta["start"] <= meta["end"]
    assert meta["duration_s"] >= 0
    assert meta["torch"] == torch.__version__.split("+")[0]
    assert meta["packages"]["legoml-track"]
    assert meta["python"].count(".") == 2
    assert "git_commit" in meta
    assert list(meta)[-1] == "final_metrics"  # meta.json ends with final_metrics
    assert meta["final_metrics"] == {"test/accuracy": 0.9, "test/loss": 0.125}

    lines = csv_lines(r.dir)
    assert lines[0] == SCALARS_HEADER == "step,epoch,name,value,time"
    assert [line.rsplit(",", 1)[0] for line in lines[1:]] == [
        "10,1,train/loss,0.5",
        "10,1,train/acc,0.25",
        "10,,val/accuracy,0.75",
    ]
    rows = read_scalars(r.dir)
    assert [(row.step, row.epoch, row.name, row.value) for row in rows] == [
        (10, 1, "train/loss", 0.5),
        (10, 1, "train/acc", 0.25),
        (10, None, "val/accuracy", 0.75),
    ]
    assert all(row.time > 1e9 for row in rows)

    assert (r.dir / "logs" / "report.txt").read_text() == "line one\nline two\n"
    events = [
        json.loads(line) for line in (r.dir / "logs" / "events.jsonl").read_text().splitlines()
    ]
    assert [e["event"] for e in events] == ["run started", "custom event", "run completed"]
    assert events[1]["answer"] == 42 and events[1]["level"] == "info" and "timestamp" in events[1]


def test_config_from_node_like_object(root: Path) -> None:
    with run(root=root, config=FakeNode(width=64)) as r:
        pass
    assert read_json(r.dir / "config.json") == {
        "type": "FakeNode",
        "width": 64,
        "blocks": [{"kind": "conv"}],
    }
    assert r.dir.name.split("-")[2] == "run"  # default name


def test_exception_marks_failed_and_keeps_rows(root: Path) -> None:
    with pytest.raises(ZeroDivisionError), run("crash", root=root) as r:
        for step in range(1, 51):
            r.log_scalar("train/loss", 1.0 / step, step=step)
        raise ZeroDivisionError("boom")
    meta = read_json(r.dir / "meta.json")
    assert meta["status"] == "failed"
    assert meta["error"] == "ZeroDivisionError: boom"
    assert meta["end"] is not None
    assert [row.step for row in read_scalars(r.dir)] == list(range(1, 51))
    events = (r.dir / "logs" / "events.jsonl").read_text().splitlines()
    assert json.loads(events[-1])["event"] == "run failed"


def test_keyboard_interrupt_marks_failed(root: Path) -> None:
    with pytest.raises(KeyboardInterrupt), run(root=root) as r:
        raise KeyboardInterrupt
    assert read_json(r.dir / "meta.json")["status"] == "failed"


def test_sys_exit_zero_counts_as_completed(root: Path) -> None:
    with pytest.raises(SystemExit), run(root=root) as r:
        raise SystemExit(0)
    assert read_json(r.dir / "meta.json")["status"] == "completed"


def test_logging_after_close_is_refused(root: Path) -> None:
    with run(root=root) as r:
        pass
    with pytest.raises(RunError, match="closed"):
        r.log_scalar("x", 1.0, step=1)
    r.close()  # idempotent
    assert r.status == "completed"


@pytest.mark.parametrize(
    ("name", "value", "step", "epoch", "match"),
    [
        ("", 1.0, 1, None, "non-empty"),
        ("a\nb", 1.0, 1, None, "line break"),
        ("x", "high", 1, None, "must be a number"),
        ("x", torch.ones(3), 1, None, "one-element tensor"),
        ("x", 1.0, 1.5, None, "step must be an int"),
        ("x", 1.0, True, None, "step must be an int"),
        ("x", 1.0, 1, "one", "epoch must be an int"),
    ],
)
def test_bad_scalars_are_rejected_without_writing(
    root: Path, name: Any, value: Any, step: Any, epoch: Any, match: str
) -> None:
    with run(root=root) as r:
        r.log_scalar("ok", 1.0, step=1)
        with pytest.raises(RunError, match=match):
            r.log_scalars({"fine": 2.0, name: value}, step=step, epoch=epoch)
    assert [row.name for row in read_scalars(r.dir)] == ["ok"]  # all-or-nothing per call


def test_names_with_commas_and_quotes_round_trip(root: Path) -> None:
    with run(root=root) as r:
        r.log_scalar('odd,name "quoted"', float("nan"), step=1)
        r.log_scalar("inf", float("inf"), step=2)
    rows = read_scalars(r.dir)
    assert rows[0].name == 'odd,name "quoted"' and rows[0].value != rows[0].value
    assert rows[1].value == float("inf")


def test_bad_config_makes_no_directory(root: Path) -> None:
    with pytest.raises(RunError, match="seed must be an int"):
        run(root=root, seed="0")  # type: ignore[arg-type]
    with pytest.raises(RunError, match="name must be a string"):
        run(3, root=root)  # type: ignore[arg-type]
    with pytest.raises(RunError, match="mapping or have to_dict"):
        run(root=root, config=[1, 2])
    with pytest.raises(RunError, match="JSON"):
        run(root=root, config={"fn": object()})
    assert not root.exists() or not any(root.iterdir())


def test_unique_names_when_suffixes_collide(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    suffixes = iter(["aaaaaa", "aaaaaa", "aaaaaa", "bbbbbb"])
    monkeypatch.setattr(rundir_module.secrets, "token_hex", lambda n: next(suffixes))
    monkeypatch.setattr(rundir_module, "_timestamp", lambda: "20240101-000000")
    with run("same", root=root) as first, run("same", root=root) as second:
        pass
    assert first.dir.name == "20240101-000000-same-aaaaaa"
    assert second.dir.name == "20240101-000000-same-bbbbbb"


def test_text_and_artifacts(root: Path, tmp_path: Path) -> None:
    source = tmp_path / "weights.bin"
    source.write_bytes(b"\x00\x01" * 100)
    with run(root=root) as r:
        copied = r.save_artifact(source, "model/weights.bin")
        written = r.save_artifact(b"hello", "notes.txt")
        for bad in ("../escape.txt", "/abs.txt", ""):
            with pytest.raises(RunError, match="relative path"):
                r.save_artifact(b"x", bad)
        with pytest.raises(RunError, match="not a file"):
            r.save_artifact(tmp_path, "dir")
        for bad in ("../x", "a/b", "", ".hidden", "scalars.txt"):
            with pytest.raises(RunError, match="plain file stem"):
                r.log_text(bad, "x")
    assert copied == r.dir / "artifacts" / "model" / "weights.bin"
    assert copied.read_bytes() == source.read_bytes()
    assert written.read_bytes() == b"hello"
    assert not list((r.dir / "artifacts").rglob(".*"))  # no temp files left


def test_resume_appends_without_second_header(root: Path) -> None:
    with run("resumable", root=root, config={"lr": 0.1}, seed=1) as first:
        first.log_scalar("train/loss", 1.0, step=1, epoch=1)
        first.set_final_metrics({"val/accuracy": 0.5})
    with pytest.raises(RuntimeError), run(resume=first.dir) as second:
        assert second.is_resumed and second.dir == first.dir
        assert read_json(first.dir / "meta.json")["status"] == "running"
        second.log_scalar("train/loss", 0.5, step=2, epoch=1)
        raise RuntimeError("crash again")
    assert read_json(first.dir / "meta.json")["status"] == "failed"
    with run(resume=first.dir / "checkpoints" / "step-00000002.pt") as third:  # a path inside
        third.log_scalar("new/metric", 3.0, step=3, epoch=2)
        third.set_final_metrics({"test/accuracy": 0.9})

    lines = csv_lines(first.dir)
    assert lines.count(SCALARS_HEADER) == 1 and lines[0] == SCALARS_HEADER
    assert [(row.step, row.name) for row in read_scalars(first.dir)] == [
        (1, "train/loss"),
        (2, "train/loss"),
        (3, "new/metric"),
    ]
    meta = read_json(first.dir / "meta.json")
    assert meta["status"] == "completed" and meta["error"] is None
    assert meta["seed"] == 1
    assert len(meta["resumes"]) == 2
    assert meta["resumes"][0]["previous_status"] == "completed"
    assert meta["resumes"][1]["previous_status"] == "failed"
    assert meta["final_metrics"] == {"val/accuracy": 0.5, "test/accuracy": 0.9}
    assert list(meta)[-1] == "final_metrics"
    assert read_json(first.dir / "config.json") == {"lr": 0.1}
    assert len(list(root.iterdir())) == 1


def test_resume_with_changed_config_keeps_the_old_one(root: Path) -> None:
    with run(root=root, config={"lr": 0.1, "epochs": 2}) as first:
        pass
    with run(resume=first.dir, config={"lr": 0.1, "epochs": 5}):
        pass
    assert read_json(first.dir / "config.json")["epochs"] == 5
    archived = first.dir / "artifacts" / "config-before-resume-1.json"
    assert read_json(archived)["epochs"] == 2
    assert read_json(first.dir / "meta.json")["resumes"][0]["config_changed"] == ["epochs"]


def test_resume_bad_paths(root: Path, tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no meta.json"):
        run(resume=tmp_path / "nowhere")
    with run(root=root) as r:
        pass
    (r.dir / "logs" / "scalars.csv").write_text("a,b\n1,2\n")
    with pytest.raises(RunError, match="header"):
        run(resume=r.dir)
    (r.dir / "meta.json").write_text("{not json")
    with pytest.raises(RunError, match="meta.json"):
        run(resume=r.dir)


def test_resume_truncates_a_partial_last_line(root: Path) -> None:
    with run(root=root) as r:
        r.log_scalar("a", 1.0, step=1)
    csv_path = r.dir / "logs" / "scalars.csv"
    with open(csv_path, "a") as handle:
        handle.write("2,,a,0.")  # a writer died mid-line
    with run(resume=r.dir) as again:
        again.log_scalar("a", 3.0, step=3)
    assert csv_lines(r.dir)[1:] and [row.step for row in read_scalars(r.dir)] == [1, 3]
    assert all(line.count(",") == 4 for line in csv_lines(r.dir))


def test_structlog_tee_copies_entries_into_the_run(root: Path) -> None:
    captured: list[dict[str, Any]] = []

    def capture(logger: Any, method: str, event_dict: Any) -> str:
        captured.append(dict(event_dict))
        return ""

    with run(root=root) as r:
        logger = structlog.wrap_logger(
            structlog.ReturnLogger(), processors=[r.structlog_tee, capture]
        )
        logger.warning("disk almost full", free_gb=1.5)
    logger.info("after close")  # the tee passes through once the run is closed
    events = [json.loads(x) for x in (r.dir / "logs" / "events.jsonl").read_text().splitlines()]
    tee = [e for e in events if e["event"] == "disk almost full"]
    assert tee == [
        {
            "free_gb": 1.5,
            "level": "warning",
            "event": "disk almost full",
            "timestamp": tee[0]["timestamp"],
        }
    ]
    assert [c["event"] for c in captured] == ["disk almost full", "after close"]


def test_tensorboard_missing_gives_a_clear_message(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(__import__("sys").modules, "torch.utils.tensorboard", None)
    with pytest.raises(MissingExtraError, match=r"legoml-track\[tensorboard\]"):
        run(root=root, tensorboard=True)
    assert not root.exists() or not any(root.iterdir())  # checked before creating anything


def test_tensorboard_sink_mirrors_scalars(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, float, int]] = []

    class FakeWriter:
        def __init__(self, log_dir: str, flush_secs: int) -> None:
            self.log_dir = log_dir

        def add_scalar(self, name: str, value: float, global_step: int) -> None:
            calls.append((name, value, global_step))

        def flush(self) -> None: ...

        def close(self) -> None:
            calls.append(("closed", 0.0, 0))

    monkeypatch.setattr(run_module, "require_tensorboard", lambda: FakeWriter)
    import legoml.track._tensorboard as tb

    monkeypatch.setattr(tb, "require_tensorboard", lambda: FakeWriter)
    with run(root=root, tensorboard=True) as r:
        r.log_scalars({"train/loss": 0.5}, step=3)
    assert calls == [("train/loss", 0.5, 3), ("closed", 0.0, 0)]
    assert [row.value for row in read_scalars(r.dir)] == [0.5]


def test_tensorboard_event_files_hold_the_scalars(root: Path) -> None:
    """The real writer: TensorBoard's own reader finds every logged value in the run."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with run("tb", root=root, tensorboard=True) as r:
        for step in (1, 2, 3):
            r.log_scalars({"train/loss": 1.0 / step, "train/lr": 0.1}, step=step, epoch=1)
    accumulator = EventAccumulator(str(r.dir / "tensorboard"))
    accumulator.Reload()
    assert set(accumulator.Tags()["scalars"]) == {"train/loss", "train/lr"}
    losses = [(e.step, e.value) for e in accumulator.Scalars("train/loss")]
    assert losses == [(1, 1.0), (2, 0.5), (3, pytest.approx(1 / 3))]
    assert [row.value for row in read_scalars(r.dir)][:2] == [1.0, 0.1]  # the CSV as well


def test_import_and_cli_listing_stay_light(root: Path) -> None:
    import subprocess
    import sys

    with run("light", root=root) as r:
        r.log_scalar("a", 1.0, step=1)
    code = (
        "import sys, legoml.track as t; from legoml.track.cli import main; "
        f"main(['ls', {str(root)!r}]); main(['show', {str(r.dir)!r}]); "
        "assert 'legoml.core' not in sys.modules, 'core'; "
        "assert 'torch' not in sys.modules, 'torch'; "
        "assert 'matplotlib' not in sys.modules, 'matplotlib'; "
        "t.load_checkpoint; assert 'torch' in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert r.dir.name in done.stdout


def test_create_at_starts_a_run_in_exactly_that_directory(tmp_path: Path) -> None:
    with Run.create_at(tmp_path / "a" / "exp", config={"lr": 1}, seed=2) as r:
        r.log_scalar("x", 1.0, step=1)
    assert r.dir == tmp_path / "a" / "exp"
    meta = read_json(r.dir / "meta.json")
    assert (meta["name"], meta["id"], meta["seed"]) == ("exp", "exp", 2)
    assert meta["status"] == "completed"
    assert read_json(r.dir / "config.json") == {"lr": 1}
    (tmp_path / "empty").mkdir()
    with Run.create_at(tmp_path / "empty", name="named") as named:
        assert named.name == "named"


def test_create_at_refuses_a_used_directory_or_a_file(tmp_path: Path) -> None:
    with run("r", root=tmp_path) as r:
        pass
    before = (r.dir / "meta.json").read_bytes()
    with pytest.raises(RunError, match="it is not empty; pass a new or empty directory"):
        Run.create_at(r.dir)
    assert (r.dir / "meta.json").read_bytes() == before
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="it is not a directory"):
        Run.create_at(tmp_path / "file")
    with pytest.raises(RunError, match="config must be a mapping"):
        Run.create_at(tmp_path / "new", config=3)
    assert not (tmp_path / "new").exists()
