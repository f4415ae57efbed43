"""Builder helpers: turn an experiment's nodes into live objects from the LegoML libraries."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from legoml.core import (
    Callback,
    CheckpointCallback,
    Context,
    Engine,
    LoggingCallback,
    LRSchedulerCallback,
    MetricsCallback,
    NonFiniteLossGuard,
    ProgressBarCallback,
    TimerCallback,
    detect_device,
    seed_everything,
)
from legoml.core.device import keep_freed_memory
from legoml.core.distributed import get_world_size, is_main_process, wrap_ddp
from legoml.core.steps import resolve_amp_dtype
from legoml.metrics import MeanLoss
from legoml.nn import ModuleNode
from legoml.track import (
    Run,
    load_model_from_checkpoint,
    resolve_checkpoint,
    restore_checkpoint,
    resume_run,
    run,
    save_checkpoint,
)
from legoml_mnist.errors import AppError

if TYPE_CHECKING:
    from legoml_mnist.trainer import TrainerNode

__all__ = [
    "build_context",
    "build_model",
    "checkpointer",
    "loop_limits",
    "open_run",
    "prepare_process",
    "resolve_device",
    "train_callbacks",
]


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an explicit device must be available."""
    if name == "auto":
        return detect_device()
    if name == "cuda" and not torch.cuda.is_available():
        raise AppError("device 'cuda' is not available here: use --device auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise AppError("device 'mps' is not available here: use --device auto or cpu")
    return torch.device(name)


def prepare_process(
    seed: int, device: str, precision: str, threads: int | None, deterministic: bool = False
) -> tuple[torch.device, torch.dtype | None]:
    """Threads, allocator, seeds; returns the device and the autocast dtype."""
    if threads is not None:
        torch.set_num_threads(threads)
    keep_freed_memory()
    seed_everything(seed, deterministic)
    resolved = resolve_device(device)
    return resolved, resolve_amp_dtype(precision, resolved)  # type: ignore[arg-type]


def build_model(
    node: ModuleNode,
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    device: torch.device | None = None,
    channels_last: bool = False,
) -> nn.Module:
    """Build the model, load weights from ``checkpoint`` when given, place it on ``device``."""
    model = node.build()
    if checkpoint is not None:
        load_model_from_checkpoint(model, Path(checkpoint))
    if device is not None:
        model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def build_context(
    node: TrainerNode, device: torch.device, amp: torch.dtype | None, total_steps: int
) -> Context:
    """Model (DDP-wrapped under torchrun), optimizer, per-step schedule, loss and scaler."""
    node.task.check_model(node.model, node.dataset)
    model = build_model(node.model, device=device, channels_last=node.channels_last)
    if get_world_size() > 1 and device.type == "cuda":  # batch statistics over the global batch
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # type: ignore[no-untyped-call]
    optimizer = node.optimizer.build(model)
    scheduler = node.scheduler.build(optimizer, total_steps) if node.scheduler else None
    fp16_cuda = amp == torch.float16 and device.type == "cuda"
    return Context(
        model=wrap_ddp(model, device),
        optimizer=optimizer,
        loss_fn=node.task.loss_fn(train=True),
        device=device,
        scheduler=scheduler,
        scaler=torch.amp.GradScaler("cuda") if fp16_cuda else None,
    )


def train_callbacks(node: TrainerNode, context: Context) -> list[Callback]:
    """Metrics, schedule, guard, timer, logging and progress of a training run."""
    callbacks: list[Callback] = [
        MetricsCallback(
            metrics=node.task.metrics(node.dataset), loss=MeanLoss(), prefix="train/",
            running_every=50,
        ),
        NonFiniteLossGuard(),
        TimerCallback(),
        LoggingCallback(every_n_steps=node.log_every_steps),
    ]
    if context.scheduler is not None:
        callbacks.append(LRSchedulerCallback(interval="step"))
    if node.progress:
        callbacks.append(ProgressBarCallback(desc="train"))
    return callbacks


def checkpointer(node: TrainerNode, tracker: Run | None) -> CheckpointCallback:
    """Rank 0's checkpointer writes into the run; the other ranks' never write (so any folder
    does) and only meet its barriers at the same steps."""
    return CheckpointCallback(
        tracker.checkpoints_dir if tracker is not None else Path(node.runs_root),
        saver=save_checkpoint,
        every_n_steps=node.checkpoint_every_steps,
        every_n_epochs=node.checkpoint_every_epochs or None,
        keep_last=node.keep_last,
        config=node.to_dict(),
    )


def open_run(
    node: TrainerNode,
    resume: str | Path | None,
    context: Context,
    engine: Engine,
    mlflow: bool | str = False,
) -> Run | None:
    """Rank 0 opens, or resumes in one call, the run directory (mirrored to MLflow when
    ``mlflow`` is set: ``True`` for the runs root's SQLite store, or a tracking URI); the
    other ranks only restore the checkpoint (rank 0 restarts a run without checkpoints from
    step 0)."""
    if not is_main_process():
        found = resolve_checkpoint(resume) if resume is not None else None
        if found is not None:
            restore_checkpoint(found, context, engine)
        return None
    if resume is None:
        return run(name=node.run_name, root=node.runs_root, config=node, seed=node.seed,
                   mlflow=mlflow)
    return resume_run(resume, context, engine, config=node, seed=node.seed, create=False,
                      mlflow=mlflow)


def loop_limits(epochs: float, batches: int) -> dict[str, Any]:
    """``epochs`` may be fractional: training stops after ``round(epochs * batches)`` steps."""
    total = max(1, round(epochs * batches))
    return {"max_epochs": -(-total // batches), "max_steps": total}
