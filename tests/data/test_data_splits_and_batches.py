"""train_val_split / limit / subset, and the batch helpers (move, collate, DataLoader adapter)."""

from __future__ import annotations

import functools
from collections import OrderedDict, namedtuple
from dataclasses import dataclass

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from legoml.data import (
    BatchLoader,
    DataConfigError,
    EpochLoader,
    Split,
    collate_images,
    limit,
    move_to_device,
    subset,
    train_val_split,
)


def ids_split(n: int) -> Split:
    return Split(torch.randint(0, 256, (n, 4, 4), dtype=torch.uint8), torch.arange(n))


def test_train_val_split_is_deterministic_disjoint_and_complete() -> None:
    data = ids_split(100)
    train, val = train_val_split(data, val_size=20, seed=3)
    again_train, again_val = train_val_split(data, val_size=20, seed=3)
    assert torch.equal(val.labels, again_val.labels) and torch.equal(
        train.labels, again_train.labels
    )
    assert len(train) == 80 and len(val) == 20
    assert sorted(train.labels.tolist() + val.labels.tolist()) == list(range(100))
    # Both parts keep the original order and carry their own images.
    assert train.labels.tolist() == sorted(train.labels.tolist())
    assert torch.equal(val.images, data.images[val.labels])
    other_val = train_val_split(data, val_size=20, seed=4)[1]
    assert not torch.equal(val.labels, other_val.labels)


def test_train_val_split_edges() -> None:
    data = ids_split(10)
    train, val = train_val_split(data, val_size=0)
    assert len(train) == 10 and len(val) == 0
    train, val = train_val_split(data, val_size=10)
    assert len(train) == 0 and len(val) == 10
    for bad in (-1, 11):
        with pytest.raises(DataConfigError, match="val_size"):
            train_val_split(data, val_size=bad)


def test_views_keep_the_split_facts() -> None:
    data = Split(
        torch.zeros(10, 3, 4, 4, dtype=torch.uint8),
        torch.arange(10),
        mean=(0.1, 0.2, 0.3),
        std=(0.5,),
        classes=tuple("abcdefghij"),
    )
    train, val = train_val_split(data, val_size=3, seed=0)
    for view in (train, val, limit(data, 4), subset(data, torch.tensor([1, 5]))):
        assert (view.mean, view.std, view.classes) == (data.mean, data.std, data.classes)
        assert view.images.shape[1:] == (3, 4, 4)


def test_split_defaults_and_validation() -> None:
    plain = Split(torch.zeros(2, 4, 4, dtype=torch.uint8), torch.arange(2))
    assert (plain.mean, plain.std, plain.classes) == ((0.0,), (1.0,), ())
    with pytest.raises(DataConfigError, match="Split mean has 3 values for 1-channel images"):
        Split(plain.images, plain.labels, mean=(0.1, 0.2, 0.3))
    with pytest.raises(DataConfigError, match="Split std must be > 0"):
        Split(plain.images, plain.labels, std=(0.0,))


def test_split_is_still_importable_from_its_old_home() -> None:
    from legoml.data.mnist import Split as OldSplit
    from legoml.data.splits import Split as NewSplit

    assert OldSplit is NewSplit is Split


def test_limit_and_subset() -> None:
    data = ids_split(10)
    assert limit(data, 3).labels.tolist() == [0, 1, 2]
    assert limit(data, None) is data and limit(data, 50) is data
    assert len(limit(data, 0)) == 0
    with pytest.raises(DataConfigError, match="count >= 0"):
        limit(data, -2)
    picked = subset(data, torch.tensor([7, 2]))
    assert picked.labels.tolist() == [7, 2] and torch.equal(picked.images[0], data.images[7])
    with pytest.raises(DataConfigError, match="integers"):
        subset(data, torch.tensor([1.0]))


Pair = namedtuple("Pair", ["x", "tag"])


@dataclass
class Batch:
    x: torch.Tensor
    name: str


def test_move_to_device_is_deprecated_but_still_walks_nested_batches() -> None:
    batch = {
        "pair": Pair(torch.zeros(2), "a"),
        "list": [torch.ones(1), 3],
        "tuple": (torch.ones(1),),
        "dc": Batch(torch.zeros(1), "n"),
        "od": OrderedDict(k=torch.ones(1)),
    }
    with pytest.warns(DeprecationWarning, match="legoml.core.device.move_to_device"):
        moved = move_to_device(batch, "meta")
    assert moved["pair"].x.is_meta and moved["pair"].tag == "a" and isinstance(moved["pair"], Pair)
    assert moved["list"][0].is_meta and moved["list"][1] == 3
    assert isinstance(moved["tuple"], tuple) and moved["tuple"][0].is_meta
    assert isinstance(moved["dc"], Batch) and moved["dc"].x.is_meta and moved["dc"].name == "n"
    assert isinstance(moved["od"], OrderedDict) and moved["od"]["k"].is_meta
    assert batch["list"][0].device.type == "cpu", "the input is left as it was"


@pytest.mark.parametrize(("mean", "std"), [(0.0, 1.0), (0.1307, 0.3081)])
def test_collate_images_matches_the_batch_loader(mean: float, std: float) -> None:
    data = ids_split(10)
    collate = functools.partial(collate_images, mean=mean, std=std)
    loader = DataLoader(TensorDataset(data.images, data.labels), batch_size=4, collate_fn=collate)
    ours = BatchLoader(data.images, data.labels, 4, shuffle=False, mean=mean, std=std)
    for (a, la), (b, lb) in zip(loader, ours, strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb) and la.dtype == torch.int64


def test_epoch_loader_forwards_set_epoch_to_a_distributed_sampler() -> None:
    dataset = TensorDataset(torch.arange(40))
    sampler = DistributedSampler(dataset, num_replicas=2, rank=0, shuffle=True, seed=0)
    loader = EpochLoader(DataLoader(dataset, batch_size=5, sampler=sampler))
    loader.set_epoch(0)
    first = torch.cat([b[0] for b in loader])
    loader.set_epoch(1)
    second = torch.cat([b[0] for b in loader])
    assert len(loader) == 4 and loader.epoch == 1
    assert not torch.equal(first, second) and sorted(first.tolist()) != sorted(second.tolist())
    loader.set_epoch(0)
    assert torch.equal(torch.cat([b[0] for b in loader]), first)


def test_epoch_loader_moves_batches() -> None:
    loader = EpochLoader(DataLoader(TensorDataset(torch.arange(4)), batch_size=2), device="meta")
    assert all(batch[0].is_meta for batch in loader)
    loader.set_epoch(3)  # a plain sampler has no set_epoch: nothing to forward, no error
