"""Metric nodes and the seed's node names in the app: configs name extra metrics, the tasks
report them, duplicates are refused, and DataLoaderNode is the loader node."""

from __future__ import annotations

import json

import pytest
import torch

from legoml.metrics import F1Score, MultiClassAccuracy
from legoml.nn import ConfigError, Node, apply_overrides
from legoml_mnist import (
    AccuracyNode,
    DataLoaderNode,
    F1ScoreNode,
    ImageClassificationNode,
    LoaderNode,
    MeanAbsoluteErrorNode,
    MeanSquaredErrorNode,
    MetricNode,
    MNISTNode,
    ReconstructionNode,
    TrainerNode,
)


def test_extra_metrics_are_built_and_named_beside_the_task_ones() -> None:
    task = ImageClassificationNode(extra_metrics=(AccuracyNode(top_k=3), F1ScoreNode("weighted")))
    metrics = task.metrics(MNISTNode())
    assert list(metrics) == ["accuracy", "top3_accuracy", "f1_weighted"]
    assert isinstance(metrics["top3_accuracy"], MultiClassAccuracy)
    f1 = metrics["f1_weighted"]
    assert isinstance(f1, F1Score)
    scores = torch.eye(10)[torch.tensor([0, 1, 2, 2])]
    f1.update(scores, torch.tensor([0, 1, 2, 3]))
    assert f1.compute() == pytest.approx((1 + 1 + 2 / 3 + 0) / 4)  # per-class F1 by support


def test_reconstruction_takes_extra_metrics_too() -> None:
    task = ReconstructionNode(extra_metrics=(AccuracyNode(),))
    assert list(task.metrics(MNISTNode())) == ["mse", "mae", "accuracy"]


@pytest.mark.parametrize(
    ("task", "extra"),
    [
        (ImageClassificationNode(), AccuracyNode()),
        (ImageClassificationNode(top_k=(5,)), AccuracyNode(top_k=5)),
        (ImageClassificationNode(f1=True), F1ScoreNode()),
        (ReconstructionNode(), MeanSquaredErrorNode()),
        (ReconstructionNode(), MeanAbsoluteErrorNode()),
    ],
)
def test_a_metric_the_task_already_tracks_is_refused(task: Node, extra: MetricNode) -> None:
    with pytest.raises(ConfigError, match="extra_metrics.*already tracked"):
        task.fork(extra_metrics=(extra,))


def test_the_same_extra_metric_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="listed twice"):
        ImageClassificationNode(extra_metrics=(F1ScoreNode(), F1ScoreNode()))


def test_metric_nodes_round_trip_and_are_set_from_the_command_line() -> None:
    node = apply_overrides(
        TrainerNode(),
        ['task.extra_metrics=[{"type": "legoml_mnist.F1Score", "average": "micro"}]'],
    )
    assert node.task.extra_metrics == (F1ScoreNode(average="micro"),)
    assert Node.from_dict(json.loads(json.dumps(node.to_dict()))) == node
    with pytest.raises(ConfigError, match="average"):
        apply_overrides(TrainerNode(), ['task.extra_metrics=[{"type": "legoml_mnist.F1Score", "average": "mean"}]'])
    with pytest.raises(ConfigError, match="top_k"):
        AccuracyNode(top_k=0)


def test_the_base_metric_node_cannot_be_named_in_a_config() -> None:
    with pytest.raises(ConfigError):
        Node.from_dict({"type": "MetricNode"})


def test_data_loader_node_is_the_loader_node_and_configs_are_unchanged() -> None:
    assert LoaderNode is DataLoaderNode
    assert DataLoaderNode(batch_size=64).to_dict()["type"] == "legoml_mnist.Loader"
    assert isinstance(TrainerNode().loader, DataLoaderNode)
