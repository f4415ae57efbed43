"""legoml-mnist: the MNIST app wiring every LegoML package into train/eval entry points."""

from legoml_mnist.builders import (
    build_dataloader,
    build_metrics,
    build_model,
    build_optimizer_and_scheduler,
)
from legoml_mnist.errors import AppError
from legoml_mnist.evaluator import EvalReport, ImageClassificationEvaluator
from legoml_mnist.nodes import (
    AugmentNode,
    CollatorNode,
    DatasetNode,
    EvaluatorForImageClassificationNode,
    LoaderNode,
    MetricsNode,
    TrainerForImageClassificationNode,
)
from legoml_mnist.trainer import ImageClassificationTrainer, TrainResult

__all__ = [
    "AppError",
    "AugmentNode",
    "CollatorNode",
    "DatasetNode",
    "EvalReport",
    "EvaluatorForImageClassificationNode",
    "ImageClassificationEvaluator",
    "ImageClassificationTrainer",
    "LoaderNode",
    "MetricsNode",
    "TrainResult",
    "TrainerForImageClassificationNode",
    "build_dataloader",
    "build_metrics",
    "build_model",
    "build_optimizer_and_scheduler",
]
