"""legoml-mnist: MNIST-family experiments wiring every LegoML package into train/eval.

A ``TrainerNode`` names a dataset node (``MNISTNode``, ``FashionMNISTNode``) and a task node
(``ImageClassificationNode``, ``ReconstructionNode``); ``node.build().train()`` runs it.
"""

from legoml_mnist.datasets import DatasetNode, FashionMNISTNode, MNISTNode
from legoml_mnist.errors import AppError
from legoml_mnist.evaluation import evaluate_split
from legoml_mnist.evaluator import (
    Evaluator,
    EvaluatorForImageClassificationNode,
    EvaluatorNode,
)
from legoml_mnist.loaders import AugmentNode, CollatorNode, DataLoaderNode, LoaderNode
from legoml_mnist.metric_nodes import (
    AccuracyNode,
    F1ScoreNode,
    MeanAbsoluteErrorNode,
    MeanSquaredErrorNode,
    MetricNode,
)
from legoml_mnist.recipes import recipe
from legoml_mnist.tasks import EvalReport, ImageClassificationNode, ReconstructionNode, TaskNode
from legoml_mnist.trainer import (
    Trainer,
    TrainerForImageClassificationNode,
    TrainerNode,
    TrainResult,
)

__all__ = [
    "AccuracyNode",
    "AppError",
    "AugmentNode",
    "CollatorNode",
    "DataLoaderNode",
    "DatasetNode",
    "EvalReport",
    "Evaluator",
    "EvaluatorForImageClassificationNode",
    "EvaluatorNode",
    "F1ScoreNode",
    "FashionMNISTNode",
    "ImageClassificationNode",
    "LoaderNode",
    "MNISTNode",
    "MeanAbsoluteErrorNode",
    "MeanSquaredErrorNode",
    "MetricNode",
    "ReconstructionNode",
    "TaskNode",
    "TrainResult",
    "Trainer",
    "TrainerForImageClassificationNode",
    "TrainerNode",
    "evaluate_split",
    "recipe",
]
