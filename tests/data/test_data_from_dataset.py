"""``from_dataset``: torchvision and plain torch datasets -> uint8 Split, cached on disk.

Everything runs on files the tests write (PNG folders, raw IDX files); nothing is downloaded.
"""

from __future__ import annotations

import doctest
import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import structlog
import torch
from synthetic_idx import idx_bytes
from torch import Tensor
from torch.utils.data import Dataset, IterableDataset, Subset, TensorDataset

import legoml.data.converted as converted
from legoml.data import (
    BatchLoader,
    DataConfigError,
    DataError,
    Split,
    dataset_key,
    from_dataset,
    load_mnist,
    pixel_stats,
)

Image = pytest.importorskip("PIL.Image")
datasets = pytest.importorskip("torchvision.datasets")
transforms = pytest.importorskip("torchvision.transforms")

REPO = Path(__file__).resolve().parents[2]
README = REPO / "packages" / "data" / "README.md"
H, W = 12, 10
CLASSES = ("cat", "dog", "fox")


# -- helpers ---------------------------------------------------------------------------


def write_png(path: Path, pixels: Tensor) -> None:
    """``pixels``: uint8 C×H×W with C = 1 (mode L) or 3 (RGB)."""
    mode = "L" if pixels.shape[0] == 1 else "RGB"
    height, width = pixels.shape[1:]
    raw = bytes(pixels.permute(1, 2, 0).flatten().tolist())
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.frombytes(mode, (width, height), raw).save(path)


def make_folder(root: Path, channels: int, per_class: int = 3, seed: int = 0) -> Tensor:
    """An ImageFolder tree of random PNGs; returns the images in ImageFolder's order."""
    generator = torch.Generator().manual_seed(seed)
    images = []
    for name in CLASSES:
        for k in range(per_class):
            pixels = torch.randint(0, 256, (channels, H, W), dtype=torch.uint8, generator=generator)
            write_png(root / name / f"img{k}.png", pixels)
            images.append(pixels)
    return torch.stack(images)


def open_as_is(path: str) -> Any:
    """An ImageFolder loader that keeps the file's own mode (L stays one channel)."""
    with Image.open(path) as image:
        return image.copy()


def write_raw_mnist(root: Path, folder: str, n: int = 7, seed: int = 0) -> tuple[Tensor, Tensor]:
    """torchvision's raw layout ``root/<folder>/raw/*-ubyte``, train and test alike."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (n,), generator=generator).to(torch.uint8)
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix in ("train", "t10k"):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(images))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    return images, labels.to(torch.int64)


class Counting(Dataset[Any]):
    """Counts ``__getitem__`` calls; the counter is private, so not part of the cache key."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self._calls = [0]

    def __getitem__(self, index: int) -> Any:
        self._calls[0] += 1
        return self.dataset[index]

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def calls(self) -> int:
        return self._calls[0]


class Samples(Dataset[Any]):
    """Yields whatever samples it was given: the bad-input cases."""

    def __init__(self, samples: list[Any]) -> None:
        self.samples = samples

    def __getitem__(self, index: int) -> Any:
        return self.samples[index]

    def __len__(self) -> int:
        return len(self.samples)


def float_stats(images: Tensor) -> tuple[list[float], list[float]]:
    pixels = images.to(torch.float64).div(255).transpose(0, 1).flatten(1)
    return pixels.mean(1).tolist(), pixels.std(1, unbiased=False).tolist()


def one_line_error(kind: type[Exception], dataset: Any, **kwargs: Any) -> str:
    with pytest.raises(kind) as info:
        from_dataset(dataset, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# -- conversion ------------------------------------------------------------------------


def test_rgb_image_folder_exact_pixels_labels_classes_and_stats(tmp_path: Path) -> None:
    expected = make_folder(tmp_path / "rgb", channels=3)
    split = from_dataset(datasets.ImageFolder(str(tmp_path / "rgb")), batch_size=4)
    assert split.images.dtype == torch.uint8 and split.images.shape == (9, 3, H, W)
    assert torch.equal(split.images, expected)
    assert split.labels.dtype == torch.int64
    assert split.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert split.classes == CLASSES
    mean, std = float_stats(expected)
    assert split.mean == pytest.approx(mean, abs=1e-12)
    assert split.std == pytest.approx(std, abs=1e-12)
    assert (split.mean, split.std) == pixel_stats(expected)


def test_grayscale_folder_keeps_one_channel_and_batch_loader_serves_chw(tmp_path: Path) -> None:
    expected = make_folder(tmp_path / "grey", channels=1, seed=1)
    folder = datasets.ImageFolder(str(tmp_path / "grey"), loader=open_as_is)
    split = from_dataset(folder, batch_size=2)
    assert torch.equal(split.images, expected)
    loader = BatchLoader.from_split(split, batch_size=4, shuffle=False)
    x, y = next(iter(loader))
    assert x.shape == (4, 1, H, W) and x.dtype == torch.float32
    reference = (expected[:4].to(torch.float32) / 255 - split.mean[0]) / split.std[0]
    assert torch.allclose(x, reference, atol=1e-5)
    assert y.tolist() == [0, 0, 0, 1]
    # the default loader converts to RGB: three equal channels of the same grey pixels
    rgb = from_dataset(datasets.ImageFolder(str(tmp_path / "grey")))
    assert torch.equal(rgb.images, expected.expand(-1, 3, -1, -1))


def test_float_tensors_from_to_tensor_are_restored_exactly(tmp_path: Path) -> None:
    expected = make_folder(tmp_path / "rgb", channels=3)
    folder = datasets.ImageFolder(str(tmp_path / "rgb"), transform=transforms.ToTensor())
    assert folder[0][0].dtype == torch.float32
    assert torch.equal(from_dataset(folder).images, expected)


@pytest.mark.parametrize(
    ("kind", "first_class"), [("MNIST", "0 - zero"), ("FashionMNIST", "T-shirt/top")]
)
def test_torchvision_mnist_layouts(tmp_path: Path, kind: str, first_class: str) -> None:
    folder = kind
    classes = tuple(getattr(datasets, kind).classes)
    assert classes[0] == first_class and len(classes) == 10
    images, labels = write_raw_mnist(tmp_path, folder)
    dataset = getattr(datasets, kind)(str(tmp_path), train=True, download=False)
    split = from_dataset(dataset, batch_size=3)
    assert split.images.shape == (7, 1, 28, 28)  # C×H×W, not 28×28
    assert torch.equal(split.images[:, 0], images)
    assert torch.equal(split.labels, labels)
    assert split.classes == classes
    assert (split.mean, split.std) == pixel_stats(images)
    x, y = next(iter(BatchLoader.from_split(split, batch_size=5, shuffle=False)))
    assert x.shape == (5, 1, 28, 28) and torch.equal(y, labels[:5])
    test = getattr(datasets, kind)(str(tmp_path), train=False, transform=transforms.ToTensor())
    assert torch.equal(from_dataset(test).images[:, 0], images)


def test_tensor_dataset_uint8_float_and_hw(tmp_path: Path) -> None:
    images = torch.randint(0, 256, (10, 2, 5, 4), dtype=torch.uint8)
    labels = torch.arange(10) % 3
    split = from_dataset(TensorDataset(images, labels), batch_size=3)
    assert torch.equal(split.images, images) and torch.equal(split.labels, labels)
    assert split.classes == ()
    unit = from_dataset(TensorDataset(images.to(torch.float64) / 255, labels))
    assert torch.equal(unit.images, images)
    grey = from_dataset(TensorDataset(images[:, 0], labels.to(torch.int32)), classes=CLASSES)
    assert torch.equal(grey.images, images[:, :1]) and grey.classes == CLASSES
    assert grey.labels.dtype == torch.int64


def test_numpy_hwc_arrays_and_subset_keeps_class_names(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    images = torch.randint(0, 256, (5, 6, 7, 3), dtype=torch.uint8)
    samples = [(np.asarray(img.numpy()), np.int64(k % 2)) for k, img in enumerate(images)]
    split = from_dataset(Samples(samples))
    assert torch.equal(split.images, images.permute(0, 3, 1, 2))
    assert split.labels.tolist() == [0, 1, 0, 1, 0]
    make_folder(tmp_path / "rgb", channels=3)
    part = from_dataset(Subset(datasets.ImageFolder(str(tmp_path / "rgb")), [8, 0]))
    assert part.classes == CLASSES and part.labels.tolist() == [2, 0]


def test_worker_processes_give_the_same_split_and_one_line_errors(tmp_path: Path) -> None:
    make_folder(tmp_path / "rgb", channels=3)
    folder = datasets.ImageFolder(str(tmp_path / "rgb"))
    alone, workers = from_dataset(folder), from_dataset(folder, batch_size=4, num_workers=2)
    assert torch.equal(alone.images, workers.images) and torch.equal(alone.labels, workers.labels)
    bad = Samples([(torch.zeros(1, 2, 2), 0), (torch.zeros(1, 2, 2), 0.5)])
    message = one_line_error(DataError, bad, num_workers=1)
    assert "label 1 is 0.5" in message


# -- cache -----------------------------------------------------------------------------


def test_second_call_hits_the_cache_without_reading_the_dataset(tmp_path: Path) -> None:
    make_folder(tmp_path / "rgb", channels=3)
    cache = tmp_path / "cache"
    counting = Counting(datasets.ImageFolder(str(tmp_path / "rgb")))
    first = from_dataset(counting, cache_dir=cache, name="pets")
    assert counting.calls == 9
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].name.startswith("pets-")
    assert files[0].name.endswith(".cache")
    with structlog.testing.capture_logs() as logs:
        again = from_dataset(counting, cache_dir=cache, name="pets")
    assert counting.calls == 9
    assert [e["event"] for e in logs] == ["dataset_cache_hit"]
    for field in ("images", "labels"):
        assert torch.equal(getattr(again, field), getattr(first, field))
    assert (again.mean, again.std, again.classes) == (first.mean, first.std, first.classes)
    # a fresh dataset object over the same files (the next process) hits too
    fresh = Counting(datasets.ImageFolder(str(tmp_path / "rgb")))
    from_dataset(fresh, cache_dir=cache, name="pets")
    assert fresh.calls == 0
    from_dataset(fresh, cache_dir=cache, name="pets", refresh=True)
    assert fresh.calls == 9


def test_changed_files_transform_or_tensors_invalidate_the_cache(tmp_path: Path) -> None:
    make_folder(tmp_path / "rgb", channels=3)
    cache = tmp_path / "cache"
    root = str(tmp_path / "rgb")
    from_dataset(datasets.ImageFolder(root), cache_dir=cache)
    changed = tmp_path / "rgb" / "dog" / "img1.png"
    new_pixels = torch.full((3, H, W), 7, dtype=torch.uint8)
    before = changed.stat().st_mtime_ns
    write_png(changed, new_pixels)
    os.utime(changed, ns=(before + 10**9, before + 10**9))  # a later edit, on any clock
    counting = Counting(datasets.ImageFolder(root))
    split = from_dataset(counting, cache_dir=cache)
    assert counting.calls == 9
    assert torch.equal(split.images[4], new_pixels)
    assert len(list(cache.iterdir())) == 2
    keys = {
        dataset_key(datasets.ImageFolder(root)),
        dataset_key(datasets.ImageFolder(root, transform=transforms.Resize((6, 5)))),
        dataset_key(datasets.ImageFolder(root, transform=transforms.Resize((6, 4)))),
        dataset_key(Subset(datasets.ImageFolder(root), [0, 1])),
    }
    assert len(keys) == 4
    same = transforms.Compose([transforms.Resize((6, 5)), transforms.ToTensor()])
    again = transforms.Compose([transforms.Resize((6, 5)), transforms.ToTensor()])
    assert dataset_key(datasets.ImageFolder(root, transform=same)) == dataset_key(
        datasets.ImageFolder(root, transform=again)
    )
    images = torch.zeros(4, 1, 3, 3, dtype=torch.uint8)
    tensors = TensorDataset(images, torch.zeros(4, dtype=torch.int64))
    key = dataset_key(tensors)
    assert dataset_key(TensorDataset(images.clone(), torch.zeros(4, dtype=torch.int64))) == key
    images[2, 0, 1, 1] = 1
    assert dataset_key(tensors) != key


def test_changed_mnist_files_invalidate_the_cache(tmp_path: Path) -> None:
    images, _ = write_raw_mnist(tmp_path, "MNIST", seed=0)
    cache = tmp_path / "cache"
    first = from_dataset(datasets.MNIST(str(tmp_path), train=True), cache_dir=cache)
    assert torch.equal(first.images[:, 0], images)
    other, _ = write_raw_mnist(tmp_path, "MNIST", seed=1)
    counting = Counting(datasets.MNIST(str(tmp_path), train=True))
    second = from_dataset(counting, cache_dir=cache)
    assert counting.calls == 7 and torch.equal(second.images[:, 0], other)
    test = Counting(datasets.MNIST(str(tmp_path), train=False))
    from_dataset(test, cache_dir=cache)
    assert test.calls == 7  # train=False is another key


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "empty"])
def test_damaged_cache_is_logged_and_rebuilt(tmp_path: Path, damage: str) -> None:
    images = torch.randint(0, 256, (20, 3, 4, 4), dtype=torch.uint8)
    dataset = Counting(TensorDataset(images, torch.arange(20) % 4))
    cache = tmp_path / "cache"
    from_dataset(dataset, cache_dir=cache)
    (path,) = cache.iterdir()
    payload = bytearray(path.read_bytes())
    if damage == "flip":
        payload[len(payload) // 2] ^= 0xFF
    elif damage == "truncate":
        del payload[len(payload) // 2 :]
    elif damage == "garbage":
        payload[:] = b"not a cache at all"
    else:
        payload.clear()
    path.write_bytes(bytes(payload))
    with structlog.testing.capture_logs() as logs:
        rebuilt = from_dataset(dataset, cache_dir=cache)
    assert dataset.calls == 40
    assert torch.equal(rebuilt.images, images)
    rejected = [e for e in logs if e["event"] == "dataset_cache_rejected"]
    assert len(rejected) == 1 and rejected[0]["path"] == str(path)
    assert "dataset_cache_written" in [e["event"] for e in logs]
    from_dataset(dataset, cache_dir=cache)  # the rewritten file is good again
    assert dataset.calls == 40


def test_cache_from_another_dataset_under_the_same_name_is_refused(tmp_path: Path) -> None:
    images = torch.randint(0, 256, (6, 1, 2, 2), dtype=torch.uint8)
    mine = Counting(TensorDataset(images, torch.zeros(6, dtype=torch.int64)))
    cache = tmp_path / "cache"
    from_dataset(mine, cache_dir=cache)
    (path,) = cache.iterdir()
    other = TensorDataset(torch.ones(6, 1, 2, 2, dtype=torch.uint8), torch.ones(6).long())
    from_dataset(other, cache_dir=tmp_path / "other")
    (foreign,) = (tmp_path / "other").iterdir()
    path.write_bytes(foreign.read_bytes())  # valid checksum, wrong content
    with structlog.testing.capture_logs() as logs:
        split = from_dataset(mine, cache_dir=cache)
    assert mine.calls == 12 and torch.equal(split.images, images)
    assert any(e["event"] == "dataset_cache_rejected" for e in logs)


# -- bad input -------------------------------------------------------------------------


def test_different_sizes_name_both_images_and_suggest_resize(tmp_path: Path) -> None:
    make_folder(tmp_path / "rgb", channels=3)
    write_png(tmp_path / "rgb" / "dog" / "img1.png", torch.zeros(3, H, W + 1, dtype=torch.uint8))
    for batch_size in (64, 1):  # inside one batch, and across batches
        message = one_line_error(
            DataError, datasets.ImageFolder(str(tmp_path / "rgb")), batch_size=batch_size
        )
        assert "image 4 is 3×12×11" in message and "image 0 is 3×12×10" in message
        assert "Resize((12, 10))" in message


def test_mixed_grey_and_rgb_is_refused(tmp_path: Path) -> None:
    make_folder(tmp_path / "mixed", channels=1)
    write_png(tmp_path / "mixed" / "fox" / "img0.png", torch.zeros(3, H, W, dtype=torch.uint8))
    folder = datasets.ImageFolder(str(tmp_path / "mixed"), loader=open_as_is)
    message = one_line_error(DataError, folder)
    assert "image 6 is 3×12×10" in message and "image 0 is 1×12×10" in message
    assert "Grayscale" in message


@pytest.mark.parametrize(
    ("label", "shown"),
    [
        (1.5, "label 1 is 1.5 (float)"),
        ("cat", "label 1 is 'cat' (str)"),
        (torch.tensor(2.0), "label 1 is a torch.float32 tensor"),
        (torch.tensor([1, 2]), "label 1 is a torch.int64 tensor of shape (2,)"),
        (True, "label 1 is a bool"),
        (-1, "label 1 is negative (-1)"),
    ],
)
def test_non_integer_labels(label: Any, shown: str) -> None:
    image = torch.zeros(1, 2, 2, dtype=torch.uint8)
    message = one_line_error(DataError, Samples([(image, 0), (image, label)]))
    assert shown in message and "integer class indices" in message


def test_integer_labels_of_every_kind_are_accepted() -> None:
    image = torch.zeros(1, 2, 2, dtype=torch.uint8)
    labels = [3, torch.tensor(4), torch.tensor([5], dtype=torch.int16)]
    split = from_dataset(Samples([(image, label) for label in labels]))
    assert split.labels.tolist() == [3, 4, 5]


def test_empty_dataset_and_datasets_without_len() -> None:
    empty = TensorDataset(torch.zeros(0, 1, 2, 2), torch.zeros(0))
    assert "is empty" in one_line_error(DataError, empty)

    class Stream(IterableDataset[Any]):
        def __iter__(self) -> Any:
            return iter([])

    assert "map-style dataset with len()" in one_line_error(DataConfigError, Stream())


@pytest.mark.parametrize(
    ("image", "shown"),
    [
        ("a.png", "image 0 is a builtins.str"),
        ({"pixels": 1}, "image 0 is a builtins.dict"),
        (torch.zeros(2, 1, 3, 3), "image 0 is a tensor of shape (2, 1, 3, 3)"),
        (torch.zeros(2, 2, dtype=torch.bool), "image 0 is a torch.bool tensor"),
        (torch.full((1, 2, 2), 300), "values in [300, 300]"),
    ],
)
def test_images_that_cannot_be_converted_name_their_type(image: Any, shown: str) -> None:
    message = one_line_error(DataError, Samples([(image, 0)]))
    assert shown in message


def test_pil_modes(tmp_path: Path) -> None:
    wide = Image.new("I", (3, 2))
    message = one_line_error(DataError, Samples([(wide, 0)]))
    assert "PIL image in mode 'I'" in message
    bits = Image.new("1", (3, 2), color=1)
    palette = Image.new("RGB", (3, 2), color=(10, 20, 30)).convert("P")
    split = from_dataset(Samples([(bits, 0)]))
    assert set(split.images.flatten().tolist()) == {255} and split.images.shape == (1, 1, 2, 3)
    assert split.std == (1.0,)  # a constant channel is only shifted
    expected = list(palette.convert("RGB").getpixel((0, 0)))
    assert from_dataset(Samples([(palette, 0)])).images[0, :, 0, 0].tolist() == expected


def test_float_images_outside_unit_range_point_at_normalize(tmp_path: Path) -> None:
    write_raw_mnist(tmp_path, "MNIST")
    pipeline = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    normalized = datasets.MNIST(str(tmp_path), train=True, transform=pipeline)
    message = one_line_error(DataError, normalized)
    assert "image 0 is a float image with values in [-1" in message
    assert "must lie in [0, 1]" in message and "Normalize" in message
    nan = torch.full((1, 2, 2), float("nan"))
    assert "must lie in [0, 1]" in one_line_error(DataError, Samples([(nan, 0)]))


def test_other_bad_input() -> None:
    image = torch.zeros(1, 2, 2, dtype=torch.uint8)
    assert "not an (image, label) pair" in one_line_error(DataError, Samples([image]))
    message = one_line_error(DataError, Samples([(image, 5)]), classes=("a", "b"))
    assert "labels reach 5 but only 2 class names" in message
    assert "classes must be" in one_line_error(DataConfigError, Samples([(image, 0)]), classes="ab")
    for size in (0, 1.5, True):
        assert "batch_size" in one_line_error(
            DataConfigError, Samples([(image, 0)]), batch_size=size
        )
    assert "num_workers" in one_line_error(DataConfigError, Samples([(image, 0)]), num_workers=-1)


# -- packaging and docs ----------------------------------------------------------------


def test_plain_torch_datasets_never_import_torchvision_or_pil(tmp_path: Path) -> None:
    script = (
        "import sys, torch\n"
        "from torch.utils.data import TensorDataset\n"
        "from legoml.data import from_dataset\n"
        "images = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)\n"
        f"split = from_dataset(TensorDataset(images, torch.arange(5)), cache_dir={str(tmp_path)!r})\n"
        "assert torch.equal(split.images, images)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torchvision', 'PIL'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", "import json\n" + script],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_readme_section_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = README.read_text()
    section = text.split("## Any torch dataset", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)  # the example caches under the current folder
    for block in blocks:
        exec(compile(block, str(README), "exec"), {"__name__": "__readme__"})
    assert list((tmp_path / "cache").glob("*.cache"))


def test_docstring_examples() -> None:
    with structlog.testing.capture_logs():  # the conversion's log line is not example output
        result = doctest.testmod(converted, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.integration
def test_real_mnist_test_split_matches_load_mnist(tmp_path: Path) -> None:
    source = Path(os.environ.get("LEGOML_DATA_DIR") or REPO / "data") / "mnist"
    if not (source / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST is not prepared under {source} (run `make data`)")
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("images-idx3-ubyte", "labels-idx1-ubyte"):  # torchvision wants all four
        for prefix in ("train", "t10k"):
            payload = gzip.decompress((source / f"{prefix}-{name}.gz").read_bytes())
            (raw / f"{prefix}-{name}").write_bytes(payload)
    reference = load_mnist("test", root=source.parent)
    dataset = Counting(datasets.MNIST(str(tmp_path), train=False))
    split = from_dataset(dataset, cache_dir=tmp_path / "cache")
    assert isinstance(split, Split)
    assert torch.equal(split.images[:, 0], reference.images)
    assert torch.equal(split.labels, reference.labels)
    assert split.mean == pytest.approx((0.1325,), abs=1e-4)  # the test split's own mean
    again = from_dataset(dataset, cache_dir=tmp_path / "cache")
    assert dataset.calls == 10000 and torch.equal(again.images, split.images)
