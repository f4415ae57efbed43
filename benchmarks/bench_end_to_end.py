"""End to end: the whole ``legoml-mnist train`` process beside a hand-written PyTorch
script and a Lightning ``Trainer.fit`` script of the same recipe.

Each leg is a fresh process, timed from ``Popen`` to exit (``wait4`` gives its CPU time and
peak RSS). Legs run interleaved (each round starting with the next leg) after one warm-up
that reads the data files and imports torch in each interpreter, so the page cache is warm
and a change in the machine's load hits every leg alike. The phase breakdown comes from the
processes themselves: the app writes its phase clock to ``$LEGOML_PROFILE`` (see
``legoml_mnist.logs``), the two scripts print theirs; ``exit`` is what is left of the wall
time (the final prints and interpreter teardown).

The Lightning leg runs with ``.venv-peers/bin/python`` (``make .venv-peers/.installed``);
without that venv it is skipped with a note. ``LEGOML_BENCH_QUICK=1``: one round.
Writes ``results/end_to_end.json``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
LEGS = ("legoml", "hand", "lightning")


def _legoml_command(runs_root: Path) -> list[str]:
    script = Path(sys.executable).with_name("legoml-mnist")  # the console script `make train` runs
    head = [str(script)] if script.exists() else [sys.executable, "-m", "legoml_mnist"]
    return [*head, "train", "--runs-root", str(runs_root)]


def _environment(profile: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("LEGOML_DATA_DIR", str(ROOT / "data"))
    env["LEGOML_PROFILE"] = str(profile)
    return env


def _timed(cmd: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run ``cmd``; wall seconds, CPU seconds, peak RSS and its stdout."""
    with log.open("w+") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0)
        text = out.read()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{cmd[0]} {' '.join(cmd[1:3])} failed (exit {code}):\n{text[-3000:]}")
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "text": text,
    }


def _last_json(text: str) -> dict[str, Any]:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    raise RuntimeError(f"no JSON result line in the output:\n{text[-2000:]}")


def run_leg(leg: str, work: Path, index: int) -> dict[str, Any]:
    """One fresh process of ``leg``: wall, CPU, peak RSS, its phases and accuracy."""
    out_dir = work / f"{leg}-{index}"
    profile = work / f"{leg}-{index}.profile.json"
    env = _environment(profile)
    if leg == "legoml":
        cmd = _legoml_command(out_dir)
    elif leg == "hand":
        cmd = [sys.executable, str(HERE / "e2e_hand.py"), str(out_dir)]
    else:
        cmd = [str(PEERS_PYTHON), str(HERE / "e2e_lightning.py"), str(out_dir)]
    timed = _timed(cmd, env, work / f"{leg}-{index}.log")
    if leg == "legoml":
        report = json.loads(profile.read_text())
        accuracy = report.get("final_metrics", {}).get("test/accuracy")
    else:
        report = _last_json(timed["text"])
        accuracy = report.get("test_accuracy")
    phases = {k: float(v) for k, v in report["phases"].items()}
    phases["exit"] = max(0.0, timed["wall_s"] - sum(phases.values()))
    return {
        "wall_s": timed["wall_s"],
        "cpu_s": timed["cpu_s"],
        "peak_rss_mb": timed["peak_rss_mb"],
        "train_s": float(report["train_seconds"]),
        "test_accuracy": accuracy,
        "phases": phases,
        "phases_cpu": report.get("phases_cpu"),
    }


def _warm_up(legs: list[str]) -> None:
    """Read the data files and import torch once per interpreter: a warm page cache."""
    data = Path(os.environ.get("LEGOML_DATA_DIR") or ROOT / "data") / "mnist"
    for path in sorted(data.rglob("*")):
        if path.is_file():
            path.read_bytes()
    pythons = {sys.executable} | ({str(PEERS_PYTHON)} if "lightning" in legs else set())
    for python in sorted(pythons):
        subprocess.run([python, "-c", "import torch, torch._dynamo"], check=True, cwd=ROOT)


def _median_leg(rows: list[dict[str, Any]]) -> dict[str, Any]:
    names = list(rows[0]["phases"])
    return {
        "wall_s": statistics.median(r["wall_s"] for r in rows),
        "cpu_s": statistics.median(r["cpu_s"] for r in rows),
        "train_s": statistics.median(r["train_s"] for r in rows),
        # outside the training loop: far less sensitive to a busy neighbour than the loop
        "overhead_s": statistics.median(r["wall_s"] - r["train_s"] for r in rows),
        "best_wall_s": min(r["wall_s"] for r in rows),
        "best_train_s": min(r["train_s"] for r in rows),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in rows),
        "test_accuracy": [r["test_accuracy"] for r in rows],
        "phases": {n: round(statistics.median(r["phases"].get(n, 0.0) for r in rows), 3) for n in names},
        "runs": [{k: v for k, v in r.items() if k != "phases_cpu"} for r in rows],
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def run(results_dir: Path = RESULTS, repeats: int | None = None) -> dict[str, Any]:
    quick = bool(os.environ.get("LEGOML_BENCH_QUICK"))
    repeats = repeats or (1 if quick else 3)
    legs = [leg for leg in LEGS if leg != "lightning" or PEERS_PYTHON.exists()]
    load_before = os.getloadavg()
    _warm_up(legs)
    rows: dict[str, list[dict[str, Any]]] = {leg: [] for leg in legs}
    with tempfile.TemporaryDirectory(prefix="legoml-e2e-") as tmp:
        for index in range(repeats):
            for k in range(len(legs)):  # each round starts with the next leg
                leg = legs[(index + k) % len(legs)]
                rows[leg].append(run_leg(leg, Path(tmp), index))
    summary = {leg: _median_leg(found) for leg, found in rows.items()}
    ours = summary["legoml"]
    hand = summary.get("hand")
    peer = summary.get("lightning")
    result: dict[str, Any] = {
        "legs": summary,
        "wall_s": ours["wall_s"],
        "train_s": ours["train_s"],
        "phases": ours["phases"],
        "peak_rss_mb": ours["peak_rss_mb"],
        "wall_over_train": _ratio(ours["wall_s"], ours["train_s"]),
        "overhead_s": ours["overhead_s"],
        "vs_hand_wall": _ratio(ours["wall_s"], hand["wall_s"] if hand else None),
        "vs_hand_overhead": _ratio(ours["overhead_s"], hand["overhead_s"] if hand else None),
        "vs_lightning_overhead": _ratio(ours["overhead_s"], peer["overhead_s"] if peer else None),
        "vs_hand_cpu": _ratio(ours["cpu_s"], hand["cpu_s"] if hand else None),
        "vs_lightning_wall": _ratio(ours["wall_s"], peer["wall_s"] if peer else None),
        "vs_lightning_cpu": _ratio(ours["cpu_s"], peer["cpu_s"] if peer else None),
        "hand_wall_over_train": _ratio(hand["wall_s"], hand["train_s"]) if hand else None,
        "lightning_wall_over_train": _ratio(peer["wall_s"], peer["train_s"]) if peer else None,
        "repeats": repeats,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "method": "fresh process per run, Popen to exit, warm page cache, legs interleaved, "
        "median per leg; phases from each process's own clock; cpu_s = user + system of the child",
    }
    if peer is None:
        result["lightning_note"] = (
            f"Lightning leg skipped: {PEERS_PYTHON} is missing (build it with "
            "`make .venv-peers/.installed`, then run this script again)"
        )
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "end_to_end.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def print_table(result: dict[str, Any]) -> None:
    print(f"{'leg':<10} {'wall s':>7} {'train s':>8} {'wall/train':>10} {'outside s':>9} {'cpu s':>7} "
          f"{'RSS MB':>7}  phases (s)")
    for leg, row in result["legs"].items():
        phases = " ".join(f"{k} {v:.2f}" for k, v in row["phases"].items())
        print(f"{leg:<10} {row['wall_s']:7.2f} {row['train_s']:8.2f} {row['wall_s'] / row['train_s']:10.2f} "
              f"{row['overhead_s']:9.2f} {row['cpu_s']:7.2f} {row['peak_rss_mb']:7.0f}  {phases}")
    print(f"load average before / after: {result['load_average_before']} / {result['load_average_after']}")
    for key in ("vs_hand_wall", "vs_hand_overhead", "vs_hand_cpu", "vs_lightning_wall",
                "vs_lightning_overhead", "vs_lightning_cpu"):
        value = result.get(key)
        print(f"legoml {key.replace('_', ' ')}: {'n/a' if value is None else f'{value:.2f}x'}")
    if "lightning_note" in result:
        print(result["lightning_note"])


if __name__ == "__main__":
    print_table(run())
