"""Image classification: cross-entropy, accuracy (top-k, F1), per-class report, confusion."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ClassVar

import torch
from torch import nn

from legoml.core import make_supervised_eval_step, make_supervised_train_step
from legoml.core.engine import StepFn
from legoml.core.steps import AmpSetting
from legoml.metrics import (
    ClassificationReport,
    ConfusionMatrix,
    F1Score,
    Metric,
    MultiClassAccuracy,
)
from legoml.nn import Check, ModuleNode
from legoml.nn.types import Positive
from legoml_mnist.errors import AppError
from legoml_mnist.tasks.base import EvalReport, TaskNode

if TYPE_CHECKING:
    from legoml.data import Split
    from legoml_mnist.datasets import DatasetNode
    from legoml_mnist.loaders import Scaling

__all__ = ["ImageClassificationNode"]


@dataclass(frozen=True)
class ImageClassificationNode(TaskNode, tag="legoml_mnist.ImageClassification"):
    """Classify images into the dataset's classes; evaluation adds the per-class report and
    the confusion matrix (text, and a PNG in the run directory)."""

    label_smoothing: Annotated[float, Check(ge=0.0, lt=1.0)] = 0.1
    top_k: tuple[Positive, ...] = ()
    f1: bool = False

    final_metrics: ClassVar[tuple[str, ...]] = ("accuracy", "loss")

    def scaling(self, dataset: DatasetNode) -> Scaling:
        return dataset.source.mean, dataset.source.std

    def check_model(self, model: ModuleNode, dataset: DatasetNode) -> None:
        classes = getattr(model, "num_classes", None)
        if classes is not None and classes != len(dataset.classes):
            raise AppError(
                f"model.num_classes={classes} but the dataset has {len(dataset.classes)} "
                f"classes: --set model.num_classes={len(dataset.classes)}"
            )

    def loss_fn(self, train: bool) -> nn.Module:
        return nn.CrossEntropyLoss(label_smoothing=self.label_smoothing if train else 0.0)

    def train_step(
        self, *, amp: AmpSetting, clip_grad_norm: float | None, channels_last: bool
    ) -> StepFn:
        return make_supervised_train_step(
            amp=amp, clip_grad_norm=clip_grad_norm, channels_last=channels_last
        )

    def eval_step(self, *, amp: AmpSetting, channels_last: bool) -> StepFn:
        return make_supervised_eval_step(amp=amp, channels_last=channels_last)

    def _own_metric_names(self) -> tuple[str, ...]:
        return ("accuracy", *(f"top{k}_accuracy" for k in self.top_k if k > 1),
                *(("f1",) if self.f1 else ()))

    def metrics(self, dataset: DatasetNode) -> dict[str, Metric]:
        metrics: dict[str, Metric] = {"accuracy": MultiClassAccuracy()}
        for k in self.top_k:
            if k > 1:
                metrics[f"top{k}_accuracy"] = MultiClassAccuracy(top_k=k)
        if self.f1:
            metrics["f1"] = F1Score(num_classes=len(dataset.classes), average="macro")
        return self.with_extra_metrics(metrics, dataset)

    def report_metrics(self, dataset: DatasetNode) -> dict[str, Metric]:
        n = len(dataset.classes)
        return {
            "report": ClassificationReport(num_classes=n, class_names=list(dataset.classes)),
            "confusion": ConfusionMatrix(num_classes=n),
        }

    def report(
        self, metrics: Mapping[str, float], evaluated: Mapping[str, Metric], dataset: DatasetNode
    ) -> str:
        report = evaluated["report"]
        assert isinstance(report, ClassificationReport)
        return "\n".join([
            f"test accuracy {metrics['test/accuracy']:.4f}  test loss {metrics['test/loss']:.4f}",
            "",
            report.table().rstrip(),
            "",
            "confusion matrix (rows: true class, columns: predicted class)",
            format_confusion(evaluated["confusion"].compute(), dataset.classes),
        ])

    def artifacts(
        self,
        report: EvalReport,
        model: nn.Module,
        split: Split,
        scaling: Scaling,
        folder: Path,
        prefix: str = "",
    ) -> dict[str, Path]:
        from legoml_mnist.report import save_confusion_png

        path = folder / f"{prefix}confusion_matrix.png"
        return {"confusion_matrix": save_confusion_png(report.results["confusion"], path)}


def format_confusion(matrix: torch.Tensor, classes: tuple[str, ...]) -> str:
    """The matrix as text; rows are labelled with class names, columns with indices."""
    n = matrix.shape[0]
    names = [classes[r] if r < len(classes) else str(r) for r in range(n)]
    label = max(4, *(len(name) for name in names))
    width = max(5, len(str(int(matrix.max().item()))) + 1)
    header = " " * (label + 1) + "".join(f"{c:>{width}}" for c in range(n))
    rows = [
        f"{names[r]:<{label}} " + "".join(f"{int(v):>{width}}" for v in matrix[r].tolist())
        for r in range(n)
    ]
    return "\n".join([header, *rows])
