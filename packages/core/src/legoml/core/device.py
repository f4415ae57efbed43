"""Device detection and moving (nested) batches to a device.

Detection runs once per process and is cached: nothing here queries CUDA in the hot loop.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch

__all__ = ["cpu_supports_bf16", "detect_device", "keep_freed_memory", "move_to_device"]

T = TypeVar("T")

_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


@functools.cache
def detect_device() -> torch.device:
    """The best available device: CUDA, then MPS, then CPU (queried once, then cached).

    Example:
        >>> detect_device().type in {"cuda", "mps", "cpu"}
        True
    """
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _cpuinfo_flags(path: Path = Path("/proc/cpuinfo")) -> set[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


@functools.cache
def cpu_supports_bf16() -> bool:
    """Whether this CPU runs bfloat16 math natively (AVX512-BF16, AMX, or Arm BF16).

    Without native support CPU autocast to bf16 is emulated and slower than fp32, so
    ``amp="auto"`` in the step helpers only picks bf16 on CPUs where this is true.
    """
    flags = _cpuinfo_flags()
    if flags:
        return bool(flags & _BF16_CPU_FLAGS)
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        return True  # Apple M2 and later; oneDNN handles bf16 on Apple silicon
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def move_to_device(batch: T, device: torch.device | str, non_blocking: bool = True) -> T:
    """Move every tensor in a nested batch (tuples, lists, dicts, namedtuples, dataclasses)
    to ``device``; the one batch mover of LegoML (the steps use it; legoml-data's is a
    deprecated alias).

    Tensors already there are returned as they are (no copy, no call into torch), and so is
    a tuple whose tensors all are; the copy is non-blocking only for pinned CPU memory going
    to an accelerator, the one case where that is safe and faster. Mapping types (e.g.
    ``OrderedDict``) and dataclasses keep their type.

    Example:
        >>> import torch
        >>> x, y = move_to_device((torch.zeros(2), torch.ones(2)), "cpu")
        >>> x.device.type
        'cpu'
    """
    if not isinstance(device, torch.device):
        device = torch.device(device)
    to_cpu = device == _CPU or device.type == "cpu"  # `.type` is slow: compare first
    return _move(batch, device, to_cpu, non_blocking)  # type: ignore[no-any-return]


_CPU = torch.device("cpu")


def _move(obj: Any, device: torch.device, to_cpu: bool, non_blocking: bool) -> Any:
    if isinstance(obj, torch.Tensor):
        if obj.is_cpu if to_cpu else obj.device == device:
            return obj
        pinned = non_blocking and not to_cpu and obj.is_cpu and obj.is_pinned()
        return obj.to(device, non_blocking=pinned)
    if isinstance(obj, tuple):
        moved = [_move(item, device, to_cpu, non_blocking) for item in obj]
        if all(new is old for new, old in zip(moved, obj, strict=True)):
            return obj
        return type(obj)(*moved) if hasattr(obj, "_fields") else type(obj)(moved)
    if isinstance(obj, list):
        return [_move(item, device, to_cpu, non_blocking) for item in obj]
    if isinstance(obj, Mapping):
        moved_items = {key: _move(value, device, to_cpu, non_blocking) for key, value in obj.items()}
        if type(obj) is dict:
            return moved_items
        factory: Any = type(obj)
        try:
            return factory(moved_items)
        except TypeError:  # a mapping type that cannot be built from a dict
            return moved_items
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {
            field.name: _move(getattr(obj, field.name), device, to_cpu, non_blocking)
            for field in dataclasses.fields(obj)
            if field.init
        }
        return dataclasses.replace(obj, **changes)
    return obj


_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


@functools.cache
def keep_freed_memory(threshold_bytes: int = 1 << 30) -> bool:
    """Ask glibc to keep freed buffers below ``threshold_bytes`` for reuse.

    By default glibc hands large blocks back to the OS on free and faults them in again
    on the next step; on CPU training loops that cost up to ~15% of each fp32 step in page
    faults. Called once at start-up; returns False where the C library has no ``mallopt``.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    size = min(threshold_bytes, 2**31 - 1)
    return bool(mallopt(_M_MMAP_THRESHOLD, size)) and bool(mallopt(_M_TRIM_THRESHOLD, size))
