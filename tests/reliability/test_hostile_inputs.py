"""Hostile and broken inputs to ``legoml-mnist``: each is refused with exit code 1 and one
``error:`` line naming the problem, nothing in it runs, and nothing already written changes.

Most cases call the CLI's ``main()`` in-process (they fail before any training); a few run
the real command in a subprocess, where "no traceback" is checked on the process itself.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import pickle
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import torch
from reliability_helpers import (
    DATA_DIR,
    TRAIN_FLAGS,
    checkpoint_steps,
    cli,
    cli_env,
    latest_checkpoint,
    only_run_dir,
    scalar_rows,
)

from legoml.track import load_checkpoint, save_checkpoint
from legoml_mnist.cli import main

pytestmark = pytest.mark.integration

Runner = Callable[..., tuple[int, str, str]]


class Payload:
    """Pickles to ``os.system(command)``: what a booby-trapped checkpoint carries."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (self.command,))


def error_line(code: int, stderr: str) -> str:
    assert code == 1, stderr
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, stderr
    return lines[0]


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Runner]:
    """``app("train", ...)`` -> (exit code, stdout, stderr) of ``legoml-mnist`` in-process."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEGOML_DATA_DIR", str(DATA_DIR))
    monkeypatch.setenv("LEGOML_LOG_LEVEL", "warning")
    logging_config = structlog.get_config()
    threads = torch.get_num_threads()

    def invoke(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse
            code = int(exit_.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    yield invoke
    structlog.configure(**logging_config)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run directory (4 steps, checkpoints at 2 and 4) to copy and attack."""
    work = tmp_path_factory.mktemp("trained")
    done = cli("train", *TRAIN_FLAGS, "--epochs", "0.25", "--runs-root", "runs", cwd=work)
    assert done.returncode == 0, done.stderr
    run_dir = only_run_dir(work / "runs")
    assert checkpoint_steps(run_dir) == [2, 4]
    return run_dir


def copy_run(run_dir: Path, into: Path) -> Path:
    target = into / "runs" / run_dir.name
    shutil.copytree(run_dir, target)
    return target


# ----------------------------------------------------------------- malicious checkpoints


def _zip(path: Path, payload: Payload) -> None:
    torch.save({"engine": {}, "context": {"model": payload}, "global_step": 9}, path)


def _legacy(path: Path, payload: Payload) -> None:
    torch.save({"context": {"model": payload}}, path, _use_new_zipfile_serialization=False)


def _raw_pickle(path: Path, payload: Payload) -> None:
    path.write_bytes(pickle.dumps({"context": payload}))


@pytest.mark.parametrize("write", [_zip, _legacy, _raw_pickle], ids=["zip", "legacy", "pickle"])
def test_malicious_pickle_checkpoint_is_refused_and_never_runs(
    app: Runner, tmp_path: Path, trained: Path, write: Callable[[Path, Payload], None]
) -> None:
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    write(evil, Payload(f"touch {marker}"))
    run_dir = copy_run(trained, tmp_path)
    planted = run_dir / "checkpoints" / "step-99999999.pt"  # the newest checkpoint of the run
    shutil.copy(evil, planted)
    before = tree_digest(run_dir)
    line = error_line(*app("eval", "--checkpoint", str(evil))[::2])
    assert "refusing to load" in line and "never loads checkpoints unsafely" in line, line
    assert not marker.exists(), "eval: the payload ran"
    # --resume refuses a checkpoint outside any run directory before reading it
    line = error_line(*app("train", "--resume", str(evil), "--no-progress")[::2])
    assert "not inside a run directory" in line and "evil.pt" in line, line
    assert not marker.exists(), "train --resume: the payload ran"
    # Named through its run directory, the planted newest file is refused, or skipped (with
    # a warning) for the previous, safe checkpoint; it never runs either way.
    for args in (("eval", "--checkpoint", str(run_dir)), ("train", "--resume", str(run_dir), "--no-progress")):
        code, _, err = app(*args)
        if code == 0:
            assert "skipping incomplete checkpoint" in err and planted.name in err, err
        else:
            assert "refusing to load" in error_line(code, err)
            assert tree_digest(run_dir) == before
        assert not marker.exists(), f"{args}: the payload ran"
    assert planted.read_bytes() == evil.read_bytes()


def test_the_payload_is_live(tmp_path: Path) -> None:
    """Control: the same file does run its payload under an unsafe load, in a child process."""
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    _zip(evil, Payload(f"touch {marker}"))
    code = f"import torch; torch.load({str(evil)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, timeout=120)
    assert marker.exists()


def test_checkpoint_whose_config_names_an_import_path_is_refused(
    app: Runner, tmp_path: Path, trained: Path
) -> None:
    marker = tmp_path / "PWNED"
    state = load_checkpoint(latest_checkpoint(trained))
    state["config"] = {"type": "os.system", "command": f"touch {marker}"}
    save_checkpoint(tmp_path / "step-00000004.pt", state)
    line = error_line(*app("eval", "--checkpoint", str(tmp_path / "step-00000004.pt"))[::2])
    assert "os.system" in line and "not a registered Node" in line
    assert not marker.exists()


# ----------------------------------------------------------------- hostile configs


def _base_config() -> dict[str, Any]:
    from legoml_mnist import TrainerForImageClassificationNode

    return TrainerForImageClassificationNode().to_dict()


def _config(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    config = _base_config()
    change(config)
    return config


IMPORT_PATHS = {
    "top-level os.system": lambda c: c.update(type="os.system", command="touch {marker}"),
    "model subprocess.Popen": lambda c: c.update(
        model={"type": "subprocess.Popen", "args": ["touch", "{marker}"]}
    ),
    "optimizer builtins.eval": lambda c: c.update(
        optimizer={"type": "builtins.eval", "source": "open('{marker}', 'w')"}
    ),
    "scheduler posix.system": lambda c: c.update(scheduler={"type": "posix.system", "command": "touch {marker}"}),
    "unregistered plain name": lambda c: c.update(model={"type": "NoSuchNet"}),
}


@pytest.mark.parametrize("change", list(IMPORT_PATHS.values()), ids=list(IMPORT_PATHS))
def test_config_naming_an_import_path_or_unregistered_type_is_refused(
    app: Runner, tmp_path: Path, change: Callable[[dict[str, Any]], None]
) -> None:
    marker = tmp_path / "PWNED"
    text = json.dumps(_config(change)).replace("{marker}", str(marker))
    (tmp_path / "hostile.json").write_text(text)
    line = error_line(*app("train", "--config", "hostile.json", "--runs-root", "runs")[::2])
    assert "hostile.json" in line and "not a registered Node" in line, line
    assert not marker.exists()
    assert not (tmp_path / "runs").exists(), "a run directory was created"


def test_set_override_naming_an_import_path_is_refused(app: Runner, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    value = json.dumps({"type": "os.system", "command": f"touch {marker}"})
    line = error_line(*app("train", "--set", f"model={value}", "--runs-root", "runs")[::2])
    assert "not a registered Node" in line
    assert not marker.exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("depth", [100, 5000])
def test_deeply_nested_config_in_process(app: Runner, tmp_path: Path, depth: int) -> None:
    (tmp_path / "deep.json").write_text('{"model": ' * depth + "1" + "}" * depth)
    line = error_line(*app("train", "--config", "deep.json")[::2])
    assert "deep.json" in line and ("nested" in line or depth < 1000), line


def test_100000_levels_of_nesting_give_one_line_and_no_traceback(tmp_path: Path) -> None:
    for name, text in (
        ("objects.json", '{"a":' * 100_000 + "1" + "}" * 100_000),
        ("lists.json", "[" * 100_000 + "]" * 100_000),
    ):
        (tmp_path / name).write_text(text)
        done = cli("train", "--config", name, cwd=tmp_path, timeout=300)  # timeout: a guard only
        line = error_line(done.returncode, done.stderr)
        assert name in line and "nested" in line, line
        assert "RecursionError" not in done.stderr


def test_huge_config_file_is_refused_without_parsing_it(app: Runner, tmp_path: Path) -> None:
    config = _base_config()
    config["run_name"] = "x" * (8 << 20)  # 8 MB of otherwise valid JSON
    (tmp_path / "huge.json").write_text(json.dumps(config))
    line = error_line(*app("train", "--config", "huge.json", "--runs-root", "runs")[::2])
    assert "huge.json" in line and "larger than" in line, line
    assert not (tmp_path / "runs").exists()


def test_config_that_is_not_text_or_not_a_file_is_refused(app: Runner, tmp_path: Path) -> None:
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00{" + os.urandom(64))
    assert "binary.json" in error_line(*app("train", "--config", "binary.json")[::2])
    (tmp_path / "folder.json").mkdir()
    assert "folder.json" in error_line(*app("train", "--config", "folder.json")[::2])


NON_FINITE = {
    "lr NaN": ("optimizer", "lr", "NaN"),
    "epochs Infinity": (None, "epochs", "Infinity"),
    "label_smoothing -Infinity": ("task", "label_smoothing", "-Infinity"),
    "weight_decay NaN": ("optimizer", "weight_decay", "NaN"),
}


@pytest.mark.parametrize("where", list(NON_FINITE.values()), ids=list(NON_FINITE))
def test_nan_or_infinity_in_a_config_field_is_refused(
    app: Runner, tmp_path: Path, where: tuple[str | None, str, str]
) -> None:
    parent, field, literal = where
    config = _base_config()
    (config[parent] if parent else config)[field] = "@@"
    (tmp_path / "c.json").write_text(json.dumps(config).replace('"@@"', literal))
    line = error_line(*app("train", "--config", "c.json", "--runs-root", "runs")[::2])
    assert field in line and ("finite" in line or "float" in line), line
    key = f"{parent}.{field}" if parent else field
    line = error_line(*app("train", "--set", f"{key}={literal}", "--runs-root", "runs")[::2])
    assert field in line, line
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------------- corrupt data


def _truncate(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    return path


def _flip_byte(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def _wrong_content(path: Path) -> Path:
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[200] = (raw[200] + 1) % 10  # a valid IDX file with one wrong label
    path.unlink()
    plain = path.with_suffix("")
    plain.write_bytes(bytes(raw))
    return plain


CORRUPTIONS = {
    "truncated train images": ("train-images-idx3-ubyte.gz", _truncate, "truncated"),
    "bit flip in test labels": ("t10k-labels-idx1-ubyte.gz", _flip_byte, "corrupt"),
    "wrong train labels": ("train-labels-idx1-ubyte.gz", _wrong_content, "SHA-256"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS.values()), ids=list(CORRUPTIONS))
def test_corrupt_mnist_file_is_named_in_one_line(
    app: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: tuple[str, Any, str]
) -> None:
    name, corrupt, word = case
    data = tmp_path / "data"
    shutil.copytree(DATA_DIR / "mnist", data / "mnist")
    bad = corrupt(data / "mnist" / name)
    damaged = bad.read_bytes()
    monkeypatch.setenv("LEGOML_DATA_DIR", str(data))
    monkeypatch.delenv("LEGOML_MNIST_MIRROR", raising=False)
    line = error_line(*app("train", "--limit-train", "64", "--runs-root", "runs")[::2])
    assert bad.name in line and word in line, line
    assert not (tmp_path / "runs").exists(), "a run directory was created"
    assert bad.read_bytes() == damaged  # reported, not silently replaced or deleted


# ----------------------------------------------------------------- wrong or broken checkpoints


def test_checkpoint_of_another_model_is_refused_by_eval_and_resume(
    app: Runner, tmp_path: Path, trained: Path
) -> None:
    state = load_checkpoint(latest_checkpoint(trained))
    state["config"]["model"]["channels"] = [8, 16]
    other = tmp_path / "other-model.pt"
    save_checkpoint(other, state)
    line = error_line(*app("eval", "--checkpoint", str(other))[::2])
    assert "does not fit" in line and "shape" in line, line

    run_dir = copy_run(trained, tmp_path)
    before = tree_digest(run_dir)
    line = error_line(*app("train", "--resume", str(run_dir), "--set", "model.channels=[8,16]")[::2])
    assert "does not fit" in line, line
    assert tree_digest(run_dir) == before, "a refused resume changed the run directory"


def test_checkpoint_that_is_a_directory_empty_or_truncated(
    app: Runner, tmp_path: Path, trained: Path
) -> None:
    (tmp_path / "nothing").mkdir()
    (tmp_path / "empty.pt").touch()
    real = latest_checkpoint(trained).read_bytes()
    (tmp_path / "truncated.pt").write_bytes(real[: len(real) // 2])
    (tmp_path / "noise.pt").write_bytes(os.urandom(4096))
    empty_run = copy_run(trained, tmp_path)
    for checkpoint in (empty_run / "checkpoints").iterdir():
        checkpoint.unlink()
    cases = {
        "nothing": "no checkpoint",
        "empty.pt": "empty (0 bytes)",
        "truncated.pt": "truncated",
        "noise.pt": "corrupt",
        str(empty_run): "no checkpoint",
        "missing.pt": "does not exist",
    }
    for target, words in cases.items():
        line = error_line(*app("eval", "--checkpoint", target)[::2])
        assert words in line and Path(target).name in line, (target, line)
        if target == str(empty_run):
            continue  # a run killed before its first checkpoint restarts: see below
        line = error_line(*app("train", "--resume", target, "--no-progress")[::2])
        assert Path(target).name in line, (target, line)
    code, _, err = app("train", "--resume", str(empty_run), "--no-progress")
    assert code == 0, err
    assert json.loads((empty_run / "meta.json").read_text())["status"] == "completed"
    assert any((empty_run / "checkpoints").glob("step-*.pt"))


# ----------------------------------------------------------------- non-finite loss


def test_nan_loss_stops_training_and_the_last_good_checkpoint_survives(tmp_path: Path) -> None:
    """The 7th training loss is NaN (injected): training stops there with one clear line,
    step-6 is the newest checkpoint and its bytes and mtime never change."""
    env = cli_env(LEGOML_TEST_NAN_AT_STEP="7", LEGOML_TEST_FSYNC_DELAY="0")
    command = [sys.executable, str(Path(__file__).with_name("slow_checkpoint_writer.py")),
               "train", *TRAIN_FLAGS, "--epochs", "1", "--runs-root", "runs"]
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
                            stdout=subprocess.DEVNULL)
    good: tuple[bytes, int] | None = None
    while proc.poll() is None and good is None:
        runs = list((tmp_path / "runs").glob("*/checkpoints/step-00000006.pt"))
        if runs:
            good = (runs[0].read_bytes(), runs[0].stat().st_mtime_ns)
        time.sleep(0.001)
    _, stderr = proc.communicate(timeout=600)
    line = error_line(proc.returncode, stderr)
    assert "loss is nan" in line and "global step 7" in line, line
    run_dir = only_run_dir(tmp_path / "runs")
    newest = latest_checkpoint(run_dir)
    assert newest.name == "step-00000006.pt"
    if good is None:  # it finished before the poll saw step 6: compare with what is there
        good = (newest.read_bytes(), newest.stat().st_mtime_ns)
    assert (newest.read_bytes(), newest.stat().st_mtime_ns) == good
    state = load_checkpoint(newest)
    assert all(torch.isfinite(t).all() for t in state["context"]["model"].values() if t.is_floating_point())
    assert all(math.isfinite(float(value)) for _, _, value in scalar_rows(run_dir))
    assert max(step for step, _, _ in scalar_rows(run_dir)) == 6
    assert '"status": "failed"' in (run_dir / "meta.json").read_text()


def test_a_diverging_run_stops_clearly_and_keeps_finite_checkpoints(tmp_path: Path) -> None:
    """A real divergence (learning rate 1e4, no schedule), no injection."""
    done = cli("train", *TRAIN_FLAGS, "--epochs", "1", "--set", "scheduler=null",
               "--set", "optimizer.lr=10000", "--runs-root", "runs", cwd=tmp_path)
    line = error_line(done.returncode, done.stderr)
    assert "non-finite" in line or "loss is nan" in line or "loss is inf" in line, line
    run_dir = only_run_dir(tmp_path / "runs")
    for step in checkpoint_steps(run_dir):
        state = load_checkpoint(run_dir / "checkpoints" / f"step-{step:08d}.pt")
        for name, tensor in state["context"]["model"].items():
            assert not tensor.is_floating_point() or torch.isfinite(tensor).all(), (step, name)
    assert all(math.isfinite(float(value)) for _, _, value in scalar_rows(run_dir))
