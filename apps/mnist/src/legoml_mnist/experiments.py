"""Ready-made experiments: the default TinyCNN recipe, trained and tested."""

from __future__ import annotations

from pathlib import Path

from legoml_mnist.evaluator import EvalReport, EvaluatorForImageClassificationNode
from legoml_mnist.trainer import TrainerForImageClassificationNode, TrainResult

__all__ = ["test_tiny_cnn_baseline", "train_tiny_cnn_baseline"]


def train_tiny_cnn_baseline(**changes: object) -> TrainResult:
    """Train the default recipe (``changes`` fork the config, e.g. ``epochs=1``)."""
    node = TrainerForImageClassificationNode()
    return (node.fork(**changes) if changes else node).build().train()


def test_tiny_cnn_baseline(path: str | Path | None = None, runs_root: str = "runs") -> EvalReport:
    """Evaluate ``path`` (checkpoint or run directory), else the latest checkpoint."""
    node = EvaluatorForImageClassificationNode(
        checkpoint=None if path is None else str(path), runs_root=runs_root
    )
    return node.build().eval()


test_tiny_cnn_baseline.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
