"""A training run as one node tree, and the thin trainer that runs it.

The node says which model, optimizer, dataset and task; the libraries do the rest:
legoml-core loops (with ``max_steps`` for fractional epochs), legoml-track opens or resumes
the run directory in one call, the task owns its loss, steps, metrics and report.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import structlog

from legoml.core import Callback, Engine
from legoml.core.context import unwrap_model
from legoml.core.distributed import barrier, get_rank, get_world_size
from legoml.nn import (
    AdamWNode,
    Check,
    ConfigError,
    ModuleNode,
    Node,
    OneCycleNode,
    OptimizerNode,
    SchedulerNode,
    TinyCNNNode,
)
from legoml.track import TrackingCallback
from legoml_mnist.builders import (
    build_context,
    checkpointer,
    loop_limits,
    open_run,
    prepare_process,
    train_callbacks,
)
from legoml_mnist.datasets import DatasetNode, MNISTNode
from legoml_mnist.errors import AppError
from legoml_mnist.evaluation import evaluate_split, publish_report
from legoml_mnist.loaders import LoaderNode, rank_share
from legoml_mnist.logs import PHASES, freeze_startup_objects
from legoml_mnist.tasks import EvalReport, ImageClassificationNode, TaskNode

__all__ = ["TrainResult", "Trainer", "TrainerForImageClassificationNode", "TrainerNode"]

log = structlog.get_logger(__name__)
Positive = Annotated[int, Check(ge=1)]


@dataclass(frozen=True)
class TrainerNode(Node, tag="legoml_mnist.Trainer"):
    """A whole training run: model, optimizer, schedule, dataset, task, loop, tracking.

    ``epochs`` may be fractional: the schedule spans ``round(epochs * batches_per_epoch)``
    steps and training stops there."""

    model: ModuleNode = field(default_factory=lambda: TinyCNNNode(
        channels=(16, 32, 64), batch_norm=True, stem_stride=2, pool_first=True, hidden=(128,)))
    optimizer: OptimizerNode = field(default_factory=lambda: AdamWNode(lr=1e-2, weight_decay=5e-4, fused=True))
    scheduler: SchedulerNode | None = field(default_factory=lambda: OneCycleNode(
        pct_start=0.25, div_factor=25.0, final_div_factor=1e4, cycle_momentum=False))
    dataset: DatasetNode = field(default_factory=MNISTNode)
    task: TaskNode = field(default_factory=ImageClassificationNode)
    loader: LoaderNode = field(default_factory=LoaderNode)
    # 0.65 epoch at max lr 1e-2: >= 99.09% on seeds 0-2 in ~1.9 s (benchmarks/README.md)
    epochs: Annotated[float, Check(gt=0.0, le=1000.0)] = 0.65
    seed: int = 0
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    channels_last: bool = True
    clip_grad_norm: Annotated[float, Check(gt=0.0)] | None = None
    threads: Positive | None = None
    deterministic: bool = False
    checkpoint_every_steps: Positive | None = None
    checkpoint_every_epochs: Annotated[int, Check(ge=0)] = 1
    keep_last: Positive = 2
    runs_root: str = "runs"
    run_name: str = "mnist"
    progress: bool = True
    log_every_steps: Positive = 50

    def validate(self) -> None:
        if self.checkpoint_every_epochs == 0 and self.checkpoint_every_steps is None:
            raise ConfigError(
                "0 with checkpoint_every_steps unset writes no checkpoint while training; set "
                "checkpoint_every_epochs >= 1 or checkpoint_every_steps=N",
                "checkpoint_every_epochs",
            )

    def build(self) -> Trainer:
        return Trainer(self)


@dataclass(frozen=True)
class TrainerForImageClassificationNode(TrainerNode, tag="legoml_mnist.TrainerForImageClassification"):
    """The default experiment: a ``TrainerNode`` whose task is image classification.

    >>> TrainerForImageClassificationNode().fork(**{"optimizer.lr": 0.002}).optimizer.lr
    0.002
    """

    task: ImageClassificationNode = field(default_factory=ImageClassificationNode)


@dataclass
class TrainResult:
    """The outcome of ``train()``: where the run lives and what it reached."""

    run_dir: Path | None
    final_metrics: dict[str, float]
    train_seconds: float
    global_step: int
    report: EvalReport | None


class Trainer:
    """Built by ``TrainerNode``; ``train()`` runs the experiment, then tests it."""

    def __init__(self, node: TrainerNode) -> None:
        self.node = node

    def train(
        self,
        resume: str | Path | None = None,
        callbacks: Sequence[Callback] = (),
        mlflow: bool | str = False,
    ) -> TrainResult:
        """Train (or continue the run in ``resume``: a run directory or a checkpoint file),
        then evaluate on the test split. ``callbacks`` join the built-in ones (e.g. a sweep's
        pruning callback); ``mlflow`` mirrors the run (``True``: ``<runs_root>/mlflow.db``,
        or a tracking URI). Only rank 0 writes anything."""
        node, task = self.node, self.node.task
        PHASES.mark("config")  # the command line's parsing and checks before this call
        device, amp = prepare_process(node.seed, node.device, node.precision, node.threads, node.deterministic)
        rank, world_size = get_rank(), get_world_size()
        train_split, test_split = node.dataset.build()
        loader = rank_share(node.loader, world_size).build(
            train_split, task.scaling(node.dataset), train=True, seed=node.seed,
            device=device, rank=rank, world_size=world_size)
        if len(loader) == 0:
            raise AppError(f"no training batches: {len(train_split)} examples with batch size "
                           f"{node.loader.batch_size}; lower loader.batch_size or raise --limit-train")
        PHASES.mark("data")
        limits = loop_limits(node.epochs, len(loader))
        context = build_context(node, device, amp, limits["max_steps"])
        step = task.train_step(amp=amp, clip_grad_norm=node.clip_grad_norm, channels_last=node.channels_last)
        engine = Engine(step, context, [*train_callbacks(node, context), *callbacks])
        freeze_startup_objects()
        PHASES.mark("build")
        tracker = open_run(node, resume, context, engine, mlflow=mlflow)
        barrier()  # every rank has read the checkpoint before rank 0 may write the next one
        with tracker if tracker is not None else nullcontext():
            if tracker is not None:  # the per-step loss apart from the epoch-mean train/loss
                engine.callbacks.append(TrackingCallback(
                    tracker, log_every_n_steps=node.log_every_steps, loss_name="train/step_loss"))
            saver = checkpointer(node, tracker)
            engine.callbacks.append(saver)
            PHASES.mark("writes")
            state = engine.loop(loader, **limits)
            PHASES.mark("train")
            if state.global_step > 0:
                saver.save(engine, context)  # a run stopped between the regular saves
            PHASES.mark("writes")
            model = unwrap_model(context.model)
            report = evaluate_split(
                model, test_split, task=task, dataset=node.dataset, loader=node.loader,
                device=device, amp=amp, channels_last=node.channels_last,
                progress=node.progress and tracker is not None, rank=rank, world_size=world_size)
            final = {f"test/{name}": report.metrics[f"test/{name}"] for name in task.final_metrics}
            PHASES.mark("eval")
            if tracker is not None:
                tracker.log_scalars(report.metrics, step=state.global_step, epoch=state.epoch)
                tracker.log_text("eval_report", report.text())
                publish_report(report, model, test_split, task, node.dataset, tracker.artifacts_dir)
                report.run_dir = tracker.dir
                tracker.set_final_metrics(final)
        PHASES.mark("writes")
        seconds = float(state.timings.get("total", 0.0))
        if rank == 0:
            PHASES.publish(train_seconds=seconds, steps=state.global_step, final_metrics=final)
        log.info("trained", steps=state.global_step, train_seconds=round(seconds, 2), **final)
        return TrainResult(tracker.dir if tracker is not None else None, final, seconds, state.global_step, report)
