"""legoml.core.device.move_to_device, the one batch mover: every container kind keeps its
type, tensors already in place are not copied, and device names are accepted."""

from __future__ import annotations

from collections import OrderedDict, namedtuple
from dataclasses import dataclass, field

import torch

from legoml.core.device import move_to_device

Pair = namedtuple("Pair", ["x", "tag"])


@dataclass
class Batch:
    x: torch.Tensor
    name: str
    cached: int = field(default=0, init=False)


def test_every_container_kind_keeps_its_type_on_another_device() -> None:
    batch = {
        "pair": Pair(torch.zeros(2), "a"),
        "list": [torch.ones(1), 3],
        "tuple": (torch.ones(1),),
        "dc": Batch(torch.zeros(1), "n"),
        "od": OrderedDict(k=torch.ones(1)),
    }
    moved = move_to_device(batch, "meta")
    assert isinstance(moved["pair"], Pair) and moved["pair"].x.is_meta and moved["pair"].tag == "a"
    assert moved["list"][0].is_meta and moved["list"][1] == 3
    assert isinstance(moved["tuple"], tuple) and moved["tuple"][0].is_meta
    assert isinstance(moved["dc"], Batch) and moved["dc"].x.is_meta and moved["dc"].name == "n"
    assert isinstance(moved["od"], OrderedDict) and moved["od"]["k"].is_meta
    assert batch["list"][0].device.type == "cpu", "the input is left as it was"


def test_nothing_is_copied_when_the_tensors_are_already_there() -> None:
    pair = (torch.zeros(2), torch.ones(2))
    assert move_to_device(pair, torch.device("cpu")) is pair
    assert move_to_device(pair, "cpu") is pair
    dc = Batch(torch.zeros(1), "n")
    assert move_to_device(dc, "cpu").x is dc.x
