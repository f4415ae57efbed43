"""Image reconstruction: an auto-encoder learns to give back its input through a small code."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

import torch
from torch import nn

from legoml.core import make_reconstruction_eval_step, make_reconstruction_train_step
from legoml.core.engine import StepFn
from legoml.core.steps import AmpSetting
from legoml.metrics import MeanAbsoluteError, MeanSquaredError, Metric
from legoml.nn import Check, ModuleNode
from legoml_mnist.errors import AppError
from legoml_mnist.tasks.base import EvalReport, TaskNode

if TYPE_CHECKING:
    from legoml.data import Split
    from legoml_mnist.datasets import DatasetNode
    from legoml_mnist.loaders import Scaling

__all__ = ["ReconstructionNode"]


@dataclass(frozen=True)
class ReconstructionNode(TaskNode, tag="legoml_mnist.Reconstruction"):
    """Reconstruct images in [0, 1] pixels; tracks the per-pixel ``mse`` (and ``mae``), and
    writes a PNG grid of ``grid_images`` test images above their reconstructions."""

    loss: Literal["mse", "bce"] = "mse"
    grid_images: Annotated[int, Check(ge=1, le=64)] = 16

    final_metrics: ClassVar[tuple[str, ...]] = ("mse", "loss")

    def scaling(self, dataset: DatasetNode) -> Scaling:
        channels = dataset.image_shape[0]
        return (0.0,) * channels, (1.0,) * channels

    def check_model(self, model: ModuleNode, dataset: DatasetNode) -> None:
        if not hasattr(model, "latent"):
            raise AppError(
                f"task reconstruction needs an auto-encoder model, got {type(model).__name__}: "
                'use --set model={"type": "ConvAutoencoderNode"} (or legoml-mnist train --task reconstruction)'
            )

    def loss_fn(self, train: bool) -> nn.Module:
        return nn.MSELoss() if self.loss == "mse" else nn.BCELoss()

    def train_step(
        self, *, amp: AmpSetting, clip_grad_norm: float | None, channels_last: bool
    ) -> StepFn:
        return make_reconstruction_train_step(
            amp=amp, clip_grad_norm=clip_grad_norm, channels_last=channels_last
        )

    def eval_step(self, *, amp: AmpSetting, channels_last: bool) -> StepFn:
        return make_reconstruction_eval_step(amp=amp, channels_last=channels_last)

    def _own_metric_names(self) -> tuple[str, ...]:
        return ("mse", "mae")

    def metrics(self, dataset: DatasetNode) -> dict[str, Metric]:
        return self.with_extra_metrics({"mse": MeanSquaredError(), "mae": MeanAbsoluteError()}, dataset)

    def report(
        self, metrics: Mapping[str, float], evaluated: Mapping[str, Metric], dataset: DatasetNode
    ) -> str:
        return (
            f"test mse {metrics['test/mse']:.5f}  test mae {metrics['test/mae']:.5f}  "
            f"test loss ({self.loss}) {metrics['test/loss']:.5f}"
        )

    def artifacts(
        self,
        report: EvalReport,
        model: nn.Module,
        split: Split,
        scaling: Scaling,
        folder: Path,
        prefix: str = "",
    ) -> dict[str, Path]:
        from legoml_mnist.report import save_reconstruction_grid

        count = min(self.grid_images, len(split))
        device = next(model.parameters()).device
        mean = torch.tensor(scaling[0]).view(1, -1, 1, 1)
        std = torch.tensor(scaling[1]).view(1, -1, 1, 1)
        images = split.images[:count]
        images = images.unsqueeze(1) if images.ndim == 3 else images
        inputs = (images.float() / 255.0 - mean) / std
        was_training = model.training
        model.eval()
        with torch.inference_mode():
            output = model(inputs.to(device))
        model.train(was_training)
        reconstructions = output[0] if isinstance(output, tuple) else output
        path = folder / f"{prefix}reconstructions.png"
        grid = save_reconstruction_grid(inputs * std + mean, reconstructions.float().cpu() * std + mean, path)
        return {"reconstructions": grid}
