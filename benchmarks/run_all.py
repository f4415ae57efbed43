"""``make bench``: every benchmark in one process run, side by side with its baseline.

Writes one JSON per benchmark and ``benchmarks/results/summary.json``, then prints a table.
Set ``LEGOML_BENCH_QUICK=1`` for a short smoke run (fewer seeds and classic epochs).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402

import bench_classic  # noqa: E402
import bench_end_to_end  # noqa: E402
import bench_engine  # noqa: E402
import bench_import  # noqa: E402
import bench_loader  # noqa: E402
import bench_train  # noqa: E402

RESULTS = HERE / "results"


def cpu_flags() -> list[str]:
    wanted = {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni"}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        if line.startswith("flags"):
            return sorted(wanted & set(line.split(":", 1)[1].split()))
    return []


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> int:
    quick = bool(os.environ.get("LEGOML_BENCH_QUICK"))
    started = time.time()
    train = bench_train.run(RESULTS, seeds=(0,) if quick else (0, 1, 2))
    classic = bench_classic.run(RESULTS, max_epochs=1 if quick else 6)
    engine = bench_engine.run(RESULTS)
    loader = bench_loader.run(RESULTS)
    imports = bench_import.run(RESULTS, repeats=3 if quick else 7)
    e2e = bench_end_to_end.run(RESULTS)

    ours, theirs = train["time_to_99_s"], classic["classic_time_to_99_s"]
    summary = {
        "time_to_99_s": ours,
        "classic_time_to_99_s": theirs,
        "time_to_99_speedup": (theirs / ours) if ours and theirs else None,
        "final_test_accuracy": train["final_test_accuracy"],
        "engine_overhead_ratio": engine["engine_overhead_ratio"],
        "engine_bare_ratio": engine["engine_bare_ratio"],
        "engine_overhead_ratio_vs_grads_to_none_hand_loop": engine[
            "engine_overhead_ratio_vs_grads_to_none_hand_loop"
        ],
        "loader_speedup": loader["loader_speedup"],
        "nn_import_overhead_ms": imports["nn_import_overhead_ms"],
        "peak_rss_mb": train["peak_rss_mb"],
        "end_to_end": {
            key: e2e[key]
            for key in (
                "wall_s", "train_s", "wall_over_train", "overhead_s", "phases", "peak_rss_mb",
                "vs_hand_wall", "vs_hand_overhead", "vs_hand_cpu",
                "vs_lightning_wall", "vs_lightning_overhead", "vs_lightning_cpu",
                "hand_wall_over_train", "lightning_wall_over_train",
                "load_average_before", "load_average_after",
            )
        }
        | {
            "hand_wall_s": e2e["legs"]["hand"]["wall_s"],
            "lightning_wall_s": e2e["legs"].get("lightning", {}).get("wall_s"),
            **({"lightning_note": e2e["lightning_note"]} if "lightning_note" in e2e else {}),
        },
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "torch_version": torch.__version__,
        "cpu_flags": cpu_flags(),
        "quick": quick,
        "bench_seconds": round(time.time() - started, 1),
    }
    if theirs is None:
        summary["classic_note"] = (
            f"the classic recipe did not reach 99.0% within {len(classic['classic_epoch_accuracies'])} "
            "epochs; time_to_99_speedup is a lower bound from its total training time"
        )
        total = sum(classic["classic_epoch_train_seconds"])
        summary["time_to_99_speedup_lower_bound"] = total / ours if ours else None
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_table(summary, classic)
    print()
    bench_end_to_end.print_table(e2e)
    return 0


def _fmt(value: object, spec: str, unit: str = "") -> str:
    return "n/a" if value is None else format(value, spec) + unit


def print_table(summary: dict[str, Any], classic: dict[str, Any]) -> None:
    e2e = summary["end_to_end"]
    rows = [
        ("time to 99% (LegoML default recipe)", _fmt(summary["time_to_99_s"], ".2f", " s")),
        ("time to 99% (classic recipe, hand loop)", _fmt(summary["classic_time_to_99_s"], ".2f", " s")),
        ("  classic accuracy per epoch", ", ".join(f"{a:.4f}" for a in classic["classic_epoch_accuracies"])),
        ("time-to-99 speedup", _fmt(summary["time_to_99_speedup"], ".1f", "x")),
        ("final test accuracy (median of seeds)", _fmt(summary["final_test_accuracy"], ".4f")),
        ("engine overhead vs hand loop", _fmt(summary["engine_overhead_ratio"], ".3f", "x")),
        ("  bare engine vs bare hand loop", _fmt(summary["engine_bare_ratio"], ".3f", "x")),
        (
            "  vs a hand loop clearing grads like the Engine",
            _fmt(summary["engine_overhead_ratio_vs_grads_to_none_hand_loop"], ".3f", "x"),
        ),
        ("BatchLoader vs torchvision DataLoader", _fmt(summary["loader_speedup"], ".0f", "x")),
        ("legoml.nn import over torch", _fmt(summary["nn_import_overhead_ms"], ".1f", " ms")),
        ("peak RSS of default training", _fmt(summary["peak_rss_mb"], ".0f", " MB")),
        ("end to end: legoml-mnist train wall / training", _fmt(e2e["wall_over_train"], ".2f", "x")),
        ("  legoml-mnist train vs hand-written script (wall)", _fmt(e2e["vs_hand_wall"], ".2f", "x")),
        ("  legoml-mnist train vs Lightning script (wall)", _fmt(e2e["vs_lightning_wall"], ".2f", "x")),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'benchmark':<{width}}  result")
    print("-" * (width + 20))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(f"\nresults in {RESULTS}/ (summary.json and one JSON per benchmark)")


if __name__ == "__main__":
    raise SystemExit(main())
