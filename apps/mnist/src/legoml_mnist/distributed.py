"""``legoml-mnist train --distributed``: the same experiment, data parallel under torchrun."""

from __future__ import annotations

from pathlib import Path

from legoml.core import distributed_session
from legoml_mnist.errors import AppError
from legoml_mnist.nodes import TrainerForImageClassificationNode
from legoml_mnist.trainer import TrainResult

__all__ = ["train_distributed"]


def train_distributed(
    node: TrainerForImageClassificationNode, resume: str | Path | None = None
) -> TrainResult:
    """Join the process group torchrun describes, train, and leave it (also on errors)."""
    import os

    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise AppError(
            "--distributed needs torchrun's environment: run `torchrun --nproc_per_node=2 "
            "-m legoml_mnist train --distributed` (or make train-ddp NPROC=2)"
        )
    with distributed_session():
        return node.build().train(resume=resume)
