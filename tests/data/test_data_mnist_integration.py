"""Real MNIST and Fashion-MNIST (from a mirror or Debian's package) through legoml-data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from legoml.data import (
    FASHION_MNIST,
    MNIST,
    BatchLoader,
    RandomShift,
    limit,
    load_fashion_mnist,
    load_mnist,
    pixel_stats,
    train_val_split,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
FASHION_DEB = Path("/usr/share/datasets/fashion-mnist")
FASHION_MIRROR = os.environ.get("LEGOML_FASHION_MNIST_MIRROR")
needs_fashion_mirror = pytest.mark.skipif(
    not FASHION_MIRROR, reason="LEGOML_FASHION_MNIST_MIRROR is not set"
)


def data_root() -> Path:
    return Path(os.environ.get("LEGOML_DATA_DIR") or REPO / "data")


def test_mnist_label_counts_and_shapes() -> None:
    train = load_mnist("train", root=data_root())
    test = load_mnist("test", root=data_root())
    assert train.images.shape == (60000, 28, 28) and test.images.shape == (10000, 28, 28)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert torch.bincount(train.labels, minlength=10).tolist() == TRAIN_COUNTS
    assert torch.bincount(test.labels, minlength=10).tolist() == TEST_COUNTS


def test_batch_loader_over_real_mnist() -> None:
    train, val = train_val_split(load_mnist("train", root=data_root()), val_size=5000, seed=0)
    assert (len(train), len(val)) == (55000, 5000)
    loader = BatchLoader.from_split(train, 128, seed=0)
    labels = torch.cat([y for _, y in loader])
    assert len(loader) == 430 and labels.numel() == 55000
    assert torch.equal(torch.bincount(labels, minlength=10), torch.bincount(train.labels))
    x, _ = next(iter(BatchLoader.from_split(limit(train, 1000), 1000, shuffle=False)))
    # Normalized with MNIST's own statistics: roughly zero mean, unit spread.
    assert abs(float(x.mean())) < 0.1 and 0.9 < float(x.std()) < 1.1


@pytest.mark.skipif(not FASHION_DEB.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_fashion_mnist_through_the_same_code_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LEGOML_FASHION_MNIST_MIRROR", raising=False)
    train = load_fashion_mnist("train", root=tmp_path)
    test = load_fashion_mnist("test", root=tmp_path)
    assert train.images.shape == (60000, 28, 28) and test.images.shape == (10000, 28, 28)
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert (tmp_path / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").is_file()


def test_from_split_is_bit_identical_to_the_old_mnist_default() -> None:
    train = load_mnist("train", root=data_root())
    assert (train.mean, train.std, train.classes) == (MNIST.mean, MNIST.std, MNIST.classes)
    loader = BatchLoader.from_split(train, 128, seed=0)
    indices = loader.epoch_indices(0)
    for index, (x, _) in zip(range(3), loader, strict=False):
        chosen = train.images.index_select(0, indices[index * 128 : (index + 1) * 128])
        old = chosen.unsqueeze(1).to(torch.float32).mul_(1.0 / (255.0 * 0.3081))
        assert torch.equal(x, old.sub_(0.1307 / 0.3081))
    shifted = BatchLoader.from_split(train, 128, seed=0, transform=RandomShift(2))
    unit = BatchLoader(train.images, train.labels, 128, seed=0, transform=RandomShift(2))
    (x, _), (u, _) = next(iter(shifted)), next(iter(unit))
    assert torch.equal(x, torch.sub(u, 0.1307).div_(0.3081))


def test_mnist_statistics_match_the_train_split() -> None:
    mean, std = pixel_stats(load_mnist("train", root=data_root()).images)
    assert abs(mean[0] - MNIST.mean[0]) < 1e-3 and abs(std[0] - MNIST.std[0]) < 1e-3


@needs_fashion_mirror
def test_fashion_mnist_facts_match_the_real_data() -> None:
    train = load_fashion_mnist("train", root=data_root())
    assert train.classes == FASHION_MNIST.classes and train.classes[0] == "T-shirt/top"
    assert tuple(train.images.shape[1:]) == FASHION_MNIST.image_shape[1:]
    mean, std = pixel_stats(train.images)
    assert abs(mean[0] - FASHION_MNIST.mean[0]) < 1e-3
    assert abs(std[0] - FASHION_MNIST.std[0]) < 1e-3
    x, _ = next(iter(BatchLoader.from_split(limit(train, 5000), 5000, shuffle=False)))
    assert abs(float(x.mean())) < 0.05 and 0.95 < float(x.std()) < 1.05


@needs_fashion_mirror
def test_cli_prepares_fashion_mnist_and_keeps_stdout_for_results(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "legoml.data", str(tmp_path), "--all"]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == [
        f"{name} verified in {tmp_path / name}" for name in ("mnist", "fashion-mnist")
    ]
    assert "dataset_file_copied" in result.stderr
    assert len(list((tmp_path / "fashion-mnist").glob("*.gz"))) == 4
