"""``TaskNode``: what an experiment learns — its loss, steps, metrics and report.

The trainer and the evaluator only call these methods, so a new task (segmentation,
contrastive learning...) is one node, with no change to the loop or the run directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from torch import nn

from legoml.core.engine import StepFn
from legoml.core.steps import AmpSetting
from legoml.metrics import Metric
from legoml.nn import ConfigError, ModuleNode, Node
from legoml_mnist.metric_nodes import MetricNode

if TYPE_CHECKING:
    from legoml.data import Split
    from legoml_mnist.datasets import DatasetNode
    from legoml_mnist.loaders import Scaling

__all__ = ["EvalReport", "TaskNode"]


@dataclass
class EvalReport:
    """What an evaluation found; ``metrics`` are named ``test/<name>``, ``results`` holds
    the non-scalar results (confusion matrix, per-class report) by metric name."""

    metrics: dict[str, float]
    body: str
    results: dict[str, Any] = field(default_factory=dict)
    checkpoint: Path | None = None
    run_dir: Path | None = None
    artifacts: dict[str, Path] = field(default_factory=dict)

    @property
    def confusion(self) -> Any:
        """The confusion matrix, for classification reports."""
        return self.results.get("confusion")

    def text(self) -> str:
        """The report as printed by ``legoml-mnist eval``."""
        return self.body


@dataclass(frozen=True)
class TaskNode(Node, register=False):
    """Base of the task nodes; a field typed ``TaskNode`` accepts any of them.

    ``extra_metrics`` adds metric nodes to the task's own ones (reported in training and
    evaluation under their ``name``)."""

    extra_metrics: tuple[MetricNode, ...] = ()

    #: The metric names (without ``test/``) copied to ``meta.json``'s final metrics.
    final_metrics: ClassVar[tuple[str, ...]] = ("loss",)

    def validate(self) -> None:
        names = [metric.name for metric in self.extra_metrics]
        taken = {*self._own_metric_names(), "loss"}
        for name in names:
            if name in taken or names.count(name) > 1:
                raise ConfigError(
                    f"metric {name!r} is already tracked by the task or listed twice; "
                    "remove the duplicate", "extra_metrics"
                )

    def _own_metric_names(self) -> tuple[str, ...]:
        """The names ``metrics()`` reports before the extras."""
        return ()

    def with_extra_metrics(self, own: dict[str, Metric], dataset: DatasetNode) -> dict[str, Metric]:
        """``own`` plus the built ``extra_metrics``, for the tasks' ``metrics()``."""
        classes = len(dataset.classes) or None
        return {**own, **{node.name: node.build(classes) for node in self.extra_metrics}}

    def scaling(self, dataset: DatasetNode) -> Scaling:
        """The input scaling the task wants when the collator leaves it open."""
        raise NotImplementedError

    def check_model(self, model: ModuleNode, dataset: DatasetNode) -> None:
        """Refuse, in one line, a model whose shape cannot fit the task and dataset."""

    def loss_fn(self, train: bool) -> nn.Module:
        """The training loss (``train``) or the evaluation loss."""
        raise NotImplementedError

    def train_step(
        self, *, amp: AmpSetting, clip_grad_norm: float | None, channels_last: bool
    ) -> StepFn:
        raise NotImplementedError

    def eval_step(self, *, amp: AmpSetting, channels_last: bool) -> StepFn:
        raise NotImplementedError

    def metrics(self, dataset: DatasetNode) -> dict[str, Metric]:
        """Scalar metrics, tracked in training (``train/``) and evaluation (``test/``)."""
        raise NotImplementedError

    def report_metrics(self, dataset: DatasetNode) -> dict[str, Metric]:
        """Evaluation-only metrics whose results are not scalars (kept in ``results``)."""
        return {}

    def report(
        self, metrics: Mapping[str, float], evaluated: Mapping[str, Metric], dataset: DatasetNode
    ) -> str:
        """The text of the evaluation report (``evaluated``: the report metrics, computed)."""
        return "  ".join(f"{name} {value:.4f}" for name, value in metrics.items())

    def artifacts(
        self,
        report: EvalReport,
        model: nn.Module,
        split: Split,
        scaling: Scaling,
        folder: Path,
        prefix: str = "",
    ) -> dict[str, Path]:
        """Write the report's pictures into ``folder``; returns them by name."""
        return {}
