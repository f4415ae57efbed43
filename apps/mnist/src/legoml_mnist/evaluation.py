"""Evaluating a model on a split with its task's metrics, and publishing the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from legoml.core import Context, Engine, MetricsCallback, ProgressBarCallback
from legoml.data import Split
from legoml.metrics import MeanLoss
from legoml_mnist.datasets import DatasetNode
from legoml_mnist.errors import AppError
from legoml_mnist.loaders import LoaderNode
from legoml_mnist.tasks import EvalReport, TaskNode

__all__ = ["evaluate_split", "publish_report"]


def evaluate_split(
    model: nn.Module,
    split: Split,
    *,
    task: TaskNode,
    dataset: DatasetNode,
    loader: LoaderNode,
    device: torch.device,
    amp: torch.dtype | None,
    channels_last: bool,
    progress: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> EvalReport:
    """Run ``model`` once over ``split`` in evaluation batches with the task's metrics.

    Under torch.distributed each of ``world_size`` ranks evaluates its own shard and every
    count is summed across ranks, so each rank gets the whole split's figures."""
    if len(split) < world_size:
        raise AppError(
            f"the evaluation split has {len(split)} examples, fewer than the {world_size} "
            "ranks evaluating it: evaluate more examples (raise --limit-test) or use fewer ranks"
        )
    data = loader.build(
        split, task.scaling(dataset), train=False, device=device, rank=rank, world_size=world_size
    )
    extras = task.report_metrics(dataset)
    metrics = MetricsCallback({**task.metrics(dataset), **extras}, loss=MeanLoss(), prefix="test/")
    callbacks: list[Any] = [metrics]
    if progress:
        callbacks.append(ProgressBarCallback(desc="eval", leave=False))
    context = Context(model=model, loss_fn=task.loss_fn(train=False), device=device)
    step = task.eval_step(amp=amp, channels_last=channels_last)
    state = Engine(step, context, callbacks).loop(data, max_epochs=1)
    hidden = tuple(f"test/{name}" for name in extras)
    scalars = {
        key: float(value) for key, value in state.metrics.items() if not key.startswith(hidden)
    }
    results = {name: metrics.results[name] for name in extras}
    return EvalReport(metrics=scalars, body=task.report(scalars, extras, dataset), results=results)


def publish_report(
    report: EvalReport, model: nn.Module, split: Split, task: TaskNode, dataset: DatasetNode,
    folder: Path, prefix: str = "",
) -> None:
    """Write the task's pictures of ``report`` into ``folder`` and list them in the report."""
    scaling = task.scaling(dataset)
    report.artifacts.update(task.artifacts(report, model, split, scaling, folder, prefix))
