"""Real MNIST (and Fashion-MNIST when Debian's package is installed) through legoml-data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from legoml.data import BatchLoader, limit, load_fashion_mnist, load_mnist, train_val_split

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
FASHION_DEB = Path("/usr/share/datasets/fashion-mnist")


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
