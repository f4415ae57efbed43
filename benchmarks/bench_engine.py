"""Engine overhead: a hand-written PyTorch loop vs the legoml Engine on a tiny model.

Model Linear(784 -> 10), SGD, cross-entropy, batches of 64 held in memory (no data loading
cost), CPU, one torch thread (steadier timings on a shared machine). Five variants run the same
math on the same model and optimizer (shared, so memory placement is identical):

- ``hand_bare``: zero_grad / forward / loss / backward / step.
- ``engine_bare``: ``Engine(make_supervised_train_step(), context)`` with no callbacks.
- ``hand_full``: the hand loop doing by hand what the default callbacks do: accuracy and mean
  loss accumulated on-device each step and computed per epoch, a NaN/Inf loss check, a tqdm bar
  (to os.devnull, so its formatting cost is paid) updated every step with the loss shown every
  50 steps, the step loss and learning rate written to a legoml.track run every 50 steps and
  the epoch metrics at the end (through the same ``Run.log_scalars``), per-step timing,
  structlog lines at run start, epoch end and run end (each repeat is one run of one epoch,
  like ``engine.loop(batches, max_epochs=1)``).
- ``engine_default``: the Engine with MetricsCallback (accuracy + mean loss), NonFiniteLossGuard,
  ProgressBarCallback (tqdm to os.devnull), LoggingCallback, TimerCallback and legoml.track's
  TrackingCallback (every 50 steps, into a temporary run directory).
- ``hand_full_grads_to_none``: ``hand_full`` clearing gradients the way the Engine's ready-made
  step does (``p.grad = None`` for each parameter instead of ``optimizer.zero_grad()``, whose
  profiler range costs ~7 us of Python per call). The Engine against this loop is the cost of
  the framework alone, with that saving taken out.

The variants run interleaved (rotating order) in one process; each repeat is one epoch of
``STEPS`` steps; the figure is the median per-step time over the repeats, after a warm-up.
Ratios use process CPU time (this process's own work: on a shared machine other processes'
load does not leak in); the wall-clock ratios are reported beside them.
``engine_overhead_ratio`` = engine_default / hand_full (same work, with and without the Engine);
``engine_bare_ratio`` = engine_bare / hand_bare. Goal: <= 1.03.
``engine_overhead_ratio_vs_grads_to_none_hand_loop`` = engine_default / hand_full_grads_to_none.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
import torch
import torch.nn.functional as F
from tqdm import tqdm

from legoml.core import (
    Context,
    Engine,
    LoggingCallback,
    MetricsCallback,
    NonFiniteLossGuard,
    ProgressBarCallback,
    TimerCallback,
    make_supervised_train_step,
)
from legoml.track import Run, TrackingCallback
from legoml.track import run as start_run

STEPS = 200
REPEATS = 120
BATCH = 64
POSTFIX_EVERY = 50


class Accuracy:
    """Top-1 accuracy with on-device counts (what legoml.metrics does, inlined)."""

    name = "accuracy"

    def reset(self) -> None:
        self.correct = torch.zeros((), dtype=torch.long)
        self.total = 0

    def update(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        self.correct += (predictions.argmax(dim=1) == targets).sum()
        self.total += targets.shape[0]

    def compute(self) -> float:
        return float(self.correct) / max(self.total, 1)


class MeanLoss:
    def reset(self) -> None:
        self.sum = torch.zeros(())
        self.count = 0

    def update(self, loss: torch.Tensor, targets: torch.Tensor) -> None:
        n = targets.shape[0]
        self.sum += loss * n
        self.count += n

    def compute(self) -> float:
        return float(self.sum) / max(self.count, 1)


def _logger(devnull: Any) -> Any:
    processors = structlog.get_config()["processors"]
    return structlog.wrap_logger(structlog.PrintLogger(devnull), processors=processors)


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [
        (torch.randn(BATCH, 784, generator=g), torch.randint(0, 10, (BATCH,), generator=g))
        for _ in range(STEPS)
    ]


_SHARED: dict[str, Any] = {}


def _model_and_optimizer(base: torch.nn.Module) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    # One model and optimizer for every variant: separate copies would sit at different
    # memory addresses, and alignment alone can shift a tiny matmul by a few percent.
    if _SHARED.get("base") is not base:
        _SHARED.update(base=base, optimizer=torch.optim.SGD(base.parameters(), lr=0.01))
    optimizer: torch.optim.Optimizer = _SHARED["optimizer"]
    return base, optimizer


def _hand_bare(base: torch.nn.Module, batches: list[Any], devnull: Any) -> Callable[[], None]:
    model, optimizer = _model_and_optimizer(base)

    def epoch() -> None:
        model.train()
        for x, y in batches:
            optimizer.zero_grad(set_to_none=True)
            out = model(x)
            loss = F.cross_entropy(out, y)
            loss.backward()
            optimizer.step()

    return epoch


def _hand_full(
    base: torch.nn.Module,
    batches: list[Any],
    devnull: Any,
    tracker: Run,
    grads_to_none: bool = False,
) -> Callable[[], None]:
    model, optimizer = _model_and_optimizer(base)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    log = _logger(devnull)
    state = {"epoch": 0}

    def epoch() -> None:
        # Each call is one run of one epoch, as engine.loop(batches, max_epochs=1) is:
        # the same three log lines (run start, epoch, run end) the LoggingCallback writes.
        state["epoch"] += 1
        log.info("run_start", max_epochs=1, epoch_length=len(batches), resumed_at_step=None)
        model.train()
        correct = torch.zeros((), dtype=torch.long)
        loss_sum = torch.zeros(())
        seen = 0
        step_time = 0.0
        start = time.perf_counter()
        bar = tqdm(
            total=len(batches), file=devnull, desc=f"epoch {state['epoch']}", dynamic_ncols=True
        )
        for i, (x, y) in enumerate(batches, 1):
            t0 = time.perf_counter()
            if grads_to_none:  # what the Engine's ready-made step does
                for p in params:
                    p.grad = None
            else:
                optimizer.zero_grad(set_to_none=True)
            out = model(x)
            loss = F.cross_entropy(out, y)
            loss.backward()
            optimizer.step()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"loss is {value} at step {i}")
            correct += (out.detach().argmax(dim=1) == y).sum()
            loss_sum += loss.detach() * y.shape[0]
            seen += y.shape[0]
            step_time += time.perf_counter() - t0
            bar.update(1)
            if i % POSTFIX_EVERY == 0:
                bar.set_postfix(loss=f"{value:.4f}", refresh=False)
                lr = float(optimizer.param_groups[0]["lr"])
                tracker.log_scalars({"train/step_loss": value, "train/lr": lr}, i, state["epoch"])
        metrics = {"train/accuracy": float(correct) / seen, "train/loss": float(loss_sum) / seen}
        tracker.log_scalars(metrics, len(batches), state["epoch"])
        bar.set_postfix(metrics, refresh=False)
        bar.close()
        elapsed = time.perf_counter() - start
        log.info(
            "epoch",
            epoch=state["epoch"],
            metrics=metrics,
            step=step_time / len(batches),
            seconds=elapsed,
        )
        log.info("run_end", epoch=state["epoch"], terminated=False, seconds=round(elapsed, 3))

    return epoch


def _engine(
    base: torch.nn.Module, batches: list[Any], devnull: Any, tracker: Run | None
) -> Callable[[], None]:
    model, optimizer = _model_and_optimizer(base)
    context = Context(model, optimizer, F.cross_entropy)
    engine = Engine(make_supervised_train_step(), context)
    if tracker is not None:
        engine.callbacks += [
            MetricsCallback([Accuracy()], loss=MeanLoss()),
            NonFiniteLossGuard(),
            ProgressBarCallback(file=devnull, postfix_every=POSTFIX_EVERY),
            LoggingCallback(logger=_logger(devnull)),
            TimerCallback(),
            TrackingCallback(tracker, POSTFIX_EVERY, loss_name="train/step_loss"),
        ]

    def epoch() -> None:
        engine.loop(batches, max_epochs=1)

    return epoch


def measure(repeats: int = REPEATS) -> dict[str, Any]:
    """Median per-step seconds of each variant, interleaved in this process."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        base = torch.nn.Linear(784, 10)
        batches = _batches()
        with (
            open(os.devnull, "w") as devnull,
            tempfile.TemporaryDirectory() as root,
            start_run("bench-engine", root=root) as tracker,
        ):
            variants = {
                "hand_bare": _hand_bare(base, batches, devnull),
                "engine_bare": _engine(base, batches, devnull, None),
                "hand_full": _hand_full(base, batches, devnull, tracker),
                "engine_default": _engine(base, batches, devnull, tracker),
                "hand_full_grads_to_none": _hand_full(
                    base, batches, devnull, tracker, grads_to_none=True
                ),
            }
            names = list(variants)
            for name in names:  # warm-up: allocator, first-call paths
                variants[name]()
            wall: dict[str, list[float]] = {name: [] for name in names}
            cpu: dict[str, list[float]] = {name: [] for name in names}
            for r in range(repeats):
                order = names[r % len(names) :] + names[: r % len(names)]
                for name in order:
                    cpu_start, wall_start = time.process_time(), time.perf_counter()
                    variants[name]()
                    wall[name].append((time.perf_counter() - wall_start) / STEPS)
                    cpu[name].append((time.process_time() - cpu_start) / STEPS)
    finally:
        torch.set_num_threads(threads)
    cpu_step = {name: statistics.median(values) for name, values in cpu.items()}
    wall_step = {name: statistics.median(values) for name, values in wall.items()}
    return {
        "engine_overhead_ratio": cpu_step["engine_default"] / cpu_step["hand_full"],
        "engine_bare_ratio": cpu_step["engine_bare"] / cpu_step["hand_bare"],
        "engine_overhead_ratio_wall": wall_step["engine_default"] / wall_step["hand_full"],
        "engine_bare_ratio_wall": wall_step["engine_bare"] / wall_step["hand_bare"],
        "engine_overhead_ratio_paired_wall": _paired(wall, "engine_default", "hand_full"),
        "engine_overhead_ratio_min_cpu": min(cpu["engine_default"]) / min(cpu["hand_full"]),
        "engine_bare_ratio_min_cpu": min(cpu["engine_bare"]) / min(cpu["hand_bare"]),
        "engine_overhead_ratio_vs_grads_to_none_hand_loop": cpu_step["engine_default"]
        / cpu_step["hand_full_grads_to_none"],
        "default_callbacks_vs_bare_hand_loop": cpu_step["engine_default"] / cpu_step["hand_bare"],
        "per_step_us_cpu": {name: value * 1e6 for name, value in cpu_step.items()},
        "per_step_us_wall": {name: value * 1e6 for name, value in wall_step.items()},
        "timing": "ratios of median per-step process CPU time (wall-clock ratios alongside; "
        "CPU time is what this process spent, so neighbours on a shared machine do not count)",
        "steps_per_repeat": STEPS,
        "repeats": repeats,
        "batch_size": BATCH,
        "model": "Linear(784 -> 10), SGD, cross-entropy",
        "device": "cpu",
        "torch_threads": 1,
        "torch_version": torch.__version__,
        "goal": "engine_overhead_ratio <= 1.03",
    }


def _paired(samples: dict[str, list[float]], a: str, b: str) -> float:
    """Median of per-round ratios: steadier than a ratio of medians when load drifts."""
    return statistics.median(x / y for x, y in zip(samples[a], samples[b], strict=True))


def run(results_dir: Path) -> dict[str, Any]:
    """Measure, write ``results_dir/engine_overhead.json`` atomically, return the figures."""
    result = measure()
    results_dir.mkdir(parents=True, exist_ok=True)
    target = results_dir / "engine_overhead.json"
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, target)
    return result


if __name__ == "__main__":
    figures = run(Path(__file__).resolve().parent / "results")
    for name, micros in figures["per_step_us_cpu"].items():
        wall_us = figures["per_step_us_wall"][name]
        print(f"{name:24s} {micros:9.1f} us/step CPU  {wall_us:9.1f} us/step wall")
    print(
        f"engine_overhead_ratio (default callbacks vs same-work hand loop): "
        f"{figures['engine_overhead_ratio']:.3f} CPU, {figures['engine_overhead_ratio_wall']:.3f} wall"
    )
    print(
        f"engine_bare_ratio     (no callbacks vs bare hand loop):           "
        f"{figures['engine_bare_ratio']:.3f} CPU, {figures['engine_bare_ratio_wall']:.3f} wall"
    )
    print(
        f"engine vs the same hand loop clearing grads as the Engine does:  "
        f"{figures['engine_overhead_ratio_vs_grads_to_none_hand_loop']:.3f} CPU"
    )
