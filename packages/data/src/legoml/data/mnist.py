"""MNIST (and any dataset in the same IDX layout) found, fetched, verified and held in memory.

Files are looked for under the dataset root (argument, ``LEGOML_DATA_DIR``, or ``data``),
copied from a mirror (argument or the dataset's mirror variable, e.g. ``LEGOML_MNIST_MIRROR``:
a directory or URL) or downloaded from the public mirrors. Every file is checked against the
SHA-256 of its decompressed content before a single byte is used; a fetched file only lands
under the root once verified. The returned ``Split`` carries the dataset's facts.

The verified, decompressed content is kept under ``<root>/<dataset>/cache/`` with a stamp
(size, mtime, ctime and inode of the file and of its cache): later loads memory-map the cache
after comparing the stamp, and any change to either file (even one that keeps the size and
mtime: the ctime still moves) brings back the full decompress-and-SHA-256 check.

Run ``python -m legoml.data [--dataset NAME | --all]`` to prepare the data (``make data``).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import json
import os
import struct
import sys
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import structlog
import torch

from legoml.data._atomic import atomic_write
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
CACHE_DIR = "cache"
_STAMP_VERSION = 1
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
    verify: bool = False,
) -> Path:
    """Find or fetch the four files of ``dataset``, verify them all, return their folder.

    A file whose cache stamp still matches is not hashed again unless ``verify`` is set."""
    folder = dataset_root(root) / dataset.name
    ndims = {name: 3 - 2 * k for pair in dataset.splits.values() for k, name in enumerate(pair)}
    for name in dataset.files():
        path = _ensure_file(folder, name, dataset, mirror)
        if verify or _trusted_cache(path, dataset.sha256[name]) is None:
            _full_check(path, dataset.sha256[name], dataset.mirror_env, ndims[name])
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
    images = _load_idx(image_path, dataset.sha256[image_name], env, 3)
    labels = _load_idx(label_path, dataset.sha256[label_name], env, 1)
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
    _atomic_write(target, payload)


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


def _idx_dims(head: bytes, size: int, path: Path, ndim: int) -> tuple[int, ...]:
    """The dimensions of an unsigned-byte IDX file of ``size`` bytes starting with ``head``."""
    if len(head) < 4 or head[0:2] != b"\x00\x00" or head[2] != 0x08 or head[3] != ndim:
        raise CorruptDataError(f"{path} is not a {ndim}-d unsigned-byte IDX file: delete it")
    header = 4 + 4 * ndim
    if len(head) < header:
        raise CorruptDataError(f"{path} ends inside its IDX header: delete it")
    dims: tuple[int, ...] = struct.unpack(f">{ndim}I", head[4:header])
    count = 1
    for d in dims:
        count *= d
    if size - header != count:
        raise CorruptDataError(
            f"{path} holds {size - header} bytes of data, its header says {count}: "
            "delete it and run `make data` again"
        )
    return dims


def _parse_idx(payload: bytes, path: Path, ndim: int) -> torch.Tensor:
    """Decode an unsigned-byte IDX file into a uint8 tensor (one copy of the data)."""
    dims = _idx_dims(payload[: 4 + 4 * ndim], len(payload), path, ndim)
    header = 4 + 4 * ndim
    if len(payload) == header:
        return torch.empty(dims, dtype=torch.uint8)
    data = torch.frombuffer(bytearray(memoryview(payload)[header:]), dtype=torch.uint8)
    return data.reshape(dims)


def _load_idx(path: Path, expected: str, mirror_env: str, ndim: int) -> torch.Tensor:
    """The verified content of ``path`` as a uint8 tensor: memory-mapped from the cache when
    its stamp still matches, otherwise fully checked (and the cache refreshed)."""
    cached = _trusted_cache(path, expected)
    if cached is None:
        return _full_check(path, expected, mirror_env, ndim)
    size = cached.stat().st_size
    header = 4 + 4 * ndim
    mapped = torch.from_file(str(cached), shared=False, size=size, dtype=torch.uint8)
    dims = _idx_dims(bytes(mapped[:header].tolist()), size, path, ndim)
    return mapped[header:].view(dims)  # copy-on-write: writes never reach the file


def _full_check(path: Path, expected: str, mirror_env: str, ndim: int) -> torch.Tensor:
    """Decompress and hash ``path``, parse it, then (re)write its cache and stamp."""
    before = _file_stamp(path)
    payload = _read_verified(path, expected, mirror_env)
    tensor = _parse_idx(payload, path, ndim)
    if _file_stamp(path) == before:  # unchanged while read: the stamp describes this content
        _write_cache(path, payload, expected)
    return tensor


def _cache_paths(path: Path) -> tuple[Path, Path]:
    """(decompressed content, stamp) of a data file; an uncompressed file is its own cache."""
    name = path.name.removesuffix(".gz")
    folder = path.parent / CACHE_DIR
    content = folder / f"{name}.idx" if path.name.endswith(".gz") else path
    return content, folder / f"{name}.stamp.json"


def _file_stamp(path: Path) -> dict[str, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino}


def _stamp_record(path: Path, content: Path, expected: str) -> dict[str, object]:
    return {
        "version": _STAMP_VERSION,
        "sha256": expected,
        "file": _file_stamp(path),
        "cache": _file_stamp(content),
    }


def _trusted_cache(path: Path, expected: str) -> Path | None:
    """The cached content of ``path`` when its stamp still describes both files, else None.

    As in git's "racily clean" rule, a file whose mtime or ctime is not older than the
    stamp itself could have changed within the same clock tick: it is not trusted."""
    content, stamp = _cache_paths(path)
    try:
        recorded = json.loads(stamp.read_bytes())
        stamped_at = stamp.stat().st_mtime_ns
    except (OSError, ValueError):
        return None
    if recorded != _stamp_record(path, content, expected):
        return None
    for entry in (recorded["file"], recorded["cache"]):
        if entry["mtime_ns"] >= stamped_at or entry["ctime_ns"] >= stamped_at:
            return None
    return content


def _write_cache(path: Path, payload: bytes, expected: str) -> None:
    """Keep the verified ``payload`` decompressed beside ``path``, with its stamp; a folder
    that cannot be written only costs the full check next time."""
    content, stamp = _cache_paths(path)
    try:
        stamp.parent.mkdir(exist_ok=True)
        if content != path and not _same_content(content, payload):
            _atomic_write(content, payload)
        _atomic_write(stamp, json.dumps(_stamp_record(path, content, expected)).encode())
    except OSError as err:
        log.debug("dataset_cache_not_written", file=str(path), reason=str(err))


def _same_content(path: Path, payload: bytes) -> bool:
    try:
        return path.stat().st_size == len(payload) and path.read_bytes() == payload
    except OSError:
        return False


def _atomic_write(target: Path, payload: bytes) -> None:
    atomic_write(target, lambda out: out.write(payload))


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
    parser.add_argument(
        "--verify", action="store_true",
        help="hash every file again even when its cache stamp still matches",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    chosen = list(DATASETS.values()) if args.all else [DATASETS[args.dataset]]
    try:
        for dataset in chosen:
            folder = prepare_mnist(args.root, dataset=dataset, verify=args.verify)
            sys.stdout.write(f"{dataset.name} verified in {folder}\n")
    except DataError as err:
        sys.stderr.write(f"error: {err}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
