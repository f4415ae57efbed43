"""The decompressed cache of IDX files: stamp checks, and every change bringing back the
full SHA-256 check (synthetic files)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from synthetic_idx import Tiny, gz

from legoml.data import CorruptDataError, Split, load_mnist, prepare_mnist
from legoml.data import mnist as mnist_module

IMAGES = "train-images-idx3-ubyte"
LABELS = "train-labels-idx1-ubyte"


class FullChecks:
    """Counts the full decompress-and-hash checks (the real check still runs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.origins: list[str] = []
        real = mnist_module._verify_bytes

        def counting(payload: bytes, compressed: bool, expected: str, origin: str, *rest: str) -> bytes:
            self.origins.append(Path(origin).name)
            return real(payload, compressed, expected, origin, *rest)

        monkeypatch.setattr(mnist_module, "_verify_bytes", counting)

    def take(self) -> list[str]:
        found, self.origins = self.origins, []
        return sorted(found)


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> FullChecks:
    return FullChecks(monkeypatch)


def settle(path: Path, expected: str, load: Callable[[], object]) -> None:
    """Load until the stamp is trusted (a stamp written in the file's own clock tick is not)."""
    for _ in range(50):
        load()
        if mnist_module._trusted_cache(path, expected) is not None:
            return
        time.sleep(0.01)
    raise AssertionError(f"the stamp of {path} never became trusted")


def prepared(tiny: Tiny, tmp_path: Path) -> tuple[Path, Callable[[], Split]]:
    root = tmp_path / "root"

    def load() -> Split:
        return load_mnist("train", root=root, mirror=tiny.mirror, dataset=tiny.dataset)

    images = root / "tiny" / f"{IMAGES}.gz"
    load()
    settle(images, tiny.dataset.sha256[IMAGES], load)
    settle(root / "tiny" / f"{LABELS}.gz", tiny.dataset.sha256[LABELS], load)
    return images, load


def test_first_load_writes_the_cache_and_later_loads_skip_the_hash(
    tiny: Tiny, tmp_path: Path, checks: FullChecks
) -> None:
    images, load = prepared(tiny, tmp_path)
    cache = images.parent / mnist_module.CACHE_DIR
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [f"{IMAGES}.idx", f"{IMAGES}.stamp.json", f"{LABELS}.idx", f"{LABELS}.stamp.json"]
    )
    assert (cache / f"{IMAGES}.idx").read_bytes() == tiny.raw[IMAGES]
    checks.take()
    train = load()
    assert checks.take() == []  # stamp matched: no decompression, no SHA-256
    assert torch.equal(train.images, tiny.train_images)
    assert torch.equal(train.labels, tiny.train_labels)


def test_touching_the_file_brings_back_the_full_check(
    tiny: Tiny, tmp_path: Path, checks: FullChecks
) -> None:
    images, load = prepared(tiny, tmp_path)
    os.utime(images)  # `touch`: same content, new mtime
    checks.take()
    train = load()
    assert checks.take() == [images.name]
    assert torch.equal(train.images, tiny.train_images)
    # The full check refreshed the stamp: trusted again afterwards.
    settle(images, tiny.dataset.sha256[IMAGES], load)
    checks.take()
    load()
    assert checks.take() == []


def test_altered_file_with_the_same_size_and_mtime_is_still_refused(
    tiny: Tiny, tmp_path: Path
) -> None:
    images, load = prepared(tiny, tmp_path)
    before = images.stat()
    content = bytearray(tiny.raw[IMAGES])
    content[-1] ^= 0x01  # gzip of the altered content has the same length here
    packed = gz(bytes(content))
    assert len(packed) == before.st_size
    images.write_bytes(packed)
    os.utime(images, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert images.stat().st_size == before.st_size
    assert images.stat().st_mtime_ns == before.st_mtime_ns
    with pytest.raises(CorruptDataError, match="SHA-256") as err:
        load()
    assert str(images) in str(err.value)


def test_a_tampered_cache_is_never_served(tiny: Tiny, tmp_path: Path) -> None:
    images, load = prepared(tiny, tmp_path)
    cached = images.parent / mnist_module.CACHE_DIR / f"{IMAGES}.idx"
    before = cached.stat()
    content = bytearray(cached.read_bytes())
    content[-1] ^= 0xFF
    cached.write_bytes(bytes(content))
    os.utime(cached, ns=(before.st_atime_ns, before.st_mtime_ns))
    train = load()
    assert torch.equal(train.images, tiny.train_images)
    assert cached.read_bytes() == tiny.raw[IMAGES]  # rebuilt from the verified file


def test_a_missing_or_garbled_stamp_means_a_full_check(
    tiny: Tiny, tmp_path: Path, checks: FullChecks
) -> None:
    images, load = prepared(tiny, tmp_path)
    stamp = images.parent / mnist_module.CACHE_DIR / f"{IMAGES}.stamp.json"
    for damage in (lambda: stamp.write_text("{not json"), stamp.unlink):
        damage()
        checks.take()
        assert torch.equal(load().images, tiny.train_images)
        assert images.name in checks.take()


def test_a_stamp_from_the_files_own_clock_tick_is_not_trusted(tiny: Tiny, tmp_path: Path) -> None:
    images, _ = prepared(tiny, tmp_path)
    expected = tiny.dataset.sha256[IMAGES]
    stamp = images.parent / mnist_module.CACHE_DIR / f"{IMAGES}.stamp.json"
    assert mnist_module._trusted_cache(images, expected) is not None
    tick = images.stat().st_ctime_ns
    os.utime(stamp, ns=(tick, tick))  # as if written in the tick the file last changed
    assert mnist_module._trusted_cache(images, expected) is None


def test_writes_to_the_loaded_tensor_never_reach_the_cache(tiny: Tiny, tmp_path: Path) -> None:
    images, load = prepared(tiny, tmp_path)
    train = load()
    train.images.fill_(7)
    assert torch.equal(load().images, tiny.train_images)
    assert (images.parent / mnist_module.CACHE_DIR / f"{IMAGES}.idx").read_bytes() == tiny.raw[IMAGES]


def test_an_unwritable_cache_only_costs_the_full_check(
    tiny: Tiny, tmp_path: Path, checks: FullChecks
) -> None:
    root = tmp_path / "root"
    prepare_mnist(root, mirror=tiny.mirror, dataset=tiny.dataset)
    cache = root / "tiny" / mnist_module.CACHE_DIR
    for path in cache.iterdir():
        path.unlink()
    cache.rmdir()
    cache.write_text("a file where the cache folder goes")
    for _ in range(2):
        checks.take()
        train = load_mnist("train", root=root, dataset=tiny.dataset)
        assert torch.equal(train.images, tiny.train_images)
        assert checks.take() == sorted([f"{IMAGES}.gz", f"{LABELS}.gz"])


def test_uncompressed_files_are_their_own_cache(
    tiny: Tiny, tmp_path: Path, checks: FullChecks
) -> None:
    root = tmp_path / "root"
    folder = root / "tiny"
    folder.mkdir(parents=True)
    for name, payload in tiny.raw.items():
        (folder / name).write_bytes(payload)

    def load() -> Split:
        return load_mnist("train", root=root, dataset=tiny.dataset)

    settle(folder / IMAGES, tiny.dataset.sha256[IMAGES], load)
    settle(folder / LABELS, tiny.dataset.sha256[LABELS], load)
    assert sorted(p.name for p in (folder / mnist_module.CACHE_DIR).iterdir()) == sorted(
        [f"{IMAGES}.stamp.json", f"{LABELS}.stamp.json"]
    )
    checks.take()
    assert torch.equal(load().images, tiny.train_images)
    assert checks.take() == []
    content = bytearray(tiny.raw[IMAGES])
    content[-1] ^= 0x01
    (folder / IMAGES).write_bytes(bytes(content))
    with pytest.raises(CorruptDataError, match="SHA-256"):
        load()


def test_prepare_hashes_again_only_when_asked(
    tiny: Tiny, tmp_path: Path, checks: FullChecks, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    prepare_mnist(root, mirror=tiny.mirror, dataset=tiny.dataset)
    for name in tiny.dataset.files():
        path = root / "tiny" / f"{name}.gz"
        settle(path, tiny.dataset.sha256[name],
               lambda: prepare_mnist(root, mirror=tiny.mirror, dataset=tiny.dataset))
    checks.take()
    prepare_mnist(root, dataset=tiny.dataset)
    assert checks.take() == []
    prepare_mnist(root, dataset=tiny.dataset, verify=True)
    assert checks.take() == sorted(f"{name}.gz" for name in tiny.dataset.files())
