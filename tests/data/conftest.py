"""Fixtures of the legoml-data tests: a clean environment and a tiny synthetic dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
from synthetic_idx import ENV_VARS, Tiny, make_tiny


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No dataset root or mirror from the caller's environment (the Makefile sets one)."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def tiny(tmp_path: Path, clean_env: None) -> Tiny:
    return make_tiny(tmp_path / "mirror")
