"""A library user's 2-process DDP script that returns normally (no ``os._exit``) exits 0
without gloo's teardown abort ("terminate called without an active exception").

Before ``distributed_session`` detached DDP from the process group on exit, about one
pair in five aborted (SIGABRT, rc 134) on this machine."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from dist_helpers import free_port

REPETITIONS, CONCURRENT_PAIRS, TIMEOUT_S = 20, 4, 120

SCRIPT = """
import os, sys
from datetime import timedelta
import torch
from torch import nn
from legoml.core.distributed import distributed_session, wrap_ddp
rank, port = sys.argv[1], sys.argv[2]
os.environ.update(RANK=rank, WORLD_SIZE="2", LOCAL_RANK=rank,
                  MASTER_ADDR="127.0.0.1", MASTER_PORT=port, LEGOML_LOG_LEVEL="warning")
torch.set_num_threads(1)
with distributed_session(timeout=timedelta(seconds=60), device=torch.device("cpu")):
    model = wrap_ddp(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(4, 8)).sum().backward()
        optimizer.step()
"""


def run_pair(_: int) -> list[tuple[int, str]]:
    """Both ranks of one job: (return code, stderr) each."""
    port = str(free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(rank), port],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        for rank in (0, 1)
    ]
    results = []
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        results.append((proc.returncode, err))
    return results


def test_ddp_script_exits_cleanly_without_os_exit() -> None:
    with ThreadPoolExecutor(CONCURRENT_PAIRS) as pool:
        pairs = list(pool.map(run_pair, range(REPETITIONS)))
    failures = [
        (i, rank, code, err[-300:])
        for i, pair in enumerate(pairs)
        for rank, (code, err) in enumerate(pair)
        if code != 0 or "terminate called" in err
    ]
    assert not failures, f"{len(failures)} rank exits failed of {2 * REPETITIONS}: {failures[:3]}"
