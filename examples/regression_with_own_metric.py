"""A regression task (MSE loss) with a metric of your own beside LegoML's.

Any object with ``update(predictions, targets)``, ``compute()`` and ``reset()`` is a metric
to ``MetricsCallback``; here the coefficient of determination (R²) is written by hand.

    python examples/regression_with_own_metric.py --run-dir runs/regression
"""

from __future__ import annotations

import argparse
import math

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from legoml.core import (
    Context,
    Engine,
    MetricsCallback,
    make_supervised_train_step,
    seed_everything,
)
from legoml.metrics import MeanLoss, MeanSquaredError
from legoml.track import TrackingCallback, run


class RSquared:
    """1 - SS_res / SS_tot over everything seen since the last reset (your own metric)."""

    def reset(self) -> None:
        self.n, self.total, self.squares, self.residual = 0, 0.0, 0.0, 0.0

    def update(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        self.n += targets.numel()
        self.total += float(targets.sum())
        self.squares += float((targets.double() ** 2).sum())
        self.residual += float(((predictions.double() - targets.double()) ** 2).sum())

    def compute(self) -> float:
        spread = self.squares - self.total**2 / self.n if self.n else 0.0
        return 1.0 - self.residual / spread if spread > 0 else 0.0


def noisy_wave(count: int, generator: torch.Generator) -> TensorDataset:
    x = torch.rand(count, 1, generator=generator) * 2 * math.pi
    y = torch.sin(x) + 0.1 * torch.randn(count, 1, generator=generator)
    return TensorDataset(x, y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()

    seed_everything(0)
    data = DataLoader(noisy_wave(2048, torch.Generator().manual_seed(0)), batch_size=128, shuffle=True)
    model = nn.Sequential(nn.Linear(1, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
    context = Context(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=1e-2),
                      loss_fn=nn.MSELoss())
    metrics = MetricsCallback({"mse": MeanSquaredError(), "r2": RSquared()}, loss=MeanLoss())
    trainer = Engine(make_supervised_train_step(), context, [metrics])
    with run("regression", root=args.run_dir, config=vars(args)) as tracker:
        trainer.callbacks.append(TrackingCallback(tracker, log_every_n_steps=0))  # epoch metrics
        state = trainer.loop(data, max_epochs=args.epochs)
        tracker.set_final_metrics(state.metrics)
    print(f"train/mse {state.metrics['train/mse']:.4f}  train/r2 {state.metrics['train/r2']:.3f}; "
          f"run directory: {tracker.dir}")


if __name__ == "__main__":
    main()
