"""Global batch semantics without processes: what each rank's loader takes, loader state
across world sizes, the app's batch split, timeout setting and resume resolution."""

from __future__ import annotations

import math
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
import torch

from legoml.data import BatchLoader, DataConfigError
from legoml_mnist import LoaderNode, TrainerForImageClassificationNode
from legoml_mnist.distributed import (
    DEFAULT_TIMEOUT_S,
    TIMEOUT_ENV,
    RankFailureError,
    collective_timeout,
    exit_process,
    shared_checkpoint,
    train_distributed,
)
from legoml_mnist.errors import AppError
from legoml_mnist.loaders import rank_share


def ids(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose label is their own index, so batches show which examples they hold."""
    return torch.zeros(n, 2, 2, dtype=torch.uint8), torch.arange(n)


def rank_loaders(n: int, batch: int, world: int, **kwargs: object) -> list[BatchLoader]:
    images, labels = ids(n)
    return [
        BatchLoader(images, labels, batch // world, seed=5, rank=r, world_size=world, **kwargs)  # type: ignore[arg-type]
        for r in range(world)
    ]


@pytest.mark.parametrize("world", [2, 3, 4])
@pytest.mark.parametrize("n", [96, 100, 101, 7])
def test_each_step_of_the_ranks_is_the_single_process_global_batch(n: int, world: int) -> None:
    batch = 12
    (single,) = rank_loaders(n, batch, 1)
    ranks = rank_loaders(n, batch, world)
    assert {len(loader) for loader in ranks} == {len(single)} == {math.ceil(n / batch)}
    for epoch in (0, 1):
        for loader in (single, *ranks):
            loader.set_epoch(epoch)
        steps = list(zip(single, *ranks, strict=True))
        first = set(steps[0][0][1].tolist())
        for index, (whole, *parts) in enumerate(steps):
            union = Counter(torch.cat([y for _, y in parts]).tolist())
            sizes = {len(y) for _, y in parts}
            assert len(sizes) == 1  # equal local batches: DDP's mean of means is the global mean
            expected = Counter(whole[1].tolist())
            if index < len(steps) - 1 or n % world == 0:
                assert union == expected
            else:  # the last step: the single-process batch plus < world repeats of examples
                repeats = union - expected  # from the start of the epoch (DistributedSampler-like)
                assert union - repeats == expected
                assert repeats.total() == sum(loader.num_padded for loader in ranks) < world
                assert set(repeats) <= first


def test_drop_last_gives_the_same_full_batches_without_repeats() -> None:
    (single,) = rank_loaders(101, 12, 1, drop_last=True)
    ranks = rank_loaders(101, 12, 2, drop_last=True)
    assert len(single) == len(ranks[0]) == 101 // 12
    for whole, *parts in zip(single, *ranks, strict=True):
        assert sorted(torch.cat([y for _, y in parts]).tolist()) == sorted(whole[1].tolist())


@pytest.mark.parametrize(("saved_world", "new_world"), [(2, 1), (1, 4), (4, 2)])
def test_loader_state_resumes_with_another_world_size(saved_world: int, new_world: int) -> None:
    n, batch = 100, 12
    saved = rank_loaders(n, batch, saved_world)
    iterators = [iter(loader) for loader in saved]
    for _ in range(3):  # three global steps done
        for iterator in iterators:
            next(iterator)
    state = saved[0].state_dict()
    resumed = rank_loaders(n, batch, new_world)
    for loader in resumed:
        loader.set_epoch(0)  # what the engine does before loading the state
        loader.load_state_dict(state)
    (reference,) = rank_loaders(n, batch, 1)
    expected = [y for _, y in reference][3:]
    rest = list(zip(*resumed, strict=True))
    assert len(rest) == len(expected)
    for whole, parts in zip(expected, rest, strict=True):
        assert set(torch.cat([y for _, y in parts]).tolist()) == set(whole.tolist())


def test_loader_state_with_another_global_batch_is_refused() -> None:
    state = rank_loaders(100, 12, 2)[0].state_dict()
    (other,) = rank_loaders(100, 16, 1)
    with pytest.raises(DataConfigError, match=r"global batch 12\).*global batch 16"):
        other.load_state_dict(state)


def test_global_batch_is_split_evenly_over_the_ranks() -> None:
    loader = LoaderNode(batch_size=64)
    assert rank_share(loader, 1) is loader
    assert rank_share(loader, 2).batch_size == 32
    assert rank_share(loader, 4).batch_size == 16
    with pytest.raises(AppError, match=r"loader.batch_size=64 is the global batch .* 3 ranks"):
        rank_share(loader, 3)


def test_collective_timeout_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TIMEOUT_ENV, raising=False)
    assert collective_timeout() == timedelta(seconds=DEFAULT_TIMEOUT_S) < timedelta(minutes=10)
    monkeypatch.setenv(TIMEOUT_ENV, "45")
    assert collective_timeout() == timedelta(seconds=45)
    for bad in ("0", "soon", "-3"):
        monkeypatch.setenv(TIMEOUT_ENV, bad)
        with pytest.raises(AppError, match=TIMEOUT_ENV):
            collective_timeout()


def test_distributed_training_outside_torchrun_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(AppError, match="torchrun"):
        train_distributed(TrainerForImageClassificationNode())
    assert issubclass(RankFailureError, AppError)  # reported in one line by the CLI
    assert exit_process(3) == 3  # never joined a job: the CLI returns as usual


def test_resume_resolves_a_run_directory_to_its_latest_checkpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    for step in (4, 12, 8):
        torch.save({"global_step": step}, run_dir / "checkpoints" / f"step-{step:08d}.pt")
    assert shared_checkpoint(run_dir) == run_dir / "checkpoints" / "step-00000012.pt"
    file = run_dir / "checkpoints" / "step-00000004.pt"
    assert shared_checkpoint(file) == file
    # nothing to resume from: handed on as is, for the trainer's own one-line error
    assert shared_checkpoint(tmp_path / "missing") == tmp_path / "missing"
    (tmp_path / "empty").mkdir()
    assert shared_checkpoint(tmp_path / "empty") == tmp_path / "empty"


def test_a_failing_rank_ignores_sigterm_until_it_has_reported() -> None:
    """torchrun's SIGTERM reached a rank between leaving the training block and printing
    its one-line error, and the restored default action killed it silently (exit -15).
    A failing rank now ignores SIGTERM from there on; a rank that finished restores the
    previous handler, and inside the block SIGTERM is an error."""
    import os
    import signal

    from legoml_mnist.distributed import _sigterm_raises

    before = signal.getsignal(signal.SIGTERM)
    try:
        with _sigterm_raises():
            assert signal.getsignal(signal.SIGTERM) not in (before, signal.SIG_IGN)
        assert signal.getsignal(signal.SIGTERM) is before
        with pytest.raises(RankFailureError, match="stopped by SIGTERM"), _sigterm_raises():
            os.kill(os.getpid(), signal.SIGTERM)  # the handler raises at the next bytecode
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGTERM)  # ignored: this test process lives on
    finally:
        signal.signal(signal.SIGTERM, before)
