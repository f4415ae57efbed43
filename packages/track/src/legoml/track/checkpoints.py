"""Checkpoints that survive crashes and never run code: atomic save, safe load, progress order.

A checkpoint is a ``torch.save``-d mapping of tensors, state_dicts and plain data. The layout
legoml-core's CheckpointCallback writes: ``{"engine", "context": {"model", "optimizer", ...},
"epoch", "global_step", "metrics", "config"?}``; a bare model state_dict or ``{"model": sd}``
is accepted too.

Example::

    import tempfile, torch
    from pathlib import Path
    from legoml.track.checkpoints import save_checkpoint, load_checkpoint

    path = Path(tempfile.mkdtemp()) / "step-00000010.pt"
    save_checkpoint(path, {"model": torch.nn.Linear(2, 1).state_dict(), "global_step": 10})
    assert load_checkpoint(path)["global_step"] == 10
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import structlog
import torch

from legoml.track._atomic import atomic_write
from legoml.track._fit import fit_state_dict, model_state_dict
from legoml.track.errors import CheckpointError

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "CheckpointError",
    "CheckpointInfo",
    "checkpoint_info",
    "find_latest_checkpoint",
    "load_checkpoint",
    "load_model_from_checkpoint",
    "save_checkpoint",
]

log = structlog.get_logger(__name__)

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
_STEP_IN_NAME = re.compile(r"(?:^|[-_.])step[-_]?(\d+)(?:$|[-_.])")
_UNSAFE_DETAIL = re.compile(
    r"(Unsupported global: GLOBAL \S+|unsupported GLOBAL \S+|Unsupported operand \d+"
    r"|Unsupported class \S+)",
    re.IGNORECASE,
)
_LEAVES = (int, float, bool, complex, str, bytes, bytearray, type(None), torch.Size)
_CONTAINERS = (dict, OrderedDict, Counter, list, tuple, set)


def _check_safe(value: Any, where: str) -> None:
    """Refuse, before writing, anything a ``weights_only`` load could not read back."""
    kind = type(value)
    if kind in _CONTAINERS:
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(value, dict):
                _check_safe(key, f"{where} key {key!r}")
            _check_safe(item, f"{where}[{key!r}]")
    elif isinstance(value, torch.Tensor):
        if kind not in (torch.Tensor, torch.nn.Parameter):
            raise CheckpointError(f"{where} is a {kind.__name__} tensor subclass; save .data")
    elif kind not in _LEAVES and not isinstance(value, (torch.dtype, torch.device)):
        raise CheckpointError(
            f"{where} is a {kind.__module__}.{kind.__qualname__}, which load_checkpoint cannot "
            "read back safely; store tensors, numbers, strings, lists, tuples or dicts"
        )


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> None:
    """Atomically write ``state`` to ``path``: a crash mid-save leaves the previous file intact.

    Writes a temporary file beside ``path``, fsyncs it, renames it over ``path`` and fsyncs the
    directory; the temporary file is removed on any failure.
    """
    target = Path(path)
    if not isinstance(state, Mapping):
        raise CheckpointError(f"checkpoint state for {target} must be a mapping, got {type(state)}")
    _check_safe(state, "state")
    if target.is_dir():
        raise CheckpointError(f"cannot save checkpoint: {target} is a directory; pass a file path")
    payload = state if type(state) in (dict, OrderedDict) else dict(state)

    def write(handle: IO[bytes]) -> None:
        torch.save(payload, handle)

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, write)
    except OSError as exc:
        raise CheckpointError(
            f"could not save checkpoint {target}: {exc.strerror or exc}; any previous file is intact"
        ) from exc
    except (pickle.PicklingError, RuntimeError, TypeError) as exc:
        disk = _os_error_behind(exc)  # torch's writer hides a failed write (disk full, EIO)
        if disk is not None:
            raise CheckpointError(
                f"could not save checkpoint {target}: {disk.strerror or disk}; "
                "any previous file is intact"
            ) from exc
        raise CheckpointError(f"could not serialize checkpoint {target}: {exc}") from exc


def _os_error_behind(exc: BaseException) -> OSError | None:
    """The OSError that caused ``exc`` (through ``__cause__``/``__context__``), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _check_file(path: Path) -> int:
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}; check the path") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from exc
    if path.is_dir():
        raise CheckpointError(
            f"{path} is a directory, not a checkpoint file; use find_latest_checkpoint(dir)"
        )
    if stat.st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); use an earlier checkpoint")
    return stat.st_size


def _corrupt(path: Path, exc: BaseException) -> CheckpointError:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
    return CheckpointError(
        f"checkpoint {path} is corrupt or truncated ({type(exc).__name__}: {reason}); "
        "use an earlier checkpoint"
    )


def _torch_load(path: Path, map_location: Any, mmap: bool) -> Any:
    _check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():
            raise _corrupt(path, exc) from exc
        found = _UNSAFE_DETAIL.search(str(exc))
        detail = found.group(1) if found else "objects other than tensors and plain data"
        what = (
            "it is corrupt or not written by torch.save"
            if "operand" in detail.lower()
            else "re-save it with tensors and plain data only"
        )
        raise CheckpointError(
            f"refusing to load {path}: a safe (weights_only) load rejects it ({detail}); "
            f"{what}; LegoML never loads checkpoints unsafely"
        ) from exc
    except RuntimeError as exc:
        if mmap and "mmap" in str(exc):  # old (non-zip) format: read it without mmap
            return _torch_load(path, map_location, mmap=False)
        raise _corrupt(path, exc) from exc
    except Exception as exc:  # garbage makes the unpickler fail in many ways
        raise _corrupt(path, exc) from exc


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)`` only; never runs code from it.

    Raises CheckpointError for a missing path, a directory, an empty, truncated or corrupt file,
    and for a file that needs anything but tensors and plain data (there is no unsafe fallback).
    """
    target = Path(path)
    data = _torch_load(target, map_location, mmap=False)
    if not isinstance(data, dict):
        raise CheckpointError(
            f"checkpoint {target} holds a {type(data).__name__}, expected a dict (state_dict)"
        )
    return data


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says about itself (``None`` where it does not say)."""

    path: Path
    epoch: int | None
    global_step: int | None
    metrics: dict[str, float] = field(default_factory=dict)
    size_bytes: int = 0
    created: datetime | None = None
    keys: tuple[str, ...] = ()


def _as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _progress(data: Mapping[str, Any]) -> tuple[int | None, int | None]:
    epoch, step = _as_int(data.get("epoch")), _as_int(data.get("global_step"))
    engine = data.get("engine")
    if isinstance(engine, Mapping):
        epoch = epoch if epoch is not None else _as_int(engine.get("epoch"))
        step = step if step is not None else _as_int(engine.get("global_step"))
    return epoch, step


def _metrics(data: Mapping[str, Any]) -> dict[str, float]:
    raw = data.get("metrics")
    if not isinstance(raw, Mapping):
        return {}
    out: dict[str, float] = {}
    for key, value in raw.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[str(key)] = float(value)
        elif isinstance(value, torch.Tensor) and value.numel() == 1:
            out[str(key)] = float(value.item())
    return out


def checkpoint_info(path: str | os.PathLike[str]) -> CheckpointInfo:
    """Epoch, global step, metrics, size in bytes and creation time of a checkpoint."""
    target = Path(path)
    data = _torch_load(target, "cpu", mmap=True)  # mmap: no need to read every tensor
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint {target} holds a {type(data).__name__}, expected a dict")
    stat = target.stat()
    epoch, step = _progress(data)
    return CheckpointInfo(
        path=target,
        epoch=epoch,
        global_step=step,
        metrics=_metrics(data),
        size_bytes=stat.st_size,
        created=datetime.fromtimestamp(stat.st_mtime).astimezone(),
        keys=tuple(str(key) for key in data),
    )


def _step_from_name(path: Path) -> int | None:
    step = _STEP_IN_NAME.search(path.stem)
    return None if step is None else int(step.group(1))


def _is_complete(path: Path) -> bool:
    """Cheap integrity check: a zip checkpoint has a readable central directory."""
    try:
        if path.stat().st_size == 0:
            return False
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return bool(archive.namelist())
        _torch_load(path, "cpu", mmap=False)
    except (OSError, zipfile.BadZipFile, CheckpointError):
        return False
    return True


def find_latest_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    """The checkpoint furthest into training (by global_step, else epoch), or None if none.

    Progress comes from a name such as ``step-00000123.pt`` (no need to load the file) or else
    from the file's own ``global_step``/``epoch``; file times are never used. Unreadable files
    are skipped. A run directory is searched in its ``checkpoints/`` folder.
    """
    folder = Path(directory)
    if (folder / "meta.json").is_file() and (folder / "checkpoints").is_dir():
        folder = folder / "checkpoints"
    if not folder.exists():
        return None
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a directory; pass the checkpoints directory")
    ranked: list[tuple[tuple[int, int, int, str], Path]] = []
    for path in folder.iterdir():
        if path.name.startswith(".") or path.suffix not in CHECKPOINT_SUFFIXES:
            continue
        if not path.is_file():
            continue
        named = _step_from_name(path)
        if named is not None:
            ranked.append(((named, -1, 1, path.name), path))
            continue
        try:
            info = checkpoint_info(path)
        except CheckpointError as exc:
            log.warning("skipping unreadable checkpoint", path=str(path), error=str(exc))
            continue
        if info.global_step is not None:  # the step decides; the epoch only breaks no ties
            ranked.append(((info.global_step, -1, 0, path.name), path))
        else:
            epoch = -1 if info.epoch is None else info.epoch
            ranked.append(((-1, epoch, 0, path.name), path))
    for _, path in sorted(ranked, key=lambda item: item[0], reverse=True):
        if _is_complete(path):
            return path
        log.warning("skipping incomplete checkpoint", path=str(path))
    return None


def load_model_from_checkpoint(
    model: torch.nn.Module,
    path: str | os.PathLike[str],
    key: str | None = None,
    *,
    strict: bool = True,
    map_location: Any = "cpu",
) -> dict[str, Any]:
    """Load a model's weights from a checkpoint; returns the whole checkpoint dict.

    The state_dict is found under ``key`` (dotted, e.g. ``"context.model"``), else under
    ``"model"``, ``"context" -> "model"`` or ``"state_dict"``, else the file is taken as a bare
    state_dict. Missing/unexpected keys (when ``strict``) and shape mismatches raise one
    CheckpointError listing them.
    """
    target = Path(path)
    data = load_checkpoint(target, map_location=map_location)
    state = model_state_dict(data, key, str(target))
    fitted = fit_state_dict(model, state, str(target), strict=strict)
    try:
        model.load_state_dict(fitted, strict=strict)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {target} does not fit the model: {first}") from exc
    return data
