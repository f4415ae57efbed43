"""legoml-data: verified IDX datasets (MNIST, Fashion-MNIST) in memory, served in fast batches."""

from legoml.data.batches import EpochLoader, collate_images, move_to_device
from legoml.data.converted import from_dataset
from legoml.data.datasets import DATASETS, FASHION_MNIST, MNIST, IdxDataset
from legoml.data.errors import CorruptDataError, DataConfigError, DataError, MissingDataError
from legoml.data.fingerprint import dataset_key
from legoml.data.loader import BatchLoader
from legoml.data.mnist import dataset_root, load_fashion_mnist, load_mnist, prepare_mnist
from legoml.data.normalize import normalize_images, pixel_stats
from legoml.data.splits import Split, limit, subset, train_val_split
from legoml.data.transforms import BatchTransform, Compose, Lambda, RandomAffine, RandomShift

__all__ = [
    "DATASETS",
    "FASHION_MNIST",
    "MNIST",
    "BatchLoader",
    "BatchTransform",
    "Compose",
    "CorruptDataError",
    "DataConfigError",
    "DataError",
    "EpochLoader",
    "IdxDataset",
    "Lambda",
    "MissingDataError",
    "RandomAffine",
    "RandomShift",
    "Split",
    "collate_images",
    "dataset_key",
    "dataset_root",
    "from_dataset",
    "limit",
    "load_fashion_mnist",
    "load_mnist",
    "move_to_device",
    "normalize_images",
    "pixel_stats",
    "prepare_mnist",
    "subset",
    "train_val_split",
]
