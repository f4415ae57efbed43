"""torch.distributed helpers for runs under ``torchrun``: init, DDP wrapping, rank checks.

Everything degrades to single-process behaviour when the process group is not set up,
so the same training script runs with ``python`` and with ``torchrun``.

Example:
    >>> from legoml.core.distributed import distributed_session, is_main_process
    >>> with distributed_session() as info:  # single process: nothing to initialise
    ...     info.world_size, is_main_process()
    (1, True)
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import structlog
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from legoml.core.errors import DistributedError

__all__ = [
    "DistributedInfo",
    "barrier",
    "destroy_distributed",
    "distributed_session",
    "get_local_rank",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "release_ddp",
    "wrap_ddp",
]

_log = structlog.get_logger(__name__)
_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistributedInfo:
    """Where this process sits in the job and which device it should use."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0 (the one that logs, shows progress and checkpoints)."""
        return self.rank == 0


def is_distributed() -> bool:
    """Whether a process group is initialised (with any world size)."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's global rank; 0 without a process group."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """Number of processes in the job; 1 without a process group."""
    return dist.get_world_size() if is_distributed() else 1


def get_local_rank() -> int:
    """Rank on this machine (torchrun's ``LOCAL_RANK``); 0 outside torchrun."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """Whether this process is rank 0."""
    return get_rank() == 0


def _env_int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except (KeyError, ValueError):
        raise DistributedError(
            f"environment variable {name}={env.get(name)!r} is not an integer; "
            "launch with torchrun (it sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)"
        ) from None


def init_distributed(
    backend: str | None = None,
    timeout: timedelta = timedelta(minutes=10),
    device: torch.device | None = None,
) -> DistributedInfo:
    """Initialise the process group from torchrun's environment variables.

    Without ``WORLD_SIZE`` in the environment this is a no-op describing a single
    process. The backend defaults to ``nccl`` when CUDA is available, else ``gloo``; on
    CUDA the process binds to ``cuda:LOCAL_RANK``. Calling it twice returns the same info.
    """
    env = os.environ
    if "WORLD_SIZE" not in env:
        local = device if device is not None else torch.device("cpu")
        return DistributedInfo(0, 1, 0, local, None)
    missing = [name for name in _TORCHRUN_VARS if name not in env]
    if missing:
        raise DistributedError(
            f"torchrun environment incomplete, missing {', '.join(missing)}; launch with "
            "`torchrun --nproc_per_node=N ...`"
        )
    rank, world, local_rank = (_env_int(env, n) for n in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    use_cuda = torch.cuda.is_available() if device is None else device.type == "cuda"
    backend = backend or ("nccl" if use_cuda else "gloo")
    if device is None:
        device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not is_distributed():
        if not dist.is_available():
            raise DistributedError("this torch build has no torch.distributed support")
        dist.init_process_group(
            backend=backend,
            rank=rank,
            world_size=world,
            timeout=timeout,
        )
        _log.info("distributed_initialised", rank=rank, world_size=world, backend=backend)
    return DistributedInfo(rank, world, local_rank, device, backend)


def release_ddp() -> int:
    """Detach every live DistributedDataParallel from its process group; returns how many.

    DDP's C++ reducer and logger hold the process group, so ``destroy_process_group``
    alone leaves gloo's worker threads running until the interpreter finalizes, where one
    that frees a finished collective's tensors aborts the process (SIGABRT, "terminate
    called without an active exception"). Dropping them lets the backend be freed (its
    threads joined) now. The wrapped ``.module`` stays usable; the DDP wrapper does not.
    """
    released = 0
    for obj in gc.get_objects():
        if issubclass(type(obj), DistributedDataParallel):
            for name in ("logger", "reducer"):
                obj.__dict__.pop(name, None)
            obj.__dict__["_comm_hooks"] = []
            obj.__dict__["process_group"] = None
            released += 1
    gc.collect()
    return released


def destroy_distributed() -> None:
    """Release DDP's hold on the backend (:func:`release_ddp`), then destroy the process
    group so its threads stop before interpreter teardown (safe to call twice)."""
    if is_distributed():
        released = release_ddp()
        dist.destroy_process_group()
        gc.collect()
        _log.debug("distributed_destroyed", released_ddp=released)


@contextmanager
def distributed_session(
    backend: str | None = None,
    timeout: timedelta = timedelta(minutes=10),
    device: torch.device | None = None,
) -> Iterator[DistributedInfo]:
    """:func:`init_distributed` on entry, :func:`destroy_distributed` on exit, errors included.

    On exit, DDP wrappers are detached from the group first (:func:`release_ddp`; use
    ``ddp.module`` afterwards), so a script that simply returns exits without gloo's
    teardown abort.
    """
    info = init_distributed(backend=backend, timeout=timeout, device=device)
    try:
        yield info
    finally:
        destroy_distributed()


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if not is_distributed():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def wrap_ddp(
    model: nn.Module, device: torch.device | None = None, **ddp_kwargs: object
) -> nn.Module:
    """Wrap ``model`` in DistributedDataParallel when a process group with >1 rank exists.

    The model must already be on ``device``; single-process runs get the model back as is.
    ``Context.state_dict()`` unwraps DDP, so checkpoints load with any world size.
    """
    if get_world_size() <= 1:
        return model
    if device is not None and device.type == "cuda":
        return DistributedDataParallel(
            model,
            device_ids=[device],
            output_device=device,
            **ddp_kwargs,  # type: ignore[arg-type]
        )
    return DistributedDataParallel(model, **ddp_kwargs)  # type: ignore[arg-type]
