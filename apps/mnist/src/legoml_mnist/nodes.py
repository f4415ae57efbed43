"""The MNIST experiment as one serializable node tree.

Config nodes for the pieces the libraries leave to the app (dataset, loader with its
augmentation, metrics) and the two experiment nodes whose ``build()`` gives an object with
``.train()`` / ``.eval()``. Every node is registered with legoml-nn, so a config file can
only name these and the library's own node types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Literal

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

if TYPE_CHECKING:
    from legoml_mnist.evaluator import ImageClassificationEvaluator
    from legoml_mnist.trainer import ImageClassificationTrainer

__all__ = [
    "AugmentNode",
    "CollatorNode",
    "DatasetNode",
    "EvaluatorForImageClassificationNode",
    "LoaderNode",
    "MetricsNode",
    "TrainerForImageClassificationNode",
]

Positive = Annotated[int, Check(ge=1)]
NonNegative = Annotated[int, Check(ge=0)]
Device = Literal["auto", "cpu", "cuda", "mps"]
Precision = Literal["auto", "bf16", "fp16", "fp32"]


@dataclass(frozen=True)
class DatasetNode(Node, tag="legoml_mnist.Dataset"):
    """Which IDX dataset to use, where it lives, and how much of it (``limit_*``: first N)."""

    name: Literal["mnist", "fashion-mnist"] = "mnist"
    root: str | None = None
    limit_train: Positive | None = None
    limit_test: Positive | None = None


@dataclass(frozen=True)
class AugmentNode(Node, tag="legoml_mnist.Augment"):
    """Batched random affine augmentation of training images (off when all are zero)."""

    max_shift: NonNegative = 0
    degrees: Annotated[float, Check(ge=0.0, le=180.0)] = 0.0
    scale: Annotated[float, Check(ge=0.0, lt=1.0)] = 0.0

    def enabled(self) -> bool:
        return self.max_shift > 0 or self.degrees > 0 or self.scale > 0


@dataclass(frozen=True)
class CollatorNode(Node, tag="legoml_mnist.Collator"):
    """How a batch of uint8 images becomes the model's input: ``(x / 255 - mean) / std``."""

    mean: Annotated[float, Check(ge=0.0, le=1.0)] = 0.1307
    std: Annotated[float, Check(gt=0.0)] = 0.3081


@dataclass(frozen=True)
class LoaderNode(Node, tag="legoml_mnist.Loader"):
    """In-memory batch loader settings (training batches and evaluation batches)."""

    batch_size: Positive = 128
    eval_batch_size: Positive = 10000
    shuffle: bool = True
    drop_last: bool = True
    augment: AugmentNode = field(default_factory=AugmentNode)
    collator: CollatorNode = field(default_factory=CollatorNode)


@dataclass(frozen=True)
class MetricsNode(Node, tag="legoml_mnist.Metrics"):
    """Metrics tracked during training (accuracy, optionally macro F1) and evaluation."""

    num_classes: Annotated[int, Check(ge=2)] = 10
    top_k: tuple[Positive, ...] = ()
    f1: bool = False


@dataclass(frozen=True)
class TrainerForImageClassificationNode(Node, tag="legoml_mnist.TrainerForImageClassification"):
    """A whole image-classification training run: model, optimizer, data, loop, tracking.

    ``epochs`` may be fractional: the one-cycle schedule spans exactly
    ``round(epochs * batches_per_epoch)`` steps and training stops there.

    >>> node = TrainerForImageClassificationNode().fork(epochs=1, **{"optimizer.lr": 0.002})
    >>> node.optimizer.lr
    0.002
    """

    model: ModuleNode = field(
        default_factory=lambda: TinyCNNNode(
            channels=(16, 32, 64), batch_norm=True, stem_stride=2, pool_first=True, hidden=(128,)
        )
    )
    optimizer: OptimizerNode = field(
        default_factory=lambda: AdamWNode(lr=6e-3, weight_decay=5e-4, fused=True)
    )
    scheduler: SchedulerNode | None = field(
        default_factory=lambda: OneCycleNode(
            pct_start=0.25, div_factor=25.0, final_div_factor=1e4, cycle_momentum=False
        )
    )
    dataset: DatasetNode = field(default_factory=DatasetNode)
    loader: LoaderNode = field(default_factory=LoaderNode)
    metrics: MetricsNode = field(default_factory=MetricsNode)
    epochs: Annotated[float, Check(gt=0.0, le=1000.0)] = 0.8
    seed: int = 0
    device: Device = "auto"
    precision: Precision = "auto"
    channels_last: bool = True
    label_smoothing: Annotated[float, Check(ge=0.0, lt=1.0)] = 0.1
    clip_grad_norm: Annotated[float, Check(gt=0.0)] | None = None
    threads: Positive | None = None
    deterministic: bool = False
    checkpoint_every_steps: Positive | None = None
    checkpoint_every_epochs: NonNegative = 1
    keep_last: Positive = 2
    runs_root: str = "runs"
    run_name: str = "mnist"
    progress: bool = True
    log_every_steps: Positive = 50

    def validate(self) -> None:
        if self.scheduler is not None and not isinstance(self.scheduler, SchedulerNode):
            raise ConfigError("expected a scheduler node", "scheduler")

    def build(self) -> ImageClassificationTrainer:
        from legoml_mnist.trainer import ImageClassificationTrainer

        return ImageClassificationTrainer(self)


@dataclass(frozen=True)
class EvaluatorForImageClassificationNode(
    Node, tag="legoml_mnist.EvaluatorForImageClassification"
):
    """Evaluation of a checkpoint on the test split: accuracy, loss, per-class report.

    ``checkpoint`` is a file or a run directory; ``None`` means the latest checkpoint of
    the newest run under ``runs_root``. The model comes from the config saved with it.
    """

    checkpoint: str | None = None
    runs_root: str = "runs"
    dataset: DatasetNode = field(default_factory=DatasetNode)
    loader: LoaderNode = field(default_factory=LoaderNode)
    metrics: MetricsNode = field(default_factory=MetricsNode)
    device: Device = "auto"
    precision: Precision = "auto"
    channels_last: bool = True
    threads: Positive | None = None
    progress: bool = False

    def build(self) -> ImageClassificationEvaluator:
        from legoml_mnist.evaluator import ImageClassificationEvaluator

        return ImageClassificationEvaluator(self)
