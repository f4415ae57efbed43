"""Import cost of each LegoML package over ``import torch`` (fresh interpreters, median)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

PACKAGES = ["legoml.core", "legoml.nn", "legoml.data", "legoml.metrics", "legoml.track", "legoml_mnist"]
PROBE = (
    "import time, torch\n"
    "t = time.perf_counter()\n"
    "import {module}\n"
    "print(time.perf_counter() - t)\n"
)


def import_overhead_ms(module: str, repeats: int = 7) -> float:
    """Median milliseconds to import ``module`` in a fresh interpreter that has torch."""
    samples = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", PROBE.format(module=module)],
            capture_output=True, text=True, check=True,
        ).stdout
        samples.append(float(out.strip().splitlines()[-1]) * 1000)
    return statistics.median(samples)


def run(results_dir: Path, repeats: int = 7) -> dict[str, object]:
    overheads = {m: round(import_overhead_ms(m, repeats), 1) for m in PACKAGES}
    result: dict[str, object] = {
        "import_overhead_ms": overheads,
        "nn_import_overhead_ms": overheads["legoml.nn"],
        "repeats": repeats,
        "method": "median over fresh interpreters of the time to import the package after torch",
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "imports.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    print(json.dumps(run(Path(__file__).parent / "results"), indent=2))
