"""Does an EMA of the weights help the default ``legoml-mnist`` recipe? Raw vs EMA test accuracy.

For each seed the default recipe (``legoml_mnist.recipes.recipe()``, built with the app's own
pieces: loader, context, train step, callbacks, loop limits) trains once, with one
``EMACallback`` per variant attached (decays x warm-up x BatchNorm buffer handling). The
callbacks only read the weights, so every variant sees the very same training run and
budget; the raw weights and each average are then evaluated on the full 10k test split.

Prints one row per variant (per-seed accuracies and the median, and the median gain over the
raw weights) and writes ``benchmarks/results/ema_probe.json``.

    LEGOML_DATA_DIR=data LEGOML_MNIST_MIRROR=../shared/datasets/mnist \\
        .venv/bin/python benchmarks/ema_probe.py --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from pathlib import Path
from typing import Any

from legoml.core import EMACallback, Engine
from legoml.core.context import unwrap_model
from legoml_mnist.builders import build_context, loop_limits, prepare_process, train_callbacks
from legoml_mnist.evaluation import evaluate_split
from legoml_mnist.recipes import recipe

RESULTS = Path(__file__).parent / "results" / "ema_probe.json"


def variants(decays: list[float]) -> dict[str, EMACallback]:
    """One EMA per (decay, warm-up, buffers) combination, keyed by a short label."""
    return {
        f"ema {decay} warmup={'on' if warmup else 'off'} bn={buffers}": EMACallback(
            decay=decay, warmup=warmup, buffers=buffers
        )
        for decay, warmup, buffers in itertools.product(decays, (False, True), ("average", "copy"))
    }


def run_seed(seed: int, decays: list[float], threads: int | None) -> dict[str, Any]:
    """Train the default recipe once for ``seed``; test accuracy of raw and EMA weights."""
    node = recipe().fork(seed=seed, progress=False, log_every_steps=10_000, threads=threads)
    task = node.task
    device, amp = prepare_process(node.seed, node.device, node.precision, node.threads)
    train_split, test_split = node.dataset.build()
    loader = node.loader.build(
        train_split, task.scaling(node.dataset), train=True, seed=node.seed, device=device
    )
    limits = loop_limits(node.epochs, len(loader))
    context = build_context(node, device, amp, limits["max_steps"])
    step = task.train_step(
        amp=amp, clip_grad_norm=node.clip_grad_norm, channels_last=node.channels_last
    )
    emas = variants(decays)
    engine = Engine(step, context, [*train_callbacks(node, context), *emas.values()])
    started = time.perf_counter()
    state = engine.loop(loader, **limits)
    seconds = time.perf_counter() - started
    model = unwrap_model(context.model)

    def accuracy() -> float:
        report = evaluate_split(
            model, test_split, task=task, dataset=node.dataset, loader=node.loader,
            device=device, amp=amp, channels_last=node.channels_last,
        )
        return float(report.metrics["test/accuracy"])

    results = {"raw": accuracy()}
    for label, ema in emas.items():
        with ema.swapped(model):
            results[label] = accuracy()
    return {
        "seed": seed,
        "steps": state.global_step,
        "train_seconds_with_all_emas": round(seconds, 2),
        "accuracy": results,
    }


def table(runs: list[dict[str, Any]]) -> str:
    seeds = [run["seed"] for run in runs]
    head = " | ".join(f"seed {seed}" for seed in seeds)
    lines = [
        f"| weights | {head} | median | median gain vs raw |",
        "| --- |" + " --- |" * (len(seeds) + 2),
    ]
    raw_median = statistics.median(run["accuracy"]["raw"] for run in runs)
    for label in runs[0]["accuracy"]:
        values = [run["accuracy"][label] for run in runs]
        median = statistics.median(values)
        gains = [value - run["accuracy"]["raw"] for value, run in zip(values, runs, strict=True)]
        cells = " | ".join(f"{100 * value:.2f}%" for value in values)
        gain = "" if label == "raw" else f"{100 * statistics.median(gains):+.2f} pp"
        lines.append(f"| {label} | {cells} | {100 * median:.2f}% | {gain} |")
    lines.append(f"\n(raw median {100 * raw_median:.2f}%; gain = median of per-seed differences)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--decays", default="0.98,0.99,0.995,0.999")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    decays = [float(decay) for decay in args.decays.split(",")]
    runs = [run_seed(seed, decays, args.threads) for seed in seeds]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"decays": decays, "runs": runs}, indent=2) + "\n")
    print(table(runs))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
