"""Read experiment configs written before the dataset and task nodes (legoml-mnist 0.1).

Those configs kept the loss and metrics settings at the top level (``label_smoothing``,
``metrics``) and the collator's statistics as plain numbers. They are moved to where they
live now, so old run directories still evaluate and resume.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from legoml.nn import ConfigError, Node
from legoml_mnist.errors import AppError
from legoml_mnist.trainer import TrainerNode

__all__ = ["trainer_from_config", "upgrade_config"]

_CLASSIFIER = "legoml_mnist.TrainerForImageClassification"


def upgrade_config(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` in today's layout (a copy; configs already current come back unchanged)."""
    config = dict(data)
    if config.get("type") != _CLASSIFIER or "task" in config:
        return config
    metrics = config.pop("metrics", None)
    metrics = metrics if isinstance(metrics, Mapping) else {}
    task: dict[str, Any] = {"type": "legoml_mnist.ImageClassification"}
    if "label_smoothing" in config:
        task["label_smoothing"] = config.pop("label_smoothing")
    for key in ("top_k", "f1"):
        if key in metrics:
            task[key] = metrics[key]
    config["task"] = task
    loader = config.get("loader")
    collator = loader.get("collator") if isinstance(loader, Mapping) else None
    if isinstance(collator, Mapping):
        fixed = {k: [v] if isinstance(v, (int, float)) else v for k, v in collator.items()}
        config["loader"] = {**loader, "collator": fixed}  # type: ignore[dict-item]
    return config


def trainer_from_config(config: Mapping[str, Any], where: str) -> TrainerNode:
    """The training node saved in a run or checkpoint (``where`` names it in errors)."""
    try:
        node = Node.from_dict(upgrade_config(config))
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    if not isinstance(node, TrainerNode):
        raise AppError(f"{where} holds a {type(node).__name__} config, not a training config")
    return node
