"""The experiment node tree: round trip, overrides, validation, the dataset and task seams,
old configs, and the builders (synthetic data)."""

from __future__ import annotations

import json

import pytest
import torch

from legoml.data import Split
from legoml.nn import ConfigError, ConvAutoencoderNode, Node, TinyCNNNode, apply_overrides
from legoml_mnist import (
    AppError,
    EvaluatorForImageClassificationNode,
    FashionMNISTNode,
    ImageClassificationNode,
    LoaderNode,
    MNISTNode,
    ReconstructionNode,
    TrainerForImageClassificationNode,
    TrainerNode,
    recipe,
)
from legoml_mnist.builders import build_context, build_model, loop_limits
from legoml_mnist.datasets import NamedDatasetNode
from legoml_mnist.loaders import AugmentNode, CollatorNode
from legoml_mnist.upgrade import trainer_from_config, upgrade_config


@pytest.mark.parametrize(
    "node",
    [
        TrainerForImageClassificationNode(),
        EvaluatorForImageClassificationNode(),
        recipe("fashion-mnist"),
        recipe("mnist", "reconstruction"),
        recipe("fashion-mnist", "reconstruction"),
    ],
)
def test_experiment_nodes_round_trip_through_json(node: Node) -> None:
    text = json.dumps(node.to_dict())
    assert Node.from_dict(json.loads(text)) == node


def test_overrides_reach_nested_fields_and_leave_the_original() -> None:
    node = TrainerForImageClassificationNode()
    changed = apply_overrides(node, ["optimizer.lr=0.01", "loader.batch_size=64", "epochs=2"])
    assert (changed.optimizer.lr, changed.loader.batch_size, changed.epochs) == (0.01, 64, 2.0)
    assert node.loader.batch_size == 128


def test_dataset_and_task_are_nodes_chosen_by_type() -> None:
    node = apply_overrides(TrainerNode(), ['dataset={"type": "legoml_mnist.FashionMNIST"}'])
    assert isinstance(node.dataset, FashionMNISTNode)
    assert node.dataset.classes[0] == "T-shirt/top" and node.dataset.image_shape == (1, 28, 28)
    node = apply_overrides(node, ['task={"type": "legoml_mnist.Reconstruction", "loss": "bce"}'])
    assert isinstance(node.task, ReconstructionNode) and node.task.loss == "bce"


def test_the_classification_trainer_refuses_another_task() -> None:
    with pytest.raises(ConfigError, match="task"):
        TrainerForImageClassificationNode(task=ReconstructionNode())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("override", "path"),
    [
        ("loader.batch_size=0", "loader.batch_size"),
        ("epochs=-1", "epochs"),
        ("device=tpu", "device"),
        ("dataset.limit_train=abc", "dataset.limit_train"),
        ("loader.collator.std=[0]", "loader.collator.std"),
        ("task.label_smoothing=1.5", "task.label_smoothing"),
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


def _old_config() -> dict[str, object]:
    """A config as legoml-mnist 0.1 wrote it (loss and metrics settings at the top)."""
    data = TrainerForImageClassificationNode().to_dict()
    del data["task"]
    data["dataset"] = {"type": "legoml_mnist.Dataset", "name": "fashion-mnist", "limit_train": 100}
    data["loader"]["collator"] = {"type": "legoml_mnist.Collator", "mean": 0.2, "std": 0.3}
    data["label_smoothing"] = 0.05
    data["metrics"] = {"type": "legoml_mnist.Metrics", "num_classes": 10, "top_k": [3], "f1": True}
    return data


def test_configs_of_the_previous_layout_still_load() -> None:
    node = trainer_from_config(_old_config(), "old.json")
    assert isinstance(node.dataset, NamedDatasetNode) and node.dataset.limit_train == 100
    assert node.dataset.classes[1] == "Trouser"
    assert node.task == ImageClassificationNode(label_smoothing=0.05, top_k=(3,), f1=True)
    assert (node.loader.collator.mean, node.loader.collator.std) == ((0.2,), (0.3,))
    current = TrainerForImageClassificationNode().to_dict()
    assert upgrade_config(current) == current


def test_a_config_that_is_not_a_training_config_is_one_clear_error() -> None:
    with pytest.raises(AppError, match="x.json holds a EvaluatorNode config"):
        trainer_from_config({"type": "legoml_mnist.Evaluator"}, "x.json")


def _synthetic(n: int = 70, shape: tuple[int, ...] = (28, 28)) -> Split:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=generator)
    return Split(images=images, labels=torch.arange(n) % 10)


def test_train_loader_is_shuffled_and_eval_loader_is_not() -> None:
    split = _synthetic()
    node = LoaderNode(batch_size=32, eval_batch_size=50, drop_last=False)
    scaling = MNISTNode().source.mean, MNISTNode().source.std
    train = node.build(split, scaling, train=True, seed=1)
    evaluation = node.build(split, scaling, train=False)
    assert len(train) == 3 and len(evaluation) == 2
    labels = torch.cat([y for _, y in evaluation])
    assert torch.equal(labels, split.labels)
    shuffled = torch.cat([y for _, y in train])
    assert sorted(shuffled.tolist()) == sorted(split.labels.tolist())
    assert not torch.equal(shuffled, split.labels)
    x, _ = next(iter(evaluation))
    expected = (split.images[:1].float() / 255 - 0.1307) / 0.3081
    assert torch.allclose(x[:1, 0], expected, atol=1e-5)


def test_the_collator_overrides_the_task_scaling_per_channel() -> None:
    split = _synthetic(8, (3, 32, 32))
    node = LoaderNode(eval_batch_size=8, collator=CollatorNode(mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0)))
    x, _ = next(iter(node.build(split, ((0.0,), (1.0,)), train=False)))
    assert x.shape == (8, 3, 32, 32)
    for channel, std in enumerate((0.25, 0.5, 1.0)):
        expected = (split.images[:, channel].float() / 255 - 0.5) / std
        assert torch.allclose(x[:, channel], expected, atol=1e-5)
    assert ReconstructionNode().scaling(MNISTNode()) == ((0.0,), (1.0,))
    assert ImageClassificationNode().scaling(FashionMNISTNode()) == (
        FashionMNISTNode().source.mean, FashionMNISTNode().source.std)


def test_augmentation_is_off_by_default_and_batched_when_on() -> None:
    assert AugmentNode().build() is None
    shift = AugmentNode(max_shift=2).build()
    assert shift is not None
    images = torch.rand(4, 1, 28, 28)
    assert shift(images, torch.Generator().manual_seed(0)).shape == images.shape
    affine = AugmentNode(max_shift=4, degrees=10).build((32, 64))
    assert affine is not None and affine.translate == pytest.approx((4 / 64, 4 / 32))  # type: ignore[attr-defined]


def test_context_builds_model_optimizer_schedule_and_task_loss() -> None:
    node = TrainerForImageClassificationNode(task=ImageClassificationNode(label_smoothing=0.2))
    context = build_context(node, torch.device("cpu"), None, total_steps=100)
    assert context.model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert context.scheduler is not None
    assert {g["weight_decay"] for g in context.optimizer.param_groups} == {0.0, node.optimizer.weight_decay}
    assert context.loss_fn.label_smoothing == 0.2  # type: ignore[union-attr]
    assert sorted(ImageClassificationNode(top_k=(3,), f1=True).metrics(MNISTNode())) == [
        "accuracy", "f1", "top3_accuracy"]


def test_a_model_that_cannot_fit_the_task_is_refused_in_one_line() -> None:
    wrong_classes = TrainerNode(model=TinyCNNNode(num_classes=5))
    with pytest.raises(AppError, match="model.num_classes=5 but the dataset has 10 classes"):
        build_context(wrong_classes, torch.device("cpu"), None, 10)
    classifier_as_autoencoder = TrainerNode(task=ReconstructionNode())
    with pytest.raises(AppError, match="task reconstruction needs an auto-encoder model"):
        build_context(classifier_as_autoencoder, torch.device("cpu"), None, 10)
    build_context(TrainerNode(task=ReconstructionNode(), model=ConvAutoencoderNode()), torch.device("cpu"), None, 10)


def test_fractional_epochs_become_a_step_limit() -> None:
    assert loop_limits(0.8, 468) == {"max_epochs": 1, "max_steps": 374}
    assert loop_limits(2.0, 10) == {"max_epochs": 2, "max_steps": 20}
    assert loop_limits(1e-6, 10) == {"max_epochs": 1, "max_steps": 1}


def test_build_model_places_and_formats() -> None:
    model = build_model(TinyCNNNode(), device=torch.device("cpu"), channels_last=True)
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def test_a_config_that_would_never_checkpoint_is_refused_before_any_run() -> None:
    # Found by the hostile-values sweep: the run directory was made before CheckpointCallback
    # refused to save nothing.
    with pytest.raises(ConfigError, match="checkpoint_every_epochs.*writes no checkpoint"):
        TrainerNode(checkpoint_every_epochs=0)
    assert TrainerNode(checkpoint_every_epochs=0, checkpoint_every_steps=50).checkpoint_every_steps == 50
