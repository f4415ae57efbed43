"""Your own ``nn.Module`` and ``DataLoader``, trained by LegoML with metrics, evaluation,
tracking and kill-safe resume.

Run it; kill it at any moment; run it again: it continues from its last checkpoint and
ends with the same weights, bit for bit, as a run that was never stopped. Run it once more
after it finished and it trains nothing.

    python examples/own_model_and_loader.py --run-dir runs/own-model
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from legoml.core import (
    CheckpointCallback,
    Context,
    Engine,
    EvalOnEpochEndCallback,
    MetricsCallback,
    make_supervised_eval_step,
    make_supervised_train_step,
    seed_everything,
)
from legoml.data import limit, load_mnist
from legoml.metrics import MeanLoss, MultiClassAccuracy
from legoml.track import TrackingCallback, resume_run, save_checkpoint


class SmallNet(nn.Module):
    """Any model of yours: LegoML only calls it."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, stride=2), nn.ReLU(), nn.Flatten())
        self.head = nn.Linear(16 * 13 * 13, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def images_and_labels(split: str, count: int) -> TensorDataset:
    data = limit(load_mnist(split), count)  # any torch Dataset of yours works the same
    return TensorDataset(data.images.unsqueeze(1).float() / 255.0, data.labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/own-model")
    parser.add_argument("--examples", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()

    seed_everything(0)
    train = DataLoader(images_and_labels("train", args.examples), batch_size=64, shuffle=True)
    test = DataLoader(images_and_labels("test", 1000), batch_size=500)
    model = SmallNet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    context = Context(model=model, optimizer=optimizer, loss_fn=nn.CrossEntropyLoss())

    evaluator = Engine(make_supervised_eval_step(), context,
                       [MetricsCallback([MultiClassAccuracy()], loss=MeanLoss(), prefix="")])
    trainer = Engine(make_supervised_train_step(), context, [
        MetricsCallback([MultiClassAccuracy()], loss=MeanLoss()),  # train/accuracy, train/loss
        EvalOnEpochEndCallback(evaluator, test),                   # val/accuracy, val/loss
    ])
    config = {"model": "SmallNet", "lr": 2e-3, "batch_size": 64, "epochs": args.epochs}
    with resume_run(args.run_dir, context, trainer, config=config) as run:  # fresh, or resumed
        trainer.callbacks += [
            TrackingCallback(run, log_every_n_steps=5),
            CheckpointCallback(run.checkpoints_dir, saver=save_checkpoint, every_n_steps=10),
        ]
        state = trainer.loop(train, max_epochs=args.epochs)
        run.set_final_metrics({k: v for k, v in state.metrics.items() if k.startswith("val/")})
    print(f"step {state.global_step}: {state.metrics}; run directory: {run.dir}")


if __name__ == "__main__":
    main()
