"""The experiment node tree: round trip, overrides, validation and the builders (synthetic data)."""

from __future__ import annotations

import json

import pytest
import torch

from legoml.data import Split
from legoml.nn import ConfigError, Node, apply_overrides
from legoml_mnist import (
    EvaluatorForImageClassificationNode,
    LoaderNode,
    MetricsNode,
    TrainerForImageClassificationNode,
    build_dataloader,
    build_metrics,
    build_model,
    build_optimizer_and_scheduler,
)
from legoml_mnist.builders import build_augmentation, resolve_precision
from legoml_mnist.nodes import AugmentNode


@pytest.mark.parametrize("node", [TrainerForImageClassificationNode(), EvaluatorForImageClassificationNode()])
def test_experiment_nodes_round_trip_through_json(node: Node) -> None:
    text = json.dumps(node.to_dict())
    assert Node.from_dict(json.loads(text)) == node


def test_overrides_reach_nested_fields_and_leave_the_original() -> None:
    node = TrainerForImageClassificationNode()
    changed = apply_overrides(node, ["optimizer.lr=0.01", "loader.batch_size=64", "epochs=2"])
    assert (changed.optimizer.lr, changed.loader.batch_size, changed.epochs) == (0.01, 64, 2.0)
    assert node.loader.batch_size == 128


@pytest.mark.parametrize(
    ("override", "path"),
    [
        ("loader.batch_size=0", "loader.batch_size"),
        ("epochs=-1", "epochs"),
        ("device=tpu", "device"),
        ("dataset.limit_train=abc", "dataset.limit_train"),
        ("loader.collator.std=0", "loader.collator.std"),
    ],
)
def test_bad_values_name_their_path(override: str, path: str) -> None:
    with pytest.raises(ConfigError, match=path.replace(".", r"\.")):
        apply_overrides(TrainerForImageClassificationNode(), [override])


def test_unknown_type_in_a_config_is_refused() -> None:
    data = TrainerForImageClassificationNode().to_dict()
    data["model"] = {"type": "os.system", "command": "echo hi"}
    with pytest.raises(ConfigError, match="os.system"):
        Node.from_dict(data)


def _synthetic(n: int = 70) -> Split:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=generator)
    return Split(images=images, labels=torch.arange(n) % 10)


def test_train_loader_is_shuffled_and_eval_loader_is_not() -> None:
    split = _synthetic()
    node = LoaderNode(batch_size=32, eval_batch_size=50, drop_last=False)
    train = build_dataloader(split, node, train=True, seed=1)
    evaluation = build_dataloader(split, node, train=False)
    assert len(train) == 3 and len(evaluation) == 2
    labels = torch.cat([y for _, y in evaluation])
    assert torch.equal(labels, split.labels)
    shuffled = torch.cat([y for _, y in train])
    assert sorted(shuffled.tolist()) == sorted(split.labels.tolist())
    assert not torch.equal(shuffled, split.labels)
    x, _ = next(iter(evaluation))
    expected = (split.images[:1].float() / 255 - 0.1307) / 0.3081
    assert torch.allclose(x[:1, 0], expected, atol=1e-5)


def test_augmentation_is_off_by_default_and_batched_when_on() -> None:
    assert build_augmentation(AugmentNode()) is None
    shift = build_augmentation(AugmentNode(max_shift=2))
    assert shift is not None
    images = torch.rand(4, 1, 28, 28)
    assert shift(images, torch.Generator().manual_seed(0)).shape == images.shape


def test_model_optimizer_schedule_and_metrics_build() -> None:
    node = TrainerForImageClassificationNode()
    model = build_model(node.model, channels_last=True)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    optimizer, scheduler = build_optimizer_and_scheduler(model, node.optimizer, node.scheduler, 100)
    assert scheduler is not None
    assert {g["weight_decay"] for g in optimizer.param_groups} == {0.0, node.optimizer.weight_decay}
    metrics = build_metrics(MetricsNode(top_k=(3,), f1=True))
    assert sorted(metrics) == ["accuracy", "f1", "top3_accuracy"]


def test_precision_resolution() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is None
    assert resolve_precision("bf16", cpu) is torch.bfloat16
    assert resolve_precision("auto", torch.device("mps")) is None
