"""Property sweep: any hostile value for any field of the default config, set with
``legoml-mnist train --set path=value``, ends in an exit code and at most one ``error:`` line,
never a traceback; a refused value leaves no run directory behind (except a size that only
fails once training runs, e.g. an augment shift too large to allocate).

``main()`` runs in-process on a 64-example slice (batch size 16 so valid values do train).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import structlog
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_helpers import DATA_DIR

from legoml_mnist.cli import main
from legoml_mnist.recipes import recipe

pytestmark = pytest.mark.integration


def _paths(value: Any, prefix: str = "") -> Iterator[str]:
    """Every dotted path of a config JSON tree (containers and their leaves)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("type", "format") and prefix:
                continue
            path = f"{prefix}.{key}" if prefix else key
            if key == "type":
                continue
            yield path
            yield from _paths(item, path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            path = f"{prefix}.{index}"
            yield path
            yield from _paths(item, path)


PATHS = sorted(set(_paths(recipe().to_dict())) - {"format"})

_TEXT = st.one_of(
    st.just(""), st.just("x" * 5000), st.text(max_size=30), st.sampled_from(["é🙂\u202e", "\x00", "=", "a.b"])
)
_INTS = st.one_of(
    st.sampled_from([0, -1, -(2**63), 2**31, 2**63, 2**64 + 1, 10**20, 10**400 // 10**380]),
    st.integers(),
)
_FLOATS = st.sampled_from(["nan", "inf", "-inf", "1e400", "-1e400", "1e-400", "1e30", "-0.0", "0.5"])
_JSONABLE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
VALUES = st.one_of(
    _INTS.map(str),
    _FLOATS,
    _TEXT,
    _JSONABLE.map(json.dumps),
    st.sampled_from(["null", "true", "[]", "{}", '{"type": "SGDNode"}', '{"type": "Nope"}', "[1e400]"]),
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(path=st.sampled_from(PATHS), value=VALUES)
def test_any_hostile_override_gives_one_clean_line(
    path: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEGOML_DATA_DIR", str(DATA_DIR))
    monkeypatch.setenv("LEGOML_LOG_LEVEL", "warning")
    logging_config = structlog.get_config()
    threads = torch.get_num_threads()
    out, err = io.StringIO(), io.StringIO()
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        argv = [
            "train", "--set", "loader.batch_size=16", "--set", f"{path}={value}",
            "--runs-root", str(runs), "--limit-train", "64", "--limit-test", "32",
            "--epochs", "0.1", "--no-progress", "--device", "cpu",
        ]  # fmt: skip
        home = os.getcwd()
        os.chdir(tmp)  # runs_root / dataset.root values are relative to here
        try:
            assert Path.cwd() == Path(tmp).resolve()
            with redirect_stdout(out), redirect_stderr(err):
                try:
                    code = main(argv)
                except SystemExit as exit_:  # argparse
                    code = int(exit_.code or 0)
        finally:
            os.chdir(home)
            structlog.configure(**logging_config)
            torch.set_num_threads(threads)
        made = sorted(p.name for p in runs.iterdir()) if runs.is_dir() else []
        made += [p.name for p in Path(tmp).iterdir() if p.name != "runs" and any(p.rglob("*.json"))]
    stderr = err.getvalue()
    assert isinstance(code, int), (path, value)
    assert "Traceback" not in stderr, (path, value, stderr)
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) <= 1, (path, value, stderr)
    if code != 0:
        assert len(errors) == 1, (path, value, code, stderr)
        if "too large for this machine" not in errors[0]:  # found only once the run has begun
            assert made == [], (path, value, made, stderr)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.in_channels=3", "model.in_channels=3"),
        ("epochs=1e400", "epochs"),
        ("seed=1e30", "seed"),
        ("optimizer.lr=1e-400", "optimizer.lr"),
        ("threads=99999999999999999999", "too large"),
    ],
)
def test_named_hostile_values_are_one_line(
    override: str, expected: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LEGOML_DATA_DIR", str(DATA_DIR))
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    try:
        code = main([
            "train", "--set", "loader.batch_size=16", "--set", override,
            "--runs-root", str(tmp_path / "runs"), "--limit-train", "64", "--limit-test", "32",
            "--epochs", "0.1", "--no-progress", "--device", "cpu",
        ])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(lines) == 1 and expected in lines[0], err
    assert "Traceback" not in err and not (tmp_path / "runs").exists()
