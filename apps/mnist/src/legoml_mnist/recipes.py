"""Ready-made recipes: the experiment ``legoml-mnist train --dataset D --task T`` starts from.

Each is a plain node tree (``legoml-mnist config --dataset D --task T`` prints it), tuned on
this project's 2-core CPU machine; the figures are in the README.
"""

from __future__ import annotations

from legoml.nn import AdamWNode, ConvAutoencoderNode, OneCycleNode, TinyCNNNode
from legoml_mnist.datasets import DATASETS
from legoml_mnist.errors import AppError
from legoml_mnist.tasks import ReconstructionNode
from legoml_mnist.trainer import TrainerForImageClassificationNode, TrainerNode

__all__ = ["DATASET_NAMES", "TASK_NAMES", "recipe"]

DATASET_NAMES = tuple(DATASETS)
TASK_NAMES = ("classification", "reconstruction")


def _fashion_classifier() -> TrainerNode:
    return TrainerForImageClassificationNode(
        dataset=DATASETS["fashion-mnist"](),
        run_name="fashion-mnist",
        # no stride-2 stem: clothing detail at 28×28 matters; wider convs (probes: README)
        model=TinyCNNNode(channels=(32, 64, 128), batch_norm=True, pool_first=True, hidden=(128,)),
        # the MNIST default moved to lr 1e-2 over 0.65 epoch; Fashion-MNIST was tuned at 6e-3
        optimizer=AdamWNode(lr=6e-3, weight_decay=5e-4, fused=True),
        epochs=4.0,
    )


def _autoencoder(dataset: str) -> TrainerNode:
    return TrainerNode(
        dataset=DATASETS[dataset](),
        task=ReconstructionNode(),
        model=ConvAutoencoderNode(channels=(32, 64), latent=32),
        optimizer=AdamWNode(lr=3e-3, weight_decay=1e-4, fused=True),
        scheduler=OneCycleNode(pct_start=0.2, cycle_momentum=False),
        epochs=2.0,
        run_name=f"{dataset}-autoencoder",
    )


def recipe(dataset: str = "mnist", task: str = "classification") -> TrainerNode:
    """The tuned starting config for ``dataset`` (``mnist``, ``fashion-mnist``) and ``task``
    (``classification``, ``reconstruction``)."""
    if dataset not in DATASETS:
        raise AppError(f"unknown dataset {dataset!r}: use one of {', '.join(DATASET_NAMES)}")
    if task == "reconstruction":
        return _autoencoder(dataset)
    if task != "classification":
        raise AppError(f"unknown task {task!r}: use one of {', '.join(TASK_NAMES)}")
    return _fashion_classifier() if dataset == "fashion-mnist" else TrainerForImageClassificationNode()
