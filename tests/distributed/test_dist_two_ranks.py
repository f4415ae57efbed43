"""Two gloo ranks with global batch B train exactly like one process with batch B, and
metrics reduced across ranks (padding masked) equal the single-process ones."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from dist_helpers import GLOBAL_BATCH, TEST_N, TRAIN_N, ddp_worker, train_and_eval

# measured: max abs param difference 4.5e-8 after 10 AdamW steps (fp32, one thread per rank)
RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("ddp")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    mp.spawn(ddp_worker, args=(2, port, str(folder)), nprocs=2, join=True)  # type: ignore[attr-defined,no-untyped-call]
    results: list[dict[str, Any]] = [
        torch.load(folder / f"rank{r}" / "result.pt", weights_only=True) for r in (0, 1)
    ]
    return results


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_and_eval(0, 1, tmp_path_factory.mktemp("single"))
    finally:
        torch.set_num_threads(threads)


def test_parameters_match_single_process_training(
    two_ranks: list[dict[str, Any]], one_process: dict[str, Any]
) -> None:
    steps = 2 * -(-TRAIN_N // GLOBAL_BATCH)  # ceil: the last batch of each epoch is short
    reference = one_process["params"]
    for result in two_ranks:
        assert result["global_step"] == one_process["global_step"] == steps
        params = result["params"]
        assert params.keys() == reference.keys()
        for name, tensor in reference.items():
            torch.testing.assert_close(params[name], tensor, rtol=RTOL, atol=ATOL)
    # the ranks hold the same weights (DDP averages the gradients of equal local batches)
    for name, tensor in two_ranks[0]["params"].items():
        assert torch.equal(tensor, two_ranks[1]["params"][name])


def test_train_metrics_reduced_across_ranks_equal_single_process(
    two_ranks: list[dict[str, Any]], one_process: dict[str, Any]
) -> None:
    expected = one_process["train"]
    for result in two_ranks:
        train = result["train"]
        assert train["train/accuracy"] == expected["train/accuracy"]
        assert train["train/loss"] == pytest.approx(expected["train/loss"], rel=1e-6)


def test_masked_eval_shards_reduce_to_the_single_process_metrics(
    two_ranks: list[dict[str, Any]], one_process: dict[str, Any]
) -> None:
    assert one_process["test_counted"] == TEST_N
    for result in two_ranks:
        assert result["test_counted"] == TEST_N  # the padded duplicate is masked out
        assert result["test_counted_unmasked"] == TEST_N + 1  # (101 over 2 ranks: one pad)
        assert result["test_accuracy"] == one_process["test_accuracy"]
        assert result["test_loss"] == pytest.approx(one_process["test_loss"], rel=1e-6)


def test_checkpoints_are_written_by_rank_zero_only_and_the_final_save_does_not_hang(
    two_ranks: list[dict[str, Any]],
) -> None:
    # every_n_steps=5 over 10 steps, keep_last=2; save() after the loop found step 10 saved on
    # every rank (a rank-0-only bookkeeping would leave rank 1 alone at the barrier)
    for result in two_ranks:
        assert result["files"] == ["step-00000005.pt", "step-00000010.pt"]
    writes = Path(str(two_ranks[0]["folder"]), "writes.txt").read_text().split("\n")
    assert [w for w in writes if w] == ["0 step-00000005.pt", "0 step-00000010.pt"]
