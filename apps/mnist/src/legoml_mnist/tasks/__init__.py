"""Task nodes: what an experiment learns (loss, steps, metrics, report)."""

from legoml_mnist.tasks.base import EvalReport, TaskNode
from legoml_mnist.tasks.classification import ImageClassificationNode
from legoml_mnist.tasks.reconstruction import ReconstructionNode

__all__ = ["EvalReport", "ImageClassificationNode", "ReconstructionNode", "TaskNode"]

TASKS: dict[str, type[TaskNode]] = {
    "classification": ImageClassificationNode,
    "reconstruction": ReconstructionNode,
}
"""The ``--task`` names of the CLI."""
