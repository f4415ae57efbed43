"""Distributed helpers: single-process fallbacks, torchrun env parsing, clean shutdown, and a
2-process gloo run that matches single-process training with the same global batch."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from core_helpers import Accuracy, MeanLoss, ddp_worker, toy_data

from legoml.core import Context, Engine, MetricsCallback, make_supervised_train_step
from legoml.core.context import unwrap_model
from legoml.core.distributed import (
    barrier,
    destroy_distributed,
    distributed_session,
    get_local_rank,
    get_rank,
    get_world_size,
    init_distributed,
    is_distributed,
    is_main_process,
    wrap_ddp,
)
from legoml.core.errors import DistributedError

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def no_torchrun_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in TORCHRUN_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_single_process_fallbacks(no_torchrun_env: pytest.MonkeyPatch) -> None:
    info = init_distributed()
    assert (info.rank, info.world_size, info.local_rank, info.backend, info.is_main) == (
        0,
        1,
        0,
        None,
        True,
    )
    assert not is_distributed() and get_rank() == 0 and get_world_size() == 1 and is_main_process()
    assert get_local_rank() == 0
    barrier()  # no-op
    model = torch.nn.Linear(2, 2)
    assert wrap_ddp(model) is model
    destroy_distributed()  # safe without a group


def test_incomplete_or_bad_torchrun_env_is_a_clear_error(
    no_torchrun_env: pytest.MonkeyPatch,
) -> None:
    no_torchrun_env.setenv("WORLD_SIZE", "2")
    with pytest.raises(
        DistributedError, match="missing RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT"
    ):
        init_distributed()
    for name, value in (
        ("RANK", "zero"),
        ("LOCAL_RANK", "0"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "1"),
    ):
        no_torchrun_env.setenv(name, value)
    with pytest.raises(DistributedError, match="RANK='zero' is not an integer"):
        init_distributed()


def test_session_destroys_the_group_also_on_errors(no_torchrun_env: pytest.MonkeyPatch) -> None:
    env = {
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
    }
    for name, value in env.items():
        no_torchrun_env.setenv(name, value)
    with (
        pytest.raises(RuntimeError, match="inside"),
        distributed_session(device=torch.device("cpu")) as info,
    ):
        assert info.backend == "gloo" and is_distributed() and dist.get_backend() == "gloo"
        barrier()
        raise RuntimeError("inside")
    assert not is_distributed()


def test_unwrap_model_strips_wrappers() -> None:
    inner = torch.nn.Linear(2, 2)
    assert unwrap_model(torch.nn.DataParallel(inner)) is inner
    wrapped = torch.nn.Module()
    wrapped._orig_mod = inner  # what torch.compile's OptimizedModule holds
    assert unwrap_model(wrapped) is inner
    assert list(Context(torch.nn.DataParallel(inner)).state_dict()["model"]) == ["weight", "bias"]


def test_two_gloo_ranks_match_single_process_training(tmp_path: Path) -> None:
    mp.spawn(ddp_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"result-{rank}.pt", weights_only=True) for rank in (0, 1)]

    # single process, same init, same global batches of 12
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 3)
    context = Context(model, torch.optim.SGD(model.parameters(), lr=0.5), F.cross_entropy)
    x, y = toy_data(n=48)
    batches = [(x[i : i + 12], y[i : i + 12]) for i in range(0, 48, 12)]
    engine = Engine(
        make_supervised_train_step(), context, [MetricsCallback([Accuracy()], loss=MeanLoss())]
    )
    engine.loop(batches, max_epochs=2)

    for result in results:  # both ranks hold the same weights, equal to single-process ones
        for name, tensor in model.state_dict().items():
            torch.testing.assert_close(result["params"][name], tensor, rtol=1e-6, atol=1e-7)
        assert result["metrics"]["train/accuracy"] == engine.state.metrics["train/accuracy"]
        assert result["metrics"]["train/loss"] == pytest.approx(
            engine.state.metrics["train/loss"], rel=1e-6
        )
    assert "epoch 2/2" in results[0]["bar"] and results[1]["bar"] == ""  # progress on rank 0 only
    saves = sorted(p.name for p in tmp_path.glob("saves-rank*.txt"))
    assert saves == ["saves-rank0.txt"]  # checkpoints written by rank 0 only
    written = (tmp_path / "saves-rank0.txt").read_text().split()
    assert written == [f"step-{s:08d}.pt" for s in (2, 4, 6, 8)]
    ckpt = torch.load(tmp_path / "ckpt" / "step-00000008.pt", weights_only=True)
    assert list(ckpt["context"]["model"]) == ["weight", "bias"]  # DDP unwrapped: loads anywhere
