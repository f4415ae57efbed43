"""Training of an image classifier, wired from every LegoML library.

legoml-nn builds the model, optimizer and schedule; legoml-data serves the batches;
legoml-core runs the loop with its callbacks; legoml-metrics measures; legoml-track writes
the run directory and the checkpoints. ``train()`` ends with an evaluation on the test set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
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
    barrier,
    get_rank,
    get_world_size,
    is_main_process,
    keep_freed_memory,
    make_supervised_train_step,
    unwrap_model,
    wrap_ddp,
)
from legoml.metrics import MeanLoss
from legoml.track import (
    Run,
    TrackingCallback,
    find_latest_checkpoint,
    load_checkpoint,
    run,
    save_checkpoint,
)
from legoml_mnist.builders import (
    build_dataloader,
    build_metrics,
    build_model,
    build_optimizer_and_scheduler,
    load_splits,
    resolve_device,
    resolve_precision,
    seed_everything,
)
from legoml_mnist.errors import AppError
from legoml_mnist.evaluator import EvalReport, evaluate_split
from legoml_mnist.nodes import LoaderNode, TrainerForImageClassificationNode
from legoml_mnist.report import save_confusion_png

__all__ = ["ImageClassificationTrainer", "StopAtStep", "TrainResult"]

log = structlog.get_logger(__name__)


@dataclass
class TrainResult:
    """The outcome of ``train()``: where the run lives and what it reached."""

    run_dir: Path | None
    final_metrics: dict[str, float]
    train_seconds: float
    global_step: int
    report: EvalReport | None


class StopAtStep(Callback):
    """Ends training after exactly ``total_steps`` steps, inside the last (partial) epoch.

    A run whose steps end on an epoch boundary finishes that epoch normally instead, so
    its epoch-end metrics, evaluation and checkpoint still happen.
    """

    def __init__(self, total_steps: int) -> None:
        self.total_steps = total_steps

    def on_epoch_start(self, engine: Engine, context: Context) -> None:
        # resumed from the final checkpoint of a partial epoch: not one step more
        self.on_step_end(engine, context)

    def on_step_end(self, engine: Engine, context: Context) -> None:
        state = engine.state
        if state.global_step >= self.total_steps and state.step != state.epoch_length:
            engine.terminate()


class ImageClassificationTrainer:
    """Built by ``TrainerForImageClassificationNode``; ``train()`` runs the experiment."""

    def __init__(self, node: TrainerForImageClassificationNode) -> None:
        self.node = node

    def train(self, resume: str | Path | None = None) -> TrainResult:
        """Train (or continue the run in ``resume``: a run directory or a checkpoint file),
        then evaluate on the test split. Only rank 0 writes anything."""
        node = self.node
        checkpoint_state = _resume_state(resume) if resume is not None else None
        barrier()  # every rank has read the checkpoint before rank 0 may write the next one
        if node.threads is not None:
            torch.set_num_threads(node.threads)
        keep_freed_memory()
        seed_everything(node.seed, node.deterministic)
        device = resolve_device(node.device)
        rank, world_size = get_rank(), get_world_size()
        amp = resolve_precision(node.precision, device)

        train_split, test_split = load_splits(node.dataset)
        loader = build_dataloader(
            train_split, _rank_loader(node.loader, world_size), train=True, seed=node.seed,
            device=device, rank=rank, world_size=world_size,
        )
        if len(loader) == 0:
            raise AppError(
                f"no training batches: {len(train_split)} examples with batch size "
                f"{node.loader.batch_size}; lower loader.batch_size or raise --limit-train"
            )
        total_steps = max(1, round(node.epochs * len(loader)))
        max_epochs = math.ceil(total_steps / len(loader))

        model = build_model(node.model, device=device, channels_last=node.channels_last)
        if world_size > 1 and device.type == "cuda":  # batch statistics over the global batch
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # type: ignore[no-untyped-call]
        optimizer, scheduler = build_optimizer_and_scheduler(
            model, node.optimizer, node.scheduler, total_steps
        )
        scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 and device.type == "cuda" else None
        context = Context(
            model=wrap_ddp(model, device),
            optimizer=optimizer,
            loss_fn=nn.CrossEntropyLoss(label_smoothing=node.label_smoothing),
            device=device,
            scheduler=scheduler,
            scaler=scaler,
        )
        step = make_supervised_train_step(
            amp=amp, clip_grad_norm=node.clip_grad_norm, channels_last=node.channels_last
        )
        if checkpoint_state is not None:  # before the run directory is touched
            _load_context(context, checkpoint_state)
        main = is_main_process()
        tracker = _open_run(node, resume, checkpoint_state) if main else None
        try:
            result = self._run(
                node, tracker, context, step, loader, test_split, device, amp,
                total_steps, max_epochs, checkpoint_state,
            )
        except BaseException as err:
            if tracker is not None:
                tracker.close(err)
            raise
        if tracker is not None:
            tracker.close()
        return result

    def _run(
        self,
        node: TrainerForImageClassificationNode,
        tracker: Run | None,
        context: Context,
        step: Any,
        loader: Any,
        test_split: Any,
        device: torch.device,
        amp: torch.dtype | None,
        total_steps: int,
        max_epochs: int,
        checkpoint_state: dict[str, Any] | None,
    ) -> TrainResult:
        callbacks: list[Any] = [
            MetricsCallback(
                metrics=build_metrics(node.metrics), loss=MeanLoss(), prefix="train/", running_every=50
            ),
            *([LRSchedulerCallback(interval="step")] if context.scheduler is not None else []),
            NonFiniteLossGuard(),
            TimerCallback(),
            StopAtStep(total_steps),
            LoggingCallback(every_n_steps=node.log_every_steps),
        ]
        if node.progress:
            callbacks.append(ProgressBarCallback(desc="train"))
        if tracker is not None:
            # per-step loss apart from the epoch-mean train/loss: one row per (step, name)
            callbacks.append(TrackingCallback(
                tracker, log_every_n_steps=node.log_every_steps, loss_name="train/step_loss"
            ))
        checkpointer = _checkpointer(node, tracker)
        callbacks.append(checkpointer)
        engine = Engine(step, context, callbacks)
        if checkpoint_state is not None:
            engine.load_state_dict(checkpoint_state["engine"])
        state = engine.loop(loader, max_epochs=max_epochs)
        if state.global_step > 0:
            checkpointer.save(engine, context)
        train_seconds = float(state.timings.get("total", 0.0))

        model = unwrap_model(context.model)
        report = evaluate_split(
            model,
            test_split,
            loader=node.loader,
            metrics=node.metrics,
            device=device,
            amp=amp,
            channels_last=node.channels_last,
            progress=node.progress and tracker is not None,
            rank=get_rank(),  # each rank evaluates its shard; the counts are summed
            world_size=get_world_size(),
        )
        final = {"test/accuracy": report.metrics["test/accuracy"], "test/loss": report.metrics["test/loss"]}
        if tracker is not None:
            tracker.log_scalars(report.metrics, step=state.global_step, epoch=state.epoch)
            tracker.log_text("eval_report", report.text())
            report.run_dir = tracker.dir
            report.artifacts["confusion_matrix"] = save_confusion_png(
                report.confusion, tracker.artifacts_dir / "confusion_matrix.png"
            )
            tracker.set_final_metrics(final)
        log.info("trained", steps=state.global_step, train_seconds=round(train_seconds, 2), **final)
        return TrainResult(
            run_dir=tracker.dir if tracker is not None else None,
            final_metrics=final,
            train_seconds=train_seconds,
            global_step=state.global_step,
            report=report,
        )


def _rank_loader(loader: LoaderNode, world_size: int) -> LoaderNode:
    """``loader.batch_size`` is the global batch: each of ``world_size`` ranks takes an equal
    share, so a DDP run takes the same steps over the same examples as one process."""
    size = loader.batch_size
    if world_size == 1:
        return loader
    if size % world_size:
        raise AppError(
            f"loader.batch_size={size} is the global batch and must split evenly over "
            f"{world_size} ranks: use a multiple of {world_size} (e.g. "
            f"--set loader.batch_size={max(world_size, size - size % world_size)}) "
            "or another --nproc_per_node"
        )
    return loader.fork(batch_size=size // world_size)


def _checkpointer(node: TrainerForImageClassificationNode, tracker: Run | None) -> CheckpointCallback:
    """Rank 0's checkpointer writes into the run; the other ranks' never write (so any folder
    does) and only meet its barriers at the same steps."""
    if tracker is None:
        folder, extra = Path(node.runs_root), None
    else:
        run_ = tracker

        def extra() -> dict[str, Any]:
            # where scalars.csv stood: a resume drops exactly the rows logged after it
            return {"scalars_size": run_.scalars_size}

        folder = tracker.checkpoints_dir
    return CheckpointCallback(
        folder,
        saver=save_checkpoint,
        every_n_steps=node.checkpoint_every_steps,
        every_n_epochs=node.checkpoint_every_epochs or None,
        keep_last=node.keep_last,
        config=node.to_dict(),
        extra=extra,
    )


def _resume_state(resume: str | Path) -> dict[str, Any]:
    """The checkpoint to continue from: a checkpoint file, or a run directory's latest."""
    path = Path(resume)
    if not path.exists():
        raise AppError(f"--resume {path}: no such run directory or checkpoint")
    if path.is_dir():
        folder = path / "checkpoints"
        latest = find_latest_checkpoint(folder) if folder.is_dir() else None
        if latest is None:
            raise AppError(f"--resume {path}: the run has no checkpoint yet; start a new run instead")
        path = latest
    state = load_checkpoint(path)
    for key in ("engine", "context"):
        if key not in state:
            raise AppError(f"--resume {path}: not a training checkpoint (no {key!r} entry)")
    state["_path"] = str(path)
    return state


def _load_context(context: Context, state: dict[str, Any]) -> None:
    """Load the checkpoint's model, optimizer and schedule; one that belongs to another
    model or optimizer is refused in one line."""
    try:
        context.load_state_dict(state["context"])
    except (RuntimeError, KeyError, ValueError, TypeError) as err:
        lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
        detail = " ".join(lines[:2]) or type(err).__name__
        raise AppError(
            f"--resume {state['_path']}: the checkpoint does not fit this experiment "
            f"({detail[:300]}); resume without --config/--set so the run's own config is used"
        ) from None


def _open_run(
    node: TrainerForImageClassificationNode,
    resume: str | Path | None,
    checkpoint_state: dict[str, Any] | None,
) -> Run:
    if resume is None or checkpoint_state is None:
        return run(name=node.run_name, root=node.runs_root, config=node, seed=node.seed)
    checkpoint = Path(checkpoint_state["_path"])
    run_dir = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else Path(resume)
    step = int(checkpoint_state["global_step"])
    extra = checkpoint_state.get("extra")
    size = extra.get("scalars_size") if isinstance(extra, dict) else None
    own = checkpoint.parent.name == "checkpoints"  # the size is of this run's scalars.csv
    return run(
        resume=run_dir, config=node, seed=node.seed, rewind_to_step=step,
        rewind_to_size=size if own and isinstance(size, int) else None,
    )
