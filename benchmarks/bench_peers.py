"""Peers: the tiny-model loop as a hand loop, in PyTorch-Ignite, in Lightning and in LegoML.

The same microbench as ``bench_engine.py`` (Linear 784 -> 10, SGD, cross-entropy, 200
in-memory batches of 64, CPU, one torch thread), bare loops only: no progress bar, logger
or checkpoints in any framework. Each framework runs in its own child process, because
importing Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` for the whole process (and
with it a CUDA probe in every optimizer step of a CUDA build on a machine without a GPU).

Inside a child, the framework trains for ``REPEATS`` epochs in one run; at the end of each
of its epochs a hook runs one epoch of a bare hand loop on the same model, optimizer and
batches, so the two alternate in one process under the same conditions. The figure is the
framework's median per-step process CPU time over the hand loop's, both measured there.

``make bench-peers`` builds ``.venv-peers`` (torch, pytorch-ignite, lightning and the
LegoML packages) and runs this file; the peers are never a dependency of any LegoML
package. Results: ``results/peers.json``, and a ``peers`` entry in ``results/summary.json``
when that file exists.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import BATCH, STEPS, _batches, _hand_bare, _model_and_optimizer  # noqa: E402

REPEATS = 60
WARMUP = 3
FRAMEWORKS = ("legoml", "ignite", "lightning")
RESULTS = Path(__file__).resolve().parent / "results"

Mark = Callable[[], None]


class _Timer:
    """Times the framework's epochs and runs a hand-loop epoch after each one."""

    def __init__(self, hand_epoch: Callable[[], None]) -> None:
        self.hand_epoch = hand_epoch
        self.framework: list[float] = []
        self.hand: list[float] = []
        self._start = 0.0

    def epoch_started(self) -> None:
        self._start = time.process_time()

    def epoch_ended(self) -> None:
        self.framework.append((time.process_time() - self._start) / STEPS)
        start = time.process_time()
        self.hand_epoch()
        self.hand.append((time.process_time() - start) / STEPS)


def _run_legoml(model: torch.nn.Module, optimizer: Any, batches: list[Any], timer: _Timer) -> str:
    from legoml.core import Context, Engine, Events, make_supervised_train_step

    engine = Engine(make_supervised_train_step(), Context(model, optimizer, F.cross_entropy))
    engine.add_event_handler(Events.EPOCH_START, lambda e, c: timer.epoch_started())
    engine.add_event_handler(Events.EPOCH_END, lambda e, c: timer.epoch_ended())
    engine.loop(batches, max_epochs=REPEATS)
    return "Engine(make_supervised_train_step())"


def _run_ignite(model: torch.nn.Module, optimizer: Any, batches: list[Any], timer: _Timer) -> str:
    import ignite
    from ignite.engine import Events, create_supervised_trainer

    trainer = create_supervised_trainer(model, optimizer, F.cross_entropy)
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: timer.epoch_started())
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: timer.epoch_ended())
    trainer.run(batches, max_epochs=REPEATS)
    return f"pytorch-ignite {ignite.__version__} create_supervised_trainer"


def _run_lightning(
    model: torch.nn.Module, optimizer: Any, batches: list[Any], timer: _Timer
) -> str:
    import lightning

    class Module(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            inputs, targets = batch
            return F.cross_entropy(self.model(inputs), targets)

        def configure_optimizers(self) -> Any:
            return optimizer

    class Hooks(lightning.Callback):
        def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
            timer.epoch_started()

        def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
            timer.epoch_ended()

    trainer = lightning.Trainer(
        max_epochs=REPEATS,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[Hooks()],
    )
    # A plain list would be read as a list of data loaders: hand it over as one iterable.
    trainer.fit(Module(), train_dataloaders=_OneLoader(batches))
    return f"lightning {lightning.__version__} Trainer.fit (no logger, bar or checkpoints)"


class _OneLoader:
    """The in-memory batches as a single re-iterable loader with a length."""

    def __init__(self, batches: list[Any]) -> None:
        self.batches = batches

    def __iter__(self) -> Any:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


_RUNNERS = {"legoml": _run_legoml, "ignite": _run_ignite, "lightning": _run_lightning}


def measure_one(framework: str) -> dict[str, Any]:
    """In this process: the framework's and the hand loop's median per-step CPU time."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, optimizer = _model_and_optimizer(torch.nn.Linear(784, 10))  # shared with the hand loop
    batches = _batches()
    timer = _Timer(_hand_bare(model, batches, None))
    what = _RUNNERS[framework](model, optimizer, batches, timer)
    ours = statistics.median(timer.framework[WARMUP:])
    hand = statistics.median(timer.hand[WARMUP:])
    return {
        "framework": framework,
        "what": what,
        "ratio_vs_hand_loop": ours / hand,
        "per_step_us_cpu": ours * 1e6,
        "hand_loop_per_step_us_cpu": hand * 1e6,
        "epochs": len(timer.framework),
        "nvml_cuda_check_env": os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK"),
    }


def run(results_dir: Path = RESULTS) -> dict[str, Any]:
    """One child process per framework; write ``peers.json`` (and into ``summary.json``)."""
    rows = []
    for framework in FRAMEWORKS:
        child = subprocess.run(
            [sys.executable, __file__, "--child", framework],
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode != 0:
            tail = (child.stderr.strip().splitlines() or ["no output"])[-1]
            rows.append({"framework": framework, "error": tail})
            continue
        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    result = {
        "rows": rows,
        "model": "Linear(784 -> 10), SGD, cross-entropy",
        "batch_size": BATCH,
        "steps_per_epoch": STEPS,
        "epochs": REPEATS,
        "torch_threads": 1,
        "torch_version": torch.__version__,
        "timing": "median per-step process CPU time over epochs after the first "
        f"{WARMUP}; each framework alternates with a hand loop in its own process",
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    _write_json(results_dir / "peers.json", result)
    summary_path = results_dir / "summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        summary["peers"] = {
            row["framework"]: row.get("ratio_vs_hand_loop", row.get("error")) for row in rows
        }
        _write_json(summary_path, summary)
    return result


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def print_table(result: dict[str, Any]) -> None:
    print(f"{'loop (tiny model, 1 thread)':<34} {'us/step':>9} {'hand loop':>10} {'ratio':>7}")
    print("-" * 64)
    for row in result["rows"]:
        if "error" in row:
            print(f"{row['framework']:<34} failed: {row['error']}")
            continue
        print(
            f"{row['framework']:<34} {row['per_step_us_cpu']:9.1f} "
            f"{row['hand_loop_per_step_us_cpu']:10.1f} {row['ratio_vs_hand_loop']:6.2f}x"
        )
    print(f"\nresults in {RESULTS}/peers.json")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(measure_one(sys.argv[2])))
    else:
        print_table(run())
