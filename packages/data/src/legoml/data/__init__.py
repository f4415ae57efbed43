"""legoml-data: verified MNIST held in memory, served in fast deterministic batches."""

from legoml.data.errors import CorruptDataError, DataError, MissingDataError
from legoml.data.mnist import MNIST, IdxDataset, Split, dataset_root, load_mnist, prepare_mnist

__all__ = [
    "MNIST",
    "CorruptDataError",
    "DataError",
    "IdxDataset",
    "MissingDataError",
    "Split",
    "dataset_root",
    "load_mnist",
    "prepare_mnist",
]
