"""A config ``Node`` for a model of your own: saved to JSON, reloaded, forked and trained.

Declaring the dataclass registers it, so ``Node.from_json`` can rebuild it (and only it:
a config never imports anything by name). Import this module before loading such a file.

    python examples/custom_node.py --out runs/digits-mlp.json
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from torch import nn

from legoml.core import (
    Context,
    Engine,
    MetricsCallback,
    make_supervised_train_step,
    seed_everything,
)
from legoml.data import BatchLoader, limit, load_mnist
from legoml.metrics import MultiClassAccuracy
from legoml.nn import AdamWNode, Check, ModuleNode, Node


@dataclass(frozen=True)
class DigitsMLPNode(ModuleNode, tag="examples.DigitsMLP"):
    """Flatten, hidden layers with dropout, 10 logits. Fields are validated on creation."""

    hidden: tuple[Annotated[int, Check(ge=1)], ...] = (128,)
    dropout: Annotated[float, Check(ge=0.0, lt=1.0)] = 0.1

    def build(self) -> nn.Module:
        layers: list[nn.Module] = [nn.Flatten()]
        width = 28 * 28
        for size in self.hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(self.dropout)]
            width = size
        return nn.Sequential(*layers, nn.Linear(width, 10))


def train(node: DigitsMLPNode, examples: int) -> float:
    """A short training of ``node``'s model; returns the training accuracy of the last epoch."""
    seed_everything(0)
    model = node.build()
    loader = BatchLoader.from_split(limit(load_mnist("train"), examples), batch_size=128)
    context = Context(model=model, optimizer=AdamWNode(lr=3e-3).build(model), loss_fn=nn.CrossEntropyLoss())
    engine = Engine(make_supervised_train_step(), context, [MetricsCallback([MultiClassAccuracy()])])
    return engine.loop(loader, max_epochs=2).metrics["train/accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/digits-mlp.json"))
    parser.add_argument("--examples", type=int, default=4096)
    args = parser.parse_args()

    node = DigitsMLPNode(hidden=(256,))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(node.to_json())
    reloaded = Node.from_json(args.out.read_text())
    assert reloaded == node  # a round trip gives the same validated config
    wider = reloaded.fork(hidden=(256, 128), dropout=0.2)
    print(f"saved {args.out}; reloaded {reloaded}; forked {wider}")
    for name, config in (("reloaded", reloaded), ("forked", wider)):
        print(f"{name}: train/accuracy {train(config, args.examples):.4f}, "
              f"{sum(p.numel() for p in config.build().parameters())} parameters")


if __name__ == "__main__":
    main()
