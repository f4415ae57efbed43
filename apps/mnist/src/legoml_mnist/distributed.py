"""``legoml-mnist train --distributed``: the same experiment, data parallel under torchrun.

Each rank runs the same trainer; legoml-core does the DDP parts (process group, DDP
wrapping, metric reduction, rank-0-only logging/tracking/checkpoints with barriers). This
module adds what a job of several processes needs around it:

- ``loader.batch_size`` is the GLOBAL batch (the trainer gives each rank an equal share), so
  a run takes the same steps over the same examples as one process with that batch.
- ``--resume``: rank 0 picks the checkpoint and every rank loads that same file (a run
  directory on a filesystem all machines see); the world size may differ from the run's.
- Failures end the whole job promptly: torchrun stops the other ranks with SIGTERM, which
  becomes an error here (the run is marked failed, the process group destroyed); a rank
  that loses a peer mid-collective reports it in one line instead of a gloo/NCCL trace;
  a peer that hangs without dying trips the collective timeout
  (``LEGOML_DIST_TIMEOUT`` seconds, default 300) instead of torch's 10 minutes.
- The process ends with :func:`exit_process`, skipping Python's interpreter teardown: gloo's
  worker threads outlive ``destroy_process_group`` (DDP's reducer keeps the backend alive),
  and one that frees a finished collective's tensors while the interpreter finalizes calls
  ``std::terminate`` (SIGABRT, "terminate called without an active exception").
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import cast

import torch
import torch.distributed as dist

from legoml.core import CoreError
from legoml.core.distributed import distributed_session, get_rank, get_world_size
from legoml.track import resolve_checkpoint
from legoml_mnist.errors import AppError
from legoml_mnist.trainer import TrainerNode, TrainResult

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "TIMEOUT_ENV",
    "RankFailureError",
    "exit_process",
    "train_distributed",
]

TIMEOUT_ENV = "LEGOML_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 300.0

# What a collective raises when a peer process died or the link broke (gloo, NCCL, store).
_PEER_LOST = (
    "connection closed by peer",
    "connection reset by peer",
    "broken pipe",
    "timed out",
    "/gloo/",
    "nccl",
    "socket",
)
_joined = False  # this process joined a process group: its gloo threads live until exit


class RankFailureError(AppError):
    """This rank stopped because another rank failed or torchrun stopped the job."""


def train_distributed(
    node: TrainerNode, resume: str | Path | None = None, mlflow: bool | str = False
) -> TrainResult:
    """Join the process group torchrun describes, train, and leave it (also on errors)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise AppError(
            "--distributed needs torchrun's environment: run `torchrun --nproc_per_node=2 "
            "-m legoml_mnist train --distributed` (or make train-ddp NPROC=2)"
        )
    global _joined
    timeout = collective_timeout()
    with _sigterm_raises(), distributed_session(timeout=timeout):
        _joined = True
        try:
            checkpoint = shared_checkpoint(resume) if resume is not None else None
            return node.build().train(resume=checkpoint, mlflow=mlflow)
        except RuntimeError as err:
            if isinstance(err, CoreError) or not _peer_lost(err):
                raise
            raise RankFailureError(
                f"rank {get_rank()}/{get_world_size()} lost another rank ({_first_line(err)}); "
                "it crashed or was stopped: torchrun's summary names it. Checkpoints are "
                "written atomically by rank 0; continue with --resume RUN_DIR --distributed"
            ) from err


def exit_process(code: int) -> int:
    """End a process that joined a process group now, with ``code``, after flushing output;
    other processes get ``code`` back.

    ``destroy_process_group`` does not stop gloo's worker threads while DDP's reducer still
    holds the backend (it does until the process ends). If the interpreter finalizes while
    one of them releases a finished collective (tensors owned by Python), that thread cannot
    take the GIL, is unwound, and the process aborts with SIGABRT, so a rank that finished
    first, or one that reported a failure, would crash and make torchrun stop the others.
    Everything a run writes is closed by then (tracker, atomic checkpoints); only the
    teardown is skipped.
    """
    if not _joined:
        return code
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def collective_timeout() -> timedelta:
    """How long a collective waits for a silent peer: ``LEGOML_DIST_TIMEOUT`` seconds."""
    text = os.environ.get(TIMEOUT_ENV)
    if text is None:
        return timedelta(seconds=DEFAULT_TIMEOUT_S)
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise AppError(f"{TIMEOUT_ENV}={text!r} must be a number of seconds > 0, e.g. 300")
    return timedelta(seconds=seconds)


def shared_checkpoint(resume: str | Path) -> Path:
    """The checkpoint file every rank resumes from: rank 0 resolves a run directory to its
    latest checkpoint once (so no rank races a newer save), the others check they see it."""
    chosen: list[object] = [None]
    if get_rank() == 0:
        path = Path(resume)
        latest = resolve_checkpoint(path) if path.exists() else None
        chosen = [(str(latest or path), latest is not None)]
    if get_world_size() > 1:
        dist.broadcast_object_list(chosen, src=0)
    name, found = cast(tuple[str, bool], chosen[0])
    checkpoint = Path(name)
    if not found:
        return checkpoint  # the trainer reports the missing run or checkpoint on every rank
    missing = torch.tensor([0 if checkpoint.is_file() else 1])
    if get_world_size() > 1:
        dist.all_reduce(missing)
    if int(missing.item()) > 0:
        raise AppError(
            f"--resume {checkpoint}: {int(missing.item())} rank(s) cannot see this file; on "
            "several machines keep the run directory on a filesystem every node mounts"
        )
    return checkpoint


def _peer_lost(err: BaseException) -> bool:
    if isinstance(err, dist.DistError):
        return True
    text = str(err).lower()
    return any(marker in text for marker in _PEER_LOST)


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"[:300]


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn torchrun's SIGTERM (sent to every rank when one fails) into an error, so the
    run is closed as failed and the process group destroyed instead of dying mid-write."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal raised
        if raised or sys.exc_info()[1] is not None:
            return  # already unwinding from an error: let that cleanup finish
        raised = True
        raise RankFailureError(
            f"rank {get_rank()} stopped by {signal.Signals(signum).name}: torchrun stops every "
            "rank when one fails or the job is cancelled (its summary names the root cause)"
        )

    previous = signal.signal(signal.SIGTERM, handler)
    failed = True
    try:
        yield
        failed = False
    finally:
        # A failing rank is about to print its one-line error and exit. torchrun sends
        # SIGTERM as soon as it sees another rank die; with the default action restored
        # here, that signal killed the process before its error line was written.
        signal.signal(signal.SIGTERM, signal.SIG_IGN if failed else previous)
