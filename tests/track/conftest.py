"""Shared helpers for the legoml-track tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A fresh runs root."""
    return tmp_path / "runs"


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def csv_lines(run_dir: Path) -> list[str]:
    return (run_dir / "logs" / "scalars.csv").read_text(encoding="utf-8").splitlines()
