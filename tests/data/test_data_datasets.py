"""Dataset facts (classes, shape, mean/std) and the ``python -m legoml.data`` command."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from synthetic_idx import TINY_CLASSES, TINY_MEAN, TINY_STD, Tiny, make_tiny

import legoml.data.datasets as datasets_module
import legoml.data.mnist as mnist_module
from legoml.data import (
    DATASETS,
    FASHION_MNIST,
    MNIST,
    BatchLoader,
    DataConfigError,
    IdxDataset,
    load_mnist,
)

FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def test_builtin_facts() -> None:
    assert MNIST.classes == tuple("0123456789") and MNIST.num_classes == 10
    assert (MNIST.mean, MNIST.std, MNIST.image_shape) == ((0.1307,), (0.3081,), (1, 28, 28))
    assert FASHION_MNIST.classes == FASHION_CLASSES and FASHION_MNIST.num_classes == 10
    assert (FASHION_MNIST.mean, FASHION_MNIST.std) == ((0.2860,), (0.3530,))
    assert FASHION_MNIST.image_shape == (1, 28, 28)
    assert DATASETS == {"mnist": MNIST, "fashion-mnist": FASHION_MNIST}


def test_load_fills_the_split_facts(tiny: Tiny, tmp_path: Path) -> None:
    train = load_mnist("train", root=tmp_path, mirror=tiny.mirror, dataset=tiny.dataset)
    assert (train.mean, train.std, train.classes) == (TINY_MEAN, TINY_STD, TINY_CLASSES)
    x, _ = next(iter(BatchLoader.from_split(train, 12, shuffle=False)))
    expected = (tiny.train_images.unsqueeze(1).float() / 255 - 0.5) / 0.25
    assert torch.allclose(x, expected, atol=1e-5)


def test_other_image_sizes_go_through_the_same_path(tmp_path: Path, clean_env: None) -> None:
    tiny = make_tiny(tmp_path / "mirror", size=(5, 9))
    test = load_mnist("test", root=tmp_path / "root", mirror=tiny.mirror, dataset=tiny.dataset)
    assert test.images.shape == (5, 5, 9) and tiny.dataset.image_shape == (1, 5, 9)


def test_a_wrong_description_is_refused(tiny: Tiny, tmp_path: Path) -> None:
    wrong_shape = dataclasses.replace(tiny.dataset, image_shape=(1, 32, 32))
    with pytest.raises(DataConfigError, match=r"image_shape=\(1, 32, 32\) .* \(1, 28, 28\)"):
        load_mnist("train", root=tmp_path, mirror=tiny.mirror, dataset=wrong_shape)
    too_few = dataclasses.replace(tiny.dataset, classes=("a", "b"))
    with pytest.raises(DataConfigError, match="names 2 classes .* one name per label"):
        load_mnist("train", root=tmp_path, mirror=tiny.mirror, dataset=too_few)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"classes": ()}, "classes must be one non-empty name per label"),
        ({"classes": ("a", "")}, "classes"),
        ({"image_shape": (1, 28)}, "image_shape must be"),
        ({"image_shape": (1, 0, 28)}, "image_shape must be"),
        ({"mean": (0.1, 0.2)}, "mean has 2 values for 1-channel images"),
        ({"std": (0.0,)}, "std must be > 0"),
    ],
)
def test_bad_facts_are_refused(changes: dict[str, object], match: str) -> None:
    with pytest.raises(DataConfigError, match=match) as err:
        dataclasses.replace(MNIST, name="x", **changes)  # type: ignore[arg-type]
    assert "IdxDataset 'x'" in str(err.value)


def test_facts_are_required_keywords() -> None:
    with pytest.raises(TypeError, match="classes"):
        IdxDataset("x", MNIST.splits, MNIST.sha256, ())  # type: ignore[call-arg]


@pytest.fixture
def two_datasets(tmp_path: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Tiny stand-ins for both built-ins, each behind its own mirror variable."""
    for name, env, seed in [
        ("mnist", "LEGOML_MNIST_MIRROR", 0),
        ("fashion-mnist", "LEGOML_FASHION_MNIST_MIRROR", 1),
    ]:
        tiny = make_tiny(tmp_path / f"mirror-{name}", seed=seed)
        stand_in = dataclasses.replace(tiny.dataset, name=name, mirror_env=env)
        monkeypatch.setitem(datasets_module.DATASETS, name, stand_in)
        monkeypatch.setenv(env, str(tiny.mirror))
    return tmp_path / "root"


@pytest.mark.parametrize(
    ("args", "prepared"),
    [
        ([], ["mnist"]),
        (["--dataset", "fashion-mnist"], ["fashion-mnist"]),
        (["--all"], ["mnist", "fashion-mnist"]),
    ],
)
def test_cli_prepares_the_chosen_datasets(
    two_datasets: Path, capsys: pytest.CaptureFixture[str], args: list[str], prepared: list[str]
) -> None:
    assert mnist_module.main([str(two_datasets), *args]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "verified" in line]
    assert lines == [f"{name} verified in {two_datasets / name}" for name in prepared]
    assert sorted(p.name for p in two_datasets.iterdir()) == sorted(prepared)


def test_cli_refuses_an_unknown_dataset(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        mnist_module.main(["--dataset", "cifar"])
    assert exit_info.value.code == 2 and "invalid choice: 'cifar'" in capsys.readouterr().err


def test_module_entry_point_reports_one_error_line(tmp_path: Path, clean_env: None) -> None:
    missing = tmp_path / "missing"
    command = [sys.executable, "-m", "legoml.data", str(tmp_path / "root"), "--all"]
    env = {"PATH": "", "LEGOML_MNIST_MIRROR": str(missing)}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 1 and result.stdout == ""
    assert (
        result.stderr.startswith("error: mnist mirror directory") and result.stderr.count("\n") == 1
    )
