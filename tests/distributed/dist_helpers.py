"""Helpers for the distributed tests: free ports, a 2-rank worker, torchrun runs, worker pids."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = ROOT / ".venv" / "bin" / "torchrun"
GLOO_TIMEOUT = timedelta(seconds=60)  # a collective mismatch fails the test in a minute


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------- the 2-rank engine test
TRAIN_N, TEST_N, GLOBAL_BATCH, EPOCHS = 196, 101, 40, 2  # last train batch: 36 (18 per rank)


def synthetic(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Small uint8 'images' whose class shows in their brightness, and int64 labels."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=generator)
    noise = torch.randint(0, 120, (n, 8, 8), generator=generator)
    images = (noise + labels[:, None, None] * 40).clamp(0, 255).to(torch.uint8)
    return images, labels


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 4))


def train_and_eval(rank: int, world: int, folder: Path) -> dict[str, Any]:
    """Train ``tiny_model`` on the synthetic split with global batch ``GLOBAL_BATCH`` over
    ``world`` ranks (one process when ``world == 1``), then evaluate on padded test shards
    with the loader's mask. Returns parameters and every metric."""
    from legoml.core import (
        CheckpointCallback,
        Context,
        Engine,
        MetricsCallback,
        make_supervised_eval_step,
        make_supervised_train_step,
    )
    from legoml.core.callbacks.checkpoint import atomic_torch_save
    from legoml.core.distributed import wrap_ddp
    from legoml.data import BatchLoader
    from legoml.metrics import MeanLoss, MultiClassAccuracy

    images, labels = synthetic(TRAIN_N, seed=1)
    loader = BatchLoader(
        images, labels, GLOBAL_BATCH // world, seed=3, rank=rank, world_size=world
    )
    model = tiny_model()
    ddp = wrap_ddp(model)
    optimizer = torch.optim.AdamW(ddp.parameters(), lr=0.02, weight_decay=0.01)
    context = Context(ddp, optimizer, nn.CrossEntropyLoss())
    def saver(path: Path, state: Any) -> None:  # records which rank wrote what
        with open(folder / "writes.txt", "a") as log:
            log.write(f"{rank} {path.name}\n")
        atomic_torch_save(path, state)

    checkpoints = CheckpointCallback(
        folder / "ckpt", saver, every_n_steps=5, every_n_epochs=None, keep_last=2
    )
    metrics = MetricsCallback({"accuracy": MultiClassAccuracy()}, loss=MeanLoss())
    engine = Engine(make_supervised_train_step(), context, [metrics, checkpoints])
    engine.loop(loader, max_epochs=EPOCHS)
    checkpoints.save(engine, context)  # the last step already has a file: no rank may wait alone

    # evaluation: even (padded) test shards, the padding masked out, counts summed over ranks
    test_images, test_labels = synthetic(TEST_N, seed=2)
    test = BatchLoader(
        test_images, test_labels, 16, shuffle=False, rank=rank, world_size=world
    )
    accuracy, unmasked, loss = MultiClassAccuracy(), MultiClassAccuracy(), MeanLoss()
    model.eval()
    step = make_supervised_eval_step()
    eval_context = Context(model, loss_fn=nn.CrossEntropyLoss(reduction="none"))
    for batch in test:
        output = step(engine, batch, eval_context)
        mask = test.valid_mask()
        accuracy.update(output.predictions, output.targets, mask=mask)
        unmasked.update(output.predictions, output.targets)
        assert output.loss is not None
        loss.update(output.loss, output.targets, mask=mask)
    for metric in (accuracy, unmasked, loss):
        metric.all_reduce()
    return {
        "params": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "train": dict(engine.state.metrics),
        "global_step": engine.state.global_step,
        "folder": str(folder),
        "test_accuracy": float(accuracy.compute()),
        "test_loss": float(loss.compute()),
        "test_counted": int(accuracy.state_dict()["total"].item()),
        "test_counted_unmasked": int(unmasked.state_dict()["total"].item()),
        "files": sorted(p.name for p in (folder / "ckpt").iterdir())
        if (folder / "ckpt").is_dir()
        else [],
    }


def join_as_rank(rank: int, world: int, port: int) -> None:
    """The environment torchrun would give rank ``rank`` of ``world`` (one thread each)."""
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)


def exit_without_teardown() -> None:
    """Skip interpreter teardown (see legoml_mnist.distributed.exit_process): gloo threads
    kept alive by DDP can abort the process during Python's finalization."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def ddp_worker(rank: int, world: int, port: int, folder: str) -> None:
    """One rank of the 2-process gloo test; writes ``result-<rank>.pt``."""
    from legoml.core.distributed import distributed_session

    join_as_rank(rank, world, port)
    out = Path(folder) / f"rank{rank}"
    out.mkdir(parents=True, exist_ok=True)
    with distributed_session(timeout=GLOO_TIMEOUT, device=torch.device("cpu")):
        result = train_and_eval(rank, world, Path(folder))
    torch.save(result, out / "result.pt")
    exit_without_teardown()


# ----------------------------------------------------------------- the app's sharded evaluation
def four_classes() -> Any:
    """A dataset node whose facts say four classes, like the synthetic splits."""
    from legoml_mnist import MNISTNode

    class FourClasses(MNISTNode, register=False):
        @property
        def classes(self) -> tuple[str, ...]:
            return ("a", "b", "c", "d")

    return dataclass(frozen=True)(FourClasses)()


def evaluate_shard(rank: int, world: int) -> dict[str, Any]:
    """The app's ``evaluate_split`` on the synthetic TEST_N split (batches of 16, no
    padding), counting the examples this rank's model actually saw."""
    from legoml.data import Split
    from legoml_mnist import ImageClassificationNode, LoaderNode, evaluate_split

    images, labels = synthetic(TEST_N, seed=2)
    model = tiny_model()
    seen = [0]
    model.register_forward_pre_hook(lambda module, args: seen.__setitem__(0, seen[0] + len(args[0])))
    report = evaluate_split(
        model,
        Split(images=images, labels=labels),
        task=ImageClassificationNode(),
        dataset=four_classes(),
        loader=LoaderNode(eval_batch_size=16),
        device=torch.device("cpu"),
        amp=None,
        channels_last=False,
        rank=rank,
        world_size=world,
    )
    return {"metrics": report.metrics, "confusion": report.confusion, "seen": seen[0]}


def eval_shard_worker(rank: int, world: int, port: int, folder: str) -> None:
    """One rank of the sharded-evaluation test; writes ``eval-<rank>.pt``."""
    from legoml.core.distributed import distributed_session

    join_as_rank(rank, world, port)
    with distributed_session(timeout=GLOO_TIMEOUT, device=torch.device("cpu")):
        result = evaluate_shard(rank, world)
    torch.save(result, Path(folder) / f"eval-{rank}.pt")
    exit_without_teardown()


# ----------------------------------------------------------------- the CLI under torchrun
def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("LEGOML_DATA_DIR", str(ROOT / "data"))
    env["LEGOML_LOG_LEVEL"] = "warning"
    env.update(extra)
    return env


def torchrun_args(nproc: int, args: Sequence[str]) -> list[str]:
    return [
        str(TORCHRUN), "--standalone", f"--nproc_per_node={nproc}",
        "-m", "legoml_mnist", "train", "--distributed", *args,
    ]


def run_cli(command: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, env=cli_env(), capture_output=True, text=True, check=False,
        timeout=timeout,
    )


def single_process_args(args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "legoml_mnist", "train", *args]


def run_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def scalar_rows(run_dir: Path) -> list[tuple[int, str, float]]:
    lines = (run_dir / "logs" / "scalars.csv").read_text().splitlines()
    assert lines[0] == "step,epoch,name,value,time"
    rows = [line.split(",") for line in lines[1:]]
    return [(int(r[0]), r[2], float(r[3])) for r in rows]


def meta(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "meta.json").read_text())
    return data


def model_params(checkpoint: Path) -> dict[str, torch.Tensor]:
    state = torch.load(checkpoint, weights_only=True)
    params: dict[str, torch.Tensor] = state["context"]["model"]
    return params


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(
        float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point()
    )


# ----------------------------------------------------------------- worker processes
def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(p) for p in text)
    return found


def worker_pid(launcher_pid: int, rank: int) -> int | None:
    """The pid of the torchrun worker whose environment says ``RANK=rank``."""
    for child in children(launcher_pid):
        try:
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ:
            return child
    return None


def wait_for(path_glob: str, root: Path, proc: subprocess.Popen[str], timeout: float) -> Path:
    """Poll until a file matching ``path_glob`` exists under ``root`` (the job still running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(root.glob(path_glob))
        if found:
            return found[0]
        if proc.poll() is not None:
            raise AssertionError(f"the job ended (rc={proc.returncode}) before {path_glob} appeared")
        time.sleep(0.05)
    raise AssertionError(f"{path_glob} did not appear within {timeout} s")


def stop_group(proc: subprocess.Popen[str]) -> None:
    """Kill the process group of a launcher this test started (cleanup after a failure)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
