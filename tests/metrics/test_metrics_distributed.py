"""Two processes (gloo): all_reduce gives what one metric over all the data gives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from legoml.metrics import (
    BinaryPrecision,
    ClassificationReport,
    ConfusionMatrix,
    F1Score,
    MeanLoss,
    MetricCollection,
    MultiClassAccuracy,
)

WORLD = 2


def build() -> tuple[MetricCollection, MeanLoss, BinaryPrecision]:
    collection = MetricCollection(
        {
            "acc": MultiClassAccuracy(),
            "top3": MultiClassAccuracy(top_k=3),
            "f1": F1Score(average="macro"),  # classes inferred: ranks see different ones
            "cm": ConfusionMatrix(num_classes=10),
            "report": ClassificationReport(num_classes=10),
        }
    )
    return collection, MeanLoss(), BinaryPrecision(threshold=0.4)


def everything() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(203, 10, generator=g)
    targets = torch.randint(0, 10, (203,), generator=g)
    scores[:101, 7:] = -1e3  # rank 0's part never predicts classes 7..9 ...
    targets[:101] %= 7  # ... nor holds them as targets: its inferred F1 state is smaller
    losses = torch.rand(203, generator=g)
    valid = torch.ones(203, dtype=torch.bool)
    return scores, targets, losses, valid


def results(
    collection: MetricCollection, loss: MeanLoss, binary: BinaryPrecision
) -> dict[str, object]:
    values = {
        k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in collection.compute().items()
    }
    values["loss"] = loss.compute()
    values["binary"] = binary.compute()
    return values


def worker(rank: int, init_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        scores, targets, losses, _ = everything()
        # Rank r takes 0..100 / 101..202, plus one padded duplicate that the mask drops.
        lo, hi = (0, 101) if rank == 0 else (101, 203)
        idx = torch.cat([torch.arange(lo, hi), torch.tensor([lo])])
        mask = torch.ones(len(idx), dtype=torch.bool)
        mask[-1] = False
        collection, loss, binary = build()
        for part in torch.split(torch.arange(len(idx)), 40):
            sel = idx[part]
            collection.update(scores[sel], targets[sel], mask[part])
            loss.update(losses[sel], mask=mask[part])
            binary.update(scores[sel, 0].sigmoid(), (targets[sel] == 0).long(), mask[part])
        for metric in (collection, loss, binary):
            metric.all_reduce()
            metric.all_reduce()  # a second call must not add the counts again
        reduced = results(collection, loss, binary)

        ref_collection, ref_loss, ref_binary = build()
        ref_collection.update(scores, targets)
        ref_loss.update(losses)
        ref_binary.update(scores[:, 0].sigmoid(), (targets == 0).long())
        expected = results(ref_collection, ref_loss, ref_binary)
        assert reduced.keys() == expected.keys()
        for key, value in expected.items():
            if isinstance(value, float):
                assert abs(reduced[key] - value) < 1e-12, (rank, key, reduced[key], value)  # type: ignore[operator]
            else:
                assert reduced[key] == value, (rank, key)
    finally:
        dist.destroy_process_group()


def test_all_reduce_across_two_processes_matches_one_metric(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init_file = tmp_path / "rendezvous"
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", os.environ.get("GLOO_SOCKET_IFNAME", "lo"))
    mp.spawn(worker, args=(str(init_file),), nprocs=WORLD, join=True)
