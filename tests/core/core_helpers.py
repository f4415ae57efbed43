"""Shared helpers for the legoml-core tests: toy metrics, data sources and runs."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from legoml.core import Context, Engine, SupervisedStepOutput


class Accuracy:
    """A tiny top-1 accuracy (legoml-metrics is another package; core tests stay alone)."""

    name = "accuracy"

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.correct = torch.zeros((), dtype=torch.long)
        self.total = torch.zeros((), dtype=torch.long)

    def update(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        self.correct += (predictions.argmax(dim=1) == targets).sum()
        self.total += targets.numel()

    def all_reduce(self) -> None:
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.correct)
            dist.all_reduce(self.total)

    def compute(self) -> torch.Tensor:
        return self.correct.double() / self.total.clamp(min=1)


class MeanLoss:
    """Batch-mean losses weighted by batch size."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sum = torch.zeros((), dtype=torch.float64)
        self.count = torch.zeros((), dtype=torch.float64)

    def update(self, loss: torch.Tensor, targets: torch.Tensor | None = None) -> None:
        n = 1 if targets is None else targets.shape[0]
        self.sum += loss.double() * n
        self.count += n

    def all_reduce(self) -> None:
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.sum)
            dist.all_reduce(self.count)

    def compute(self) -> torch.Tensor:
        return self.sum / self.count.clamp(min=1)


class ResumableBatches:
    """Shuffles from (seed, epoch); ``state_dict`` holds the position in the epoch."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int = 0) -> None:
        self.x, self.y, self.batch_size, self.seed = x, y, batch_size, seed
        self.epoch = 0
        self.position = 0
        self.iterated_from: list[int] = []

    def __len__(self) -> int:
        return (len(self.x) + self.batch_size - 1) // self.batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.position = epoch, 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(
            len(self.x), generator=torch.Generator().manual_seed(self.seed + self.epoch)
        )
        self.iterated_from.append(self.position)
        for index in range(self.position, len(self)):
            rows = order[index * self.batch_size : (index + 1) * self.batch_size]
            self.position = index + 1
            yield self.x[rows], self.y[rows]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def toy_data(
    n: int = 40, features: int = 8, classes: int = 3, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, features, generator=g), torch.randint(0, classes, (n,), generator=g)


class DropoutNet(nn.Module):
    """Consumes the global RNG (dropout) so resume must restore it."""

    def __init__(self, features: int = 8, classes: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(features, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


def train_step(engine: Engine, batch: Any, context: Context) -> SupervisedStepOutput:
    x, y = batch
    assert context.optimizer is not None
    context.model.train()
    context.optimizer.zero_grad()
    out = context.model(x)
    loss = F.cross_entropy(out, y)
    loss.backward()
    context.optimizer.step()
    return SupervisedStepOutput(loss=loss.detach(), predictions=out.detach(), targets=y)


def ddp_worker(rank: int, world: int, port: int, folder: str) -> None:
    """One rank of the 2-process gloo test (see test_core_distributed.py)."""
    import io
    from pathlib import Path

    from legoml.core import (
        CheckpointCallback,
        MetricsCallback,
        ProgressBarCallback,
        make_supervised_train_step,
    )
    from legoml.core.distributed import (
        distributed_session,
        get_rank,
        get_world_size,
        is_main_process,
        wrap_ddp,
    )

    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    out = Path(folder)

    def saver(path: Path, state: Any) -> None:
        with open(out / f"saves-rank{get_rank()}.txt", "a") as log:
            log.write(path.name + "\n")
        torch.save(dict(state), path)

    with distributed_session() as info:
        assert (get_rank(), get_world_size(), is_main_process()) == (rank, world, rank == 0)
        torch.manual_seed(0)
        model = nn.Linear(8, 3)
        ddp = wrap_ddp(model)
        context = Context(ddp, torch.optim.SGD(ddp.parameters(), lr=0.5), F.cross_entropy)
        x, y = toy_data(n=48)
        global_batches = [(x[i : i + 12], y[i : i + 12]) for i in range(0, 48, 12)]
        shards = [(bx[rank::world], by[rank::world]) for bx, by in global_batches]
        bar_text = io.StringIO()
        engine = Engine(
            make_supervised_train_step(),
            context,
            [
                MetricsCallback([Accuracy()], loss=MeanLoss()),
                CheckpointCallback(
                    out / "ckpt", saver, every_n_steps=2, every_n_epochs=None, keep_last=None
                ),
                ProgressBarCallback(file=bar_text, refresh_every=1),
            ],
        )
        engine.loop(shards, max_epochs=2)
        torch.save(
            {
                "rank": info.rank,
                "params": {k: v.clone() for k, v in model.state_dict().items()},
                "metrics": dict(engine.state.metrics),
                "bar": bar_text.getvalue(),
            },
            out / f"result-{rank}.pt",
        )
    # Skip interpreter teardown: gloo worker threads kept alive by DDP's reducer can die
    # mid-destructor during Python's finalization and abort the process (SIGABRT), as the
    # legoml-mnist CLI also avoids with os._exit after its cleanup.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
