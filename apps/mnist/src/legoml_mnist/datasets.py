"""Dataset nodes: which data an experiment uses, and what it knows about it.

A dataset node loads its (train, test) splits and carries the facts the rest of the
experiment needs (image shape, class names, normalization), so no other module hard-codes
MNIST. Adding a dataset in the same IDX layout is one small subclass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from legoml.data import FASHION_MNIST, MNIST, IdxDataset, Split, limit, load_mnist
from legoml.nn import Node
from legoml.nn.types import Positive

__all__ = ["DatasetNode", "FashionMNISTNode", "MNISTNode", "NamedDatasetNode"]


@dataclass(frozen=True)
class DatasetNode(Node, register=False):
    """Base of the dataset nodes: where the files live and how much of them to use
    (``limit_*``: the first N examples, for smoke runs)."""

    root: str | None = None
    limit_train: Positive | None = None
    limit_test: Positive | None = None

    @property
    def source(self) -> IdxDataset:
        """The files, checksums and facts (classes, shape, mean/std) of this dataset."""
        raise NotImplementedError(f"{type(self).__name__} does not name its source")

    @property
    def classes(self) -> tuple[str, ...]:
        return self.source.classes

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.source.image_shape

    def load(self, split: Literal["train", "test"]) -> Split:
        """One split in memory (verified), cut to its ``limit_*`` when set."""
        data = load_mnist(split, root=self.root, dataset=self.source)
        count = self.limit_train if split == "train" else self.limit_test
        return limit(data, count) if count is not None else data

    def build(self) -> tuple[Split, Split]:
        """The (train, test) splits."""
        return self.load("train"), self.load("test")


@dataclass(frozen=True)
class MNISTNode(DatasetNode, tag="legoml_mnist.MNIST"):
    """The MNIST handwritten digits (10 classes, 1×28×28)."""

    @property
    def source(self) -> IdxDataset:
        return MNIST


@dataclass(frozen=True)
class FashionMNISTNode(DatasetNode, tag="legoml_mnist.FashionMNIST"):
    """Zalando's Fashion-MNIST clothing images (10 classes, 1×28×28)."""

    @property
    def source(self) -> IdxDataset:
        return FASHION_MNIST


@dataclass(frozen=True)
class NamedDatasetNode(DatasetNode, tag="legoml_mnist.Dataset"):
    """The dataset picked by name: the form configs took before the dataset nodes, still
    read so old runs evaluate and resume. New configs use ``MNISTNode``/``FashionMNISTNode``."""

    name: Literal["mnist", "fashion-mnist"] = "mnist"

    @property
    def source(self) -> IdxDataset:
        return FASHION_MNIST if self.name == "fashion-mnist" else MNIST


DATASETS: dict[str, type[DatasetNode]] = {"mnist": MNISTNode, "fashion-mnist": FashionMNISTNode}
"""The ``--dataset`` names of the CLI."""
