"""MNIST (and any dataset in the same IDX layout) found, fetched, verified and held in memory.

Files are looked for under the dataset root (argument, ``LEGOML_DATA_DIR``, or ``data``),
copied from a mirror (argument or the dataset's mirror variable, e.g. ``LEGOML_MNIST_MIRROR``:
a directory or URL) or downloaded from the public mirrors. Every file is checked against the
SHA-256 of its decompressed content before a single byte is used; a fetched file only lands
under the root once verified. The returned ``Split`` carries the dataset's facts.

Run ``python -m legoml.data [--dataset NAME | --all]`` to prepare the data (``make data``).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import os
import struct
import sys
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import structlog
import torch

from legoml.data.datasets import DATASETS, FASHION_MNIST, MIRROR_ENV, MNIST, IdxDataset
from legoml.data.errors import CorruptDataError, DataConfigError, DataError, MissingDataError
from legoml.data.splits import Split

__all__ = [
    "FASHION_MNIST",
    "MNIST",
    "IdxDataset",
    "Split",
    "dataset_root",
    "prepare_mnist",
    "load_fashion_mnist",
    "load_mnist",
]

log = structlog.get_logger(__name__)

DATA_DIR_ENV = "LEGOML_DATA_DIR"
_URL_SCHEMES = ("http://", "https://", "file://")


def dataset_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The dataset root: ``root``, else ``$LEGOML_DATA_DIR``, else ``data``."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get(DATA_DIR_ENV) or "data")


def prepare_mnist(
    root: str | os.PathLike[str] | None = None,
    mirror: str | os.PathLike[str] | None = None,
    dataset: IdxDataset = MNIST,
) -> Path:
    """Find or fetch the four files of ``dataset``, verify them all, return their folder."""
    folder = dataset_root(root) / dataset.name
    for name in dataset.files():
        path = _ensure_file(folder, name, dataset, mirror)
        _read_verified(path, dataset.sha256[name], dataset.mirror_env)
    return folder


def load_mnist(
    split: str,
    root: str | os.PathLike[str] | None = None,
    mirror: str | os.PathLike[str] | None = None,
    dataset: IdxDataset = MNIST,
) -> Split:
    """Load ``split`` ("train" or "test") of ``dataset`` into memory, verified, with its facts."""
    if split not in dataset.splits:
        raise DataError(
            f"unknown split {split!r} for {dataset.name}: choose one of {sorted(dataset.splits)}"
        )
    folder = dataset_root(root) / dataset.name
    image_name, label_name = dataset.splits[split]
    image_path = _ensure_file(folder, image_name, dataset, mirror)
    label_path = _ensure_file(folder, label_name, dataset, mirror)
    env = dataset.mirror_env
    images = _parse_idx(_read_verified(image_path, dataset.sha256[image_name], env), image_path, 3)
    labels = _parse_idx(_read_verified(label_path, dataset.sha256[label_name], env), label_path, 1)
    if images.shape[0] != labels.shape[0]:
        raise CorruptDataError(
            f"{image_path} holds {images.shape[0]} images but {label_path} holds "
            f"{labels.shape[0]} labels: delete both and run `make data` again"
        )
    _check_facts(dataset, split, images, labels)
    return Split(
        images=images,
        labels=labels.to(torch.int64),
        mean=dataset.mean,
        std=dataset.std,
        classes=dataset.classes,
    )


def _check_facts(
    dataset: IdxDataset, split: str, images: torch.Tensor, labels: torch.Tensor
) -> None:
    """The files are verified, so a mismatch means the ``IdxDataset`` description is wrong."""
    found = (1, *images.shape[1:])
    if found != dataset.image_shape:
        raise DataConfigError(
            f"IdxDataset {dataset.name!r} says image_shape={dataset.image_shape} but its "
            f"{split} images are {found}: fix image_shape"
        )
    top = int(labels.max()) if labels.numel() else -1
    if top >= dataset.num_classes:
        raise DataConfigError(
            f"IdxDataset {dataset.name!r} names {dataset.num_classes} classes but its {split} "
            f"labels reach {top}: give one name per label in classes"
        )


def load_fashion_mnist(
    split: str,
    root: str | os.PathLike[str] | None = None,
    mirror: str | os.PathLike[str] | None = None,
) -> Split:
    """Fashion-MNIST through the same code path (mirror env: ``LEGOML_FASHION_MNIST_MIRROR``)."""
    return load_mnist(split, root=root, mirror=mirror, dataset=FASHION_MNIST)


def _local_candidates(folder: Path, name: str) -> list[Path]:
    return [folder / f"{name}.gz", folder / name]


def _ensure_file(
    folder: Path, name: str, dataset: IdxDataset, mirror: str | os.PathLike[str] | None
) -> Path:
    """Path of ``name`` under ``folder``, fetching it first when it is not there."""
    for candidate in _local_candidates(folder, name):
        if candidate.is_file():
            return candidate
    source = mirror if mirror is not None else os.environ.get(dataset.mirror_env) or None
    folder.mkdir(parents=True, exist_ok=True)
    if source is None:
        return _download_public(folder, name, dataset)
    text = os.fspath(source)
    if text.startswith(_URL_SCHEMES):
        return _download(folder, name, dataset, [text.rstrip("/") + "/"])
    return _copy_from_directory(folder, name, dataset, Path(text))


def _copy_from_directory(folder: Path, name: str, dataset: IdxDataset, mirror: Path) -> Path:
    if not mirror.is_dir():
        raise MissingDataError(
            f"{dataset.name} mirror directory {mirror} does not exist: point "
            f"{dataset.mirror_env} (or mirror=) at a folder holding {name}.gz, or unset it "
            "to download"
        )
    for source in _local_candidates(mirror, name):
        if source.is_file():
            target = folder / source.name
            with source.open("rb") as src:
                _install_verified(
                    src.read(), target, dataset.sha256[name], str(source), dataset.mirror_env
                )
            log.info("dataset_file_copied", file=str(target), mirror=str(mirror))
            return target
    raise MissingDataError(
        f"{name}.gz is missing from the mirror {mirror}: put the file there or choose "
        f"another mirror with {dataset.mirror_env}"
    )


def _download_public(folder: Path, name: str, dataset: IdxDataset) -> Path:
    return _download(folder, name, dataset, list(dataset.urls))


def _download(folder: Path, name: str, dataset: IdxDataset, bases: list[str]) -> Path:
    problems: list[str] = []
    for base in bases:
        url = f"{base}{name}.gz"
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                payload = response.read()
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as err:
            problems.append(f"{url}: {err}")
            continue
        target = folder / f"{name}.gz"
        _install_verified(payload, target, dataset.sha256[name], url, dataset.mirror_env)
        log.info("dataset_file_downloaded", file=str(target), url=url)
        return target
    tried = "; ".join(problems) or "no mirror configured"
    raise MissingDataError(
        f"could not fetch {name}.gz ({tried}): set {dataset.mirror_env} to a local "
        f"folder or URL holding the {dataset.name} files"
    )


def _install_verified(
    payload: bytes, target: Path, expected: str, origin: str, mirror_env: str = MIRROR_ENV
) -> None:
    """Verify ``payload`` then place it at ``target`` atomically; refuse it otherwise."""
    _verify_bytes(payload, target.name.endswith(".gz"), expected, origin, mirror_env)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_verified(path: Path, expected: str, mirror_env: str = MIRROR_ENV) -> bytes:
    """The decompressed content of ``path`` after checking its SHA-256."""
    try:
        payload = path.read_bytes()
    except OSError as err:
        raise MissingDataError(f"cannot read {path}: {err}") from err
    return _verify_bytes(payload, path.name.endswith(".gz"), expected, str(path), mirror_env)


def _verify_bytes(
    payload: bytes, compressed: bool, expected: str, origin: str, mirror_env: str = MIRROR_ENV
) -> bytes:
    fix = f"delete it and run `make data` again (or point {mirror_env} at a good copy)"
    if compressed:
        try:
            payload = gzip.decompress(payload)
        except EOFError as err:
            raise CorruptDataError(f"{origin} is truncated ({err}): {fix}") from err
        except (OSError, zlib.error, ValueError) as err:
            raise CorruptDataError(
                f"{origin} is corrupt, not a valid gzip file ({err}): {fix}"
            ) from err
    digest = hashlib.sha256(payload).hexdigest()
    if digest != expected:
        raise CorruptDataError(
            f"{origin} failed SHA-256 verification (got {digest[:12]}…, expected "
            f"{expected[:12]}…): it is corrupt, truncated or the wrong file; {fix}"
        )
    return payload


def _parse_idx(payload: bytes, path: Path, ndim: int) -> torch.Tensor:
    """Decode an unsigned-byte IDX file into a uint8 tensor."""
    if len(payload) < 4 or payload[0:2] != b"\x00\x00" or payload[2] != 0x08 or payload[3] != ndim:
        raise CorruptDataError(f"{path} is not a {ndim}-d unsigned-byte IDX file: delete it")
    header = 4 + 4 * ndim
    if len(payload) < header:
        raise CorruptDataError(f"{path} ends inside its IDX header: delete it")
    dims = struct.unpack(f">{ndim}I", payload[4:header])
    count = 1
    for d in dims:
        count *= d
    if len(payload) - header != count:
        raise CorruptDataError(
            f"{path} holds {len(payload) - header} bytes of data, its header says {count}: "
            "delete it and run `make data` again"
        )
    if count == 0:
        return torch.empty(dims, dtype=torch.uint8)
    data = torch.frombuffer(bytearray(payload[header:]), dtype=torch.uint8)
    return data.reshape(dims)


def main(argv: list[str] | None = None) -> int:
    """``python -m legoml.data [ROOT] [--dataset NAME | --all]``: prepare and verify datasets.

    MNIST by default; prints one line per verified dataset, or one ``error:`` line.
    """
    parser = argparse.ArgumentParser(
        prog="python -m legoml.data", description="Prepare and verify IDX datasets."
    )
    parser.add_argument("root", nargs="?", help="dataset root (default $LEGOML_DATA_DIR or data)")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--dataset", choices=sorted(DATASETS), default=MNIST.name)
    choice.add_argument("--all", action="store_true", help="every built-in dataset")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    chosen = list(DATASETS.values()) if args.all else [DATASETS[args.dataset]]
    try:
        for dataset in chosen:
            folder = prepare_mnist(args.root, dataset=dataset)
            sys.stdout.write(f"{dataset.name} verified in {folder}\n")
    except DataError as err:
        sys.stderr.write(f"error: {err}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
