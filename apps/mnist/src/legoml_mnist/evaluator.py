"""Evaluation of an image classifier: overall accuracy and loss, per-class report, confusion."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import torch
from torch import nn

from legoml.core import (
    Context,
    Engine,
    MetricsCallback,
    ProgressBarCallback,
    make_supervised_eval_step,
)
from legoml.data import Split
from legoml.metrics import ClassificationReport, ConfusionMatrix, MeanLoss, Metric
from legoml.nn import Node
from legoml.track import checkpoint_info, find_latest_checkpoint, list_runs, load_checkpoint
from legoml_mnist.builders import (
    build_dataloader,
    build_metrics,
    build_model,
    load_splits,
    resolve_device,
    resolve_precision,
)
from legoml_mnist.errors import AppError
from legoml_mnist.nodes import (
    EvaluatorForImageClassificationNode,
    LoaderNode,
    MetricsNode,
    TrainerForImageClassificationNode,
)
from legoml_mnist.report import save_confusion_png

__all__ = [
    "EvalReport",
    "ImageClassificationEvaluator",
    "evaluate_model",
    "evaluate_split",
    "resolve_checkpoint",
]

log = structlog.get_logger(__name__)


@dataclass
class EvalReport:
    """What an evaluation found; ``metrics`` are named ``test/<name>``."""

    metrics: dict[str, float]
    table: str
    confusion: torch.Tensor
    checkpoint: Path | None = None
    run_dir: Path | None = None
    artifacts: dict[str, Path] = field(default_factory=dict)

    def text(self) -> str:
        """The report as printed by ``legoml-mnist eval``."""
        lines = [
            f"test accuracy {self.metrics['test/accuracy']:.4f}  "
            f"test loss {self.metrics['test/loss']:.4f}",
            "",
            self.table.rstrip(),
            "",
            "confusion matrix (rows: true digit, columns: predicted digit)",
            _format_confusion(self.confusion),
        ]
        return "\n".join(lines)


def _format_confusion(matrix: torch.Tensor) -> str:
    n = matrix.shape[0]
    width = max(5, len(str(int(matrix.max().item()))) + 1)
    header = "     " + "".join(f"{c:>{width}}" for c in range(n))
    rows = [f"{r:>4} " + "".join(f"{int(v):>{width}}" for v in matrix[r].tolist()) for r in range(n)]
    return "\n".join([header, *rows])


def evaluate_model(
    model: nn.Module,
    data: Iterable[Any],
    *,
    device: torch.device,
    metrics: dict[str, Metric],
    num_classes: int,
    amp: torch.dtype | None = None,
    channels_last: bool = False,
    progress: bool = False,
) -> EvalReport:
    """Run ``model`` over ``data`` once and gather every test metric and the report.

    Under torch.distributed every count is summed across ranks: give each rank its own
    shard of the data (as :func:`evaluate_split` does), not the whole of it."""
    report = ClassificationReport(num_classes=num_classes)
    confusion = ConfusionMatrix(num_classes=num_classes)
    callbacks: list[Any] = [MetricsCallback(metrics=metrics, loss=MeanLoss(), prefix="test/")]
    callbacks.append(_Update([report, confusion]))
    if progress:
        callbacks.append(ProgressBarCallback(desc="eval", leave=False))
    context = Context(model=model, loss_fn=nn.CrossEntropyLoss(), device=device)
    engine = Engine(make_supervised_eval_step(amp=amp, channels_last=channels_last), context, callbacks)
    state = engine.loop(data, max_epochs=1)
    return EvalReport(
        metrics={k: float(v) for k, v in state.metrics.items()},
        table=report.table(),
        confusion=confusion.compute(),
    )


class _Update:
    """Feeds metrics whose results are not scalars (report, confusion matrix) at each step."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def on_epoch_start(self, engine: Engine, context: Context) -> None:
        for metric in self.metrics:
            metric.reset()

    def on_step_end(self, engine: Engine, context: Context) -> None:
        output = engine.state.output
        for metric in self.metrics:
            metric.update(output.predictions, output.targets)

    def on_epoch_end(self, engine: Engine, context: Context) -> None:
        for metric in self.metrics:  # a no-op outside torch.distributed
            metric.all_reduce()


def evaluate_split(
    model: nn.Module,
    split: Split,
    *,
    loader: LoaderNode,
    metrics: MetricsNode,
    device: torch.device,
    amp: torch.dtype | None,
    channels_last: bool,
    progress: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> EvalReport:
    """:func:`evaluate_model` over a whole split, in evaluation batches, with the
    experiment's metrics. Under torch.distributed each of ``world_size`` ranks evaluates its
    own shard and the counts are summed across ranks, so every rank gets the whole split's
    figures for 1/world_size of the work."""
    if len(split) < world_size:
        raise AppError(
            f"the evaluation split has {len(split)} examples, fewer than the {world_size} "
            "ranks evaluating it: evaluate more examples (raise --limit-test) or use fewer ranks"
        )
    return evaluate_model(
        model,
        build_dataloader(
            split, loader, train=False, device=device, rank=rank, world_size=world_size
        ),
        device=device,
        metrics=build_metrics(metrics),
        num_classes=metrics.num_classes,
        amp=amp,
        channels_last=channels_last,
        progress=progress,
    )


def resolve_checkpoint(checkpoint: str | None, runs_root: str) -> Path:
    """A checkpoint file from a file, a run directory, or the newest run under ``runs_root``."""
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.exists():
            raise AppError(f"checkpoint {path} does not exist: pass an existing file or run directory")
        if path.is_dir():
            folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
            latest = find_latest_checkpoint(folder)
            if latest is None:
                raise AppError(f"no checkpoint found in {folder}: train first (make train)")
            return latest
        return path
    if not Path(runs_root).is_dir():
        raise AppError(f"no checkpoint found: {runs_root}/ does not exist; train first (make train) or pass --checkpoint")
    runs = [r for r in list_runs(runs_root) if (r.dir / "checkpoints").is_dir()]
    for info in sorted(runs, key=lambda r: r.dir.name, reverse=True):
        latest = find_latest_checkpoint(info.dir / "checkpoints")
        if latest is not None:
            return latest
    raise AppError(f"no checkpoint found under {runs_root}/: train first (make train) or pass --checkpoint")


class ImageClassificationEvaluator:
    """Built by ``EvaluatorForImageClassificationNode``: evaluates a saved checkpoint."""

    def __init__(self, node: EvaluatorForImageClassificationNode) -> None:
        self.node = node

    def eval(self) -> EvalReport:
        node = self.node
        if node.threads is not None:
            torch.set_num_threads(node.threads)
        path = resolve_checkpoint(node.checkpoint, node.runs_root)
        state = load_checkpoint(path)
        trainer_node = _trainer_config(state, path)
        device = resolve_device(node.device)
        model = build_model(
            trainer_node.model, path, device=device, channels_last=node.channels_last
        )
        _, test = load_splits(node.dataset)
        report = evaluate_split(
            model,
            test,
            loader=node.loader,
            metrics=node.metrics,
            device=device,
            amp=resolve_precision(node.precision, device),
            channels_last=node.channels_last,
            progress=node.progress,
        )
        report.checkpoint = path
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else None
        if run_dir is not None and (run_dir / "meta.json").is_file():
            report.run_dir = run_dir
            report.artifacts["confusion_matrix"] = save_confusion_png(
                report.confusion, run_dir / "artifacts" / "eval_confusion_matrix.png"
            )
        info = checkpoint_info(path)
        log.info("evaluated", checkpoint=str(path), step=info.global_step, **report.metrics)
        return report


def _trainer_config(state: dict[str, Any], path: Path) -> TrainerForImageClassificationNode:
    config = state.get("config")
    if not isinstance(config, dict):
        raise AppError(f"{path} holds no experiment config: it was not written by legoml-mnist train")
    node = Node.from_dict(config)
    if not isinstance(node, TrainerForImageClassificationNode):
        raise AppError(f"{path} holds a {type(node).__name__} config, not a training config")
    return node
