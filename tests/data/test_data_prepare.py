"""Finding, fetching and verifying IDX files (SPEC section 3), on synthetic files."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch
from synthetic_idx import Tiny, gz, idx_bytes, sha256

from legoml.data import CorruptDataError, IdxDataset, MissingDataError, load_mnist, prepare_mnist
from legoml.data.mnist import CACHE_DIR, main

IMAGES = "train-images-idx3-ubyte"
LABELS = "train-labels-idx1-ubyte"


def files_under(root: Path, cache: bool = False) -> list[Path]:
    """Every file (hidden temporaries included) below ``root``; the decompressed cache
    folders (``<dataset>/cache/``) only when ``cache`` is set."""
    if not root.exists():
        return []
    files = (p for p in root.rglob("*") if p.is_file())
    return sorted(p for p in files if cache or CACHE_DIR not in p.relative_to(root).parts[:-1])


def with_checksum(tiny: Tiny, name: str, content: bytes) -> IdxDataset:
    """The tiny dataset, but expecting ``content`` for ``name`` (to reach the IDX parser)."""
    sums = dict(tiny.dataset.sha256)
    sums[name] = sha256(content)
    return dataclasses.replace(tiny.dataset, sha256=sums)


def test_copies_from_a_mirror_directory_and_loads(tiny: Tiny, tmp_path: Path) -> None:
    root = tmp_path / "root"
    train = load_mnist("train", root=root, mirror=tiny.mirror, dataset=tiny.dataset)
    assert torch.equal(train.images, tiny.train_images)
    assert torch.equal(train.labels, tiny.train_labels)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert [p.name for p in files_under(root)] == [f"{IMAGES}.gz", f"{LABELS}.gz"]
    # Once under the root, the files are used without any mirror.
    again = load_mnist("train", root=root, mirror=tmp_path / "gone", dataset=tiny.dataset)
    assert torch.equal(again.images, tiny.train_images)


def test_prepare_fetches_all_four_files(tiny: Tiny, tmp_path: Path) -> None:
    folder = prepare_mnist(tmp_path / "root", mirror=tiny.mirror, dataset=tiny.dataset)
    assert folder == tmp_path / "root" / "tiny"
    assert sorted(p.name for p in files_under(folder)) == sorted(
        f"{name}.gz" for name in tiny.dataset.files()
    )
    test = load_mnist("test", root=tmp_path / "root", dataset=tiny.dataset)
    assert torch.equal(test.labels, tiny.test_labels)


def test_file_url_mirror(tiny: Tiny, tmp_path: Path) -> None:
    root = tmp_path / "root"
    test = load_mnist("test", root=root, mirror=tiny.mirror.as_uri(), dataset=tiny.dataset)
    assert torch.equal(test.images, tiny.test_images)
    assert len(files_under(root)) == 2


def test_environment_names_root_and_mirror(
    tiny: Tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEGOML_DATA_DIR", str(tmp_path / "envroot"))
    monkeypatch.setenv("LEGOML_MNIST_MIRROR", str(tiny.mirror))
    train = load_mnist("train", dataset=tiny.dataset)
    assert torch.equal(train.labels, tiny.train_labels)
    assert (tmp_path / "envroot" / "tiny" / f"{LABELS}.gz").is_file()


def test_uncompressed_files_in_the_mirror_are_accepted(tiny: Tiny, tmp_path: Path) -> None:
    tiny.write(IMAGES, tiny.raw[IMAGES], compress=False)
    train = load_mnist("train", root=tmp_path / "root", mirror=tiny.mirror, dataset=tiny.dataset)
    assert torch.equal(train.images, tiny.train_images)
    assert (tmp_path / "root" / "tiny" / IMAGES).is_file()


def test_corrupt_content_in_the_mirror_is_refused(tiny: Tiny, tmp_path: Path) -> None:
    content = bytearray(tiny.raw[IMAGES])
    content[len(content) // 2] ^= 0x01
    bad = tiny.write(IMAGES, bytes(content))
    root = tmp_path / "root"
    with pytest.raises(CorruptDataError, match="SHA-256") as err:
        load_mnist("train", root=root, mirror=tiny.mirror, dataset=tiny.dataset)
    assert str(bad) in str(err.value) and "LEGOML_MNIST_MIRROR" in str(err.value)
    assert files_under(root) == []


def test_every_flipped_byte_of_a_gzip_file_is_refused(tiny: Tiny, tmp_path: Path) -> None:
    packed = gz(tiny.raw[LABELS])
    root = tmp_path / "root"
    # Bytes 4..9 are the gzip header's time/flags/OS fields: they do not touch the content.
    offsets = [0, 1, 2, *range(10, len(packed))]
    for offset in offsets:
        broken = bytearray(packed)
        broken[offset] ^= 0xFF
        target = tiny.mirror / f"{LABELS}.gz"
        target.write_bytes(bytes(broken))
        with pytest.raises(CorruptDataError) as err:
            load_mnist("train", root=root, mirror=tiny.mirror, dataset=tiny.dataset)
        assert str(target) in str(err.value), offset
        assert files_under(root) == [root / "tiny" / f"{IMAGES}.gz"], offset


@pytest.mark.parametrize("keep", [0.5, 0.9, -1, -4, -9])
def test_truncated_gzip_file_is_refused(tiny: Tiny, tmp_path: Path, keep: float) -> None:
    packed = gz(tiny.raw[IMAGES])
    cut = int(len(packed) * keep) if keep > 0 else len(packed) + int(keep)
    target = tiny.mirror / f"{IMAGES}.gz"
    target.write_bytes(packed[:cut])
    root = tmp_path / "root"
    with pytest.raises(CorruptDataError) as err:
        prepare_mnist(root, mirror=tiny.mirror, dataset=tiny.dataset)
    assert str(target) in str(err.value)
    assert all(IMAGES not in p.name for p in files_under(root))


def test_truncated_uncompressed_file_is_refused(tiny: Tiny, tmp_path: Path) -> None:
    target = tiny.write(LABELS, tiny.raw[LABELS][:-3], compress=False)
    with pytest.raises(CorruptDataError, match="truncated") as err:
        load_mnist("train", root=tmp_path / "root", mirror=tiny.mirror, dataset=tiny.dataset)
    assert str(target) in str(err.value)


def test_missing_mirror_directory(tiny: Tiny, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-mirror"
    with pytest.raises(MissingDataError, match="does not exist") as err:
        load_mnist("train", root=tmp_path / "root", mirror=missing, dataset=tiny.dataset)
    assert str(missing) in str(err.value) and "LEGOML_MNIST_MIRROR" in str(err.value)
    assert files_under(tmp_path / "root") == []


def test_mirror_lacking_a_file(tiny: Tiny, tmp_path: Path) -> None:
    (tiny.mirror / f"{LABELS}.gz").unlink()
    with pytest.raises(MissingDataError, match=f"{LABELS}.gz is missing") as err:
        load_mnist("train", root=tmp_path / "root", mirror=tiny.mirror, dataset=tiny.dataset)
    assert str(tiny.mirror) in str(err.value)


def test_url_mirror_lacking_a_file(tiny: Tiny, tmp_path: Path) -> None:
    (tiny.mirror / f"{LABELS}.gz").unlink()
    with pytest.raises(MissingDataError, match=f"could not fetch {LABELS}.gz"):
        load_mnist(
            "train", root=tmp_path / "root", mirror=tiny.mirror.as_uri(), dataset=tiny.dataset
        )


def test_no_mirror_and_no_public_url(tiny: Tiny, tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="LEGOML_MNIST_MIRROR"):
        load_mnist("train", root=tmp_path / "root", dataset=tiny.dataset)


def test_wrong_header_is_refused(tiny: Tiny, tmp_path: Path) -> None:
    # A labels file that claims three dimensions: right checksum, wrong file.
    content = idx_bytes(torch.zeros(12, 1, 1, dtype=torch.uint8))
    target = tiny.write(LABELS, content)
    dataset = with_checksum(tiny, LABELS, content)
    with pytest.raises(CorruptDataError, match="not a 1-d unsigned-byte IDX file") as err:
        load_mnist("train", root=tmp_path / "root", mirror=tiny.mirror, dataset=dataset)
    assert target.name in str(err.value)


@pytest.mark.parametrize(
    "content",
    [
        idx_bytes(torch.zeros(12, dtype=torch.uint8), type_code=0x0D),  # float IDX
        b"\x00\x00\x08\x01\x00",  # ends inside the header
        idx_bytes(torch.zeros(12, dtype=torch.uint8))[:-2],  # fewer bytes than declared
        idx_bytes(torch.zeros(12, dtype=torch.uint8)) + b"\x00",  # more bytes than declared
    ],
)
def test_malformed_idx_is_refused(tiny: Tiny, tmp_path: Path, content: bytes) -> None:
    tiny.write(LABELS, content)
    dataset = with_checksum(tiny, LABELS, content)
    with pytest.raises(CorruptDataError, match=LABELS):
        load_mnist("train", root=tmp_path / "root", mirror=tiny.mirror, dataset=dataset)


def test_image_and_label_counts_must_agree(tiny: Tiny, tmp_path: Path) -> None:
    content = idx_bytes(torch.zeros(11, dtype=torch.uint8))
    tiny.write(LABELS, content)
    dataset = with_checksum(tiny, LABELS, content)
    with pytest.raises(CorruptDataError, match="12 images but .* 11 labels"):
        load_mnist("train", root=tmp_path / "root", mirror=tiny.mirror, dataset=dataset)


def test_corrupt_file_already_under_the_root_is_refused(tiny: Tiny, tmp_path: Path) -> None:
    root = tmp_path / "root"
    prepare_mnist(root, mirror=tiny.mirror, dataset=tiny.dataset)
    local = root / "tiny" / f"{IMAGES}.gz"
    content = bytearray(tiny.raw[IMAGES])
    content[-1] ^= 0x80
    local.write_bytes(gz(bytes(content)))
    for call in (
        lambda: load_mnist("train", root=root, mirror=tiny.mirror, dataset=tiny.dataset),
        lambda: prepare_mnist(root, mirror=tiny.mirror, dataset=tiny.dataset),
    ):
        with pytest.raises(CorruptDataError, match="delete it") as err:
            call()
        assert str(local) in str(err.value)
    # Refused, not silently replaced: the user decides what to do with it.
    assert local.read_bytes() == gz(bytes(content))


def test_unknown_split(tiny: Tiny, tmp_path: Path) -> None:
    with pytest.raises(Exception, match="unknown split 'validation'"):
        load_mnist("validation", root=tmp_path, dataset=tiny.dataset)


def test_fetched_files_are_readable_and_no_temporaries_remain(tiny: Tiny, tmp_path: Path) -> None:
    folder = prepare_mnist(tmp_path / "root", mirror=tiny.mirror, dataset=tiny.dataset)
    for path in files_under(folder, cache=True):
        assert not path.name.startswith("."), path
        assert os.stat(path).st_mode & 0o444 == 0o444


def test_cli_reports_one_error_line(
    tmp_path: Path,
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LEGOML_MNIST_MIRROR", str(tmp_path / "missing"))
    assert main([str(tmp_path / "root")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "does not exist" in err
