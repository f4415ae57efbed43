"""What a dataset in MNIST's IDX layout is: its files, checksums, mirrors and facts.

The facts (class names, image shape, normalization statistics) live with the files so no
app hard-codes them: ``load_mnist`` copies them onto every ``Split`` it returns, and
``BatchLoader.from_split`` normalizes with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from legoml.data.errors import DataConfigError
from legoml.data.normalize import channel_stats

__all__ = ["DATASETS", "FASHION_MNIST", "MNIST", "IdxDataset"]

MIRROR_ENV = "LEGOML_MNIST_MIRROR"
FASHION_MIRROR_ENV = "LEGOML_FASHION_MNIST_MIRROR"


@dataclass(frozen=True)
class IdxDataset:
    """Where a dataset in MNIST's IDX layout lives, what its files hash to, and its facts.

    Attributes:
        name: the folder under the dataset root (also the CLI's ``--dataset`` name).
        splits: split -> (images, labels) file names (stored as ``<file>.gz`` or plain).
        sha256: SHA-256 of each file's *decompressed* content.
        urls: fallback mirrors (``https://`` or ``file://`` folders, tried in order), used
            when ``mirror_env`` names no mirror.
        mirror_env: the environment variable that names a mirror (folder or URL).
        classes: class names, indexed by label.
        image_shape: (C, H, W) of one image; IDX image files are grey, so C is 1.
        mean, std: per-channel statistics of the train split's pixels scaled to [0, 1]
            (``legoml.data.pixel_stats`` computes them); (0.0,), (1.0,) only rescale.

    Example:
        >>> MNIST.num_classes, MNIST.image_shape, MNIST.mean, MNIST.std
        (10, (1, 28, 28), (0.1307,), (0.3081,))
        >>> FASHION_MNIST.classes[9]
        'Ankle boot'
    """

    name: str
    splits: dict[str, tuple[str, str]]
    sha256: dict[str, str]
    urls: tuple[str, ...]
    mirror_env: str = MIRROR_ENV
    classes: tuple[str, ...] = field(kw_only=True)
    image_shape: tuple[int, int, int] = field(kw_only=True)
    mean: tuple[float, ...] = field(default=(0.0,), kw_only=True)
    std: tuple[float, ...] = field(default=(1.0,), kw_only=True)

    def __post_init__(self) -> None:
        who = f"IdxDataset {self.name!r}"
        if not self.classes or not all(isinstance(c, str) and c for c in self.classes):
            raise DataConfigError(
                f"{who} classes must be one non-empty name per label, got {self.classes!r}"
            )
        shape = self.image_shape
        if len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
            raise DataConfigError(
                f"{who} image_shape must be (C, H, W) positive ints, got {shape!r}"
            )
        mean, std = channel_stats(self.mean, self.std, shape[0], who)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def files(self) -> list[str]:
        return [name for pair in self.splits.values() for name in pair]


_IDX_SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

MNIST = IdxDataset(
    name="mnist",
    splits=_IDX_SPLITS,
    sha256={
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    urls=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    classes=tuple(str(digit) for digit in range(10)),
    image_shape=(1, 28, 28),
    mean=(0.1307,),
    std=(0.3081,),
)

# Checksums computed from the decompressed files of Debian's ``dataset-fashion-mnist``
# package; that package's folder is tried first, then the public mirror torchvision uses.
# mean/std: ``pixel_stats`` of the train split (0.28604, 0.35302), to 4 decimals.
FASHION_MNIST = IdxDataset(
    name="fashion-mnist",
    splits=_IDX_SPLITS,
    sha256={
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
    urls=(
        "file:///usr/share/datasets/fashion-mnist/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
    mirror_env=FASHION_MIRROR_ENV,
    classes=(
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
    ),
    image_shape=(1, 28, 28),
    mean=(0.2860,),
    std=(0.3530,),
)

DATASETS: dict[str, IdxDataset] = {d.name: d for d in (MNIST, FASHION_MNIST)}
"""The built-in datasets by name (``python -m legoml.data --dataset NAME``)."""
