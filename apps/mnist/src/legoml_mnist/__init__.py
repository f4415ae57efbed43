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
from legoml_mnist.loaders import AugmentNode, CollatorNode, LoaderNode
from legoml_mnist.recipes import recipe
from legoml_mnist.tasks import EvalReport, ImageClassificationNode, ReconstructionNode, TaskNode
from legoml_mnist.trainer import (
    Trainer,
    TrainerForImageClassificationNode,
    TrainerNode,
    TrainResult,
)

__all__ = [
    "AppError",
    "AugmentNode",
    "CollatorNode",
    "DatasetNode",
    "EvalReport",
    "Evaluator",
    "EvaluatorForImageClassificationNode",
    "EvaluatorNode",
    "FashionMNISTNode",
    "ImageClassificationNode",
    "LoaderNode",
    "MNISTNode",
    "ReconstructionNode",
    "TaskNode",
    "TrainResult",
    "Trainer",
    "TrainerForImageClassificationNode",
    "TrainerNode",
    "evaluate_split",
    "recipe",
]
