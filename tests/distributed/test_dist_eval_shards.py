"""After a distributed run each rank evaluates its own shard of the test split, and the
counts summed across ranks give exactly the single-process figures (no example twice)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from dist_helpers import TEST_N, eval_shard_worker, evaluate_shard, free_port


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_split_the_evaluation_and_agree_with_one_process(tmp_path: Path, world: int) -> None:
    mp.spawn(eval_shard_worker, args=(world, free_port(), str(tmp_path)), nprocs=world, join=True)  # type: ignore[attr-defined,no-untyped-call]
    ranks: list[dict[str, Any]] = [
        torch.load(tmp_path / f"eval-{r}.pt", weights_only=True) for r in range(world)
    ]
    single = evaluate_shard(0, 1)
    assert single["seen"] == TEST_N
    assert sum(r["seen"] for r in ranks) == TEST_N  # the work is split, nothing padded
    assert max(r["seen"] for r in ranks) - min(r["seen"] for r in ranks) <= 1
    for result in ranks:
        assert result["metrics"]["test/accuracy"] == single["metrics"]["test/accuracy"]
        assert result["metrics"]["test/loss"] == pytest.approx(single["metrics"]["test/loss"], rel=1e-6)
        assert torch.equal(result["confusion"], single["confusion"])
        assert int(result["confusion"].sum()) == TEST_N


def test_more_ranks_than_examples_is_a_clear_error() -> None:
    from dist_helpers import four_classes

    from legoml.data import Split
    from legoml_mnist import AppError, ImageClassificationNode, LoaderNode, evaluate_split

    with pytest.raises(AppError, match="fewer than the 4 ranks"):
        evaluate_split(
            torch.nn.Identity(),
            Split(images=torch.zeros(3, 8, 8, dtype=torch.uint8), labels=torch.zeros(3, dtype=torch.int64)),
            task=ImageClassificationNode(),
            dataset=four_classes(),
            loader=LoaderNode(),
            device=torch.device("cpu"),
            amp=None,
            channels_last=False,
            rank=0,
            world_size=4,
        )
