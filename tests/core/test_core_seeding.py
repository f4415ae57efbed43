"""seed_everything: python, torch and (already imported) numpy generators, determinism flags."""

from __future__ import annotations

import random
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from legoml.core import seed_everything
from legoml.core.errors import EngineError


@pytest.fixture
def restore_determinism(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Give back torch's global determinism settings and the cuBLAS variable afterwards."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    algorithms = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    cudnn_deterministic = torch.backends.cudnn.deterministic
    yield
    torch.use_deterministic_algorithms(algorithms, warn_only=warn_only)
    torch.backends.cudnn.benchmark = benchmark
    torch.backends.cudnn.deterministic = cudnn_deterministic


def draws() -> tuple[float, torch.Tensor]:
    return random.random(), torch.rand(3)


def test_same_seed_same_draws_other_seed_other_draws() -> None:
    seed_everything(123)
    first = draws()
    seed_everything(123)
    second = draws()
    seed_everything(124)
    other = draws()
    assert first[0] == second[0] and torch.equal(first[1], second[1])
    assert first[0] != other[0] and not torch.equal(first[1], other[1])


def test_numpy_is_seeded_when_already_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    seeds: list[int] = []
    fake = types.SimpleNamespace(random=types.SimpleNamespace(seed=seeds.append))
    monkeypatch.setitem(sys.modules, "numpy", fake)
    seed_everything(7)
    assert seeds == [7]


def test_numpy_is_not_imported_when_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "numpy", raising=False)
    seed_everything(7)
    assert "numpy" not in sys.modules


def test_real_numpy_draws_repeat() -> None:
    numpy = pytest.importorskip("numpy")
    seed_everything(5)
    first = numpy.random.rand(3)
    seed_everything(5)
    assert (numpy.random.rand(3) == first).all()


def test_cuda_generators_are_seeded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    seeds: list[int] = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", seeds.append)
    seed_everything(11)
    assert seeds and set(seeds) == {11}


@pytest.mark.usefixtures("restore_determinism")
def test_deterministic_mode_sets_torch_flags_and_cublas_workspace() -> None:
    import os

    torch.backends.cudnn.benchmark = True
    seed_everything(0, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.backends.cudnn.benchmark is False
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


@pytest.mark.usefixtures("restore_determinism")
def test_deterministic_mode_keeps_a_cublas_setting_already_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    seed_everything(0, deterministic=True)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


@pytest.mark.usefixtures("restore_determinism")
def test_default_mode_leaves_determinism_settings_alone() -> None:
    import os

    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.benchmark = True
    seed_everything(0)
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.benchmark is True
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ


@pytest.mark.parametrize("bad", [True, False, 1.0, "1", None, -1, 2**32])
def test_bad_seeds_are_refused(bad: Any) -> None:
    with pytest.raises(EngineError, match=r"seed_everything\(seed=\.\.\.\) must be an int"):
        seed_everything(bad)


def test_largest_seed_is_accepted() -> None:
    seed_everything(2**32 - 1)
