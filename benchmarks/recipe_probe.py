"""Time-to-99% MNIST recipe probe: plain PyTorch, in-memory data, every knob on the command line.

Each run trains one configuration on the 60k MNIST training images and evaluates the full
10k test set at every epoch boundary and at the end of the (possibly fractional) schedule.
Only training seconds are counted (evaluation excluded). One JSON line per run goes to
stdout: the config, train seconds, steady-state ms/step, test accuracy per evaluation and
the time at which 99.0% was first reached.

Sweeps: ``--sweep key=v1,v2`` (repeatable) builds the cartesian product of configurations;
runs are interleaved (for each seed, every configuration in turn) so that machine noise
falls on all of them alike. Environment variables that must be set before the process
starts (``MALLOC_*``) are compared by running this script in separate processes.

Architecture spec (``--arch``), comma-separated tokens applied in order:
``c16`` conv 3x3 pad 1 to 16 channels (+BatchNorm unless ``--no-bn``) + ReLU;
``c16k5s2p0`` the same with kernel 5, stride 2, padding 0; a trailing ``m`` (``c32m``)
max-pools right after the conv, before BatchNorm and ReLU (4x less of both); ``p`` max-pool 2;
``a`` avg-pool 2; ``g`` global average pool; ``d0.25`` dropout; ``f128`` flatten (if
needed) + linear 128 + ReLU. A final linear layer to 10 classes is always appended.

Example: ``.venv/bin/python benchmarks/recipe_probe.py --arch c16,p,c32,p,f128 --epochs 1
--precision bf16 --channels-last --seeds 0,1,2``.
"""

from __future__ import annotations

import argparse
import ctypes
import itertools
import json
import os
import re
import resource
import statistics
import time
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ProbeConfig", "build_model", "train", "main"]

MEAN = 0.1307
STD = 0.3081
TARGET = 0.99
_TOKEN = re.compile(r"^c(\d+)(?:k(\d+))?(?:s(\d+))?(?:p(\d+))?(m?)$")


@dataclass(frozen=True)
class ProbeConfig:
    """Every knob of one training run."""

    arch: str = "c16,c32,p,f128"
    bn: bool = True
    batch: int = 128
    epochs: float = 1.5
    optimizer: str = "adamw"  # adamw | adam | sgd
    lr: float = 4e-3
    wd: float = 5e-4
    momentum: float = 0.9
    schedule: str = "onecycle"  # onecycle | constant
    pct_start: float = 0.25
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    anneal: Literal["cos", "linear"] = "cos"
    three_phase: bool = False
    precision: str = "bf16"  # bf16 | fp32
    channels_last: bool = True
    label_smoothing: float = 0.0
    threads: int = 2
    impl: str = "foreach"  # foreach | fused | loop
    compile: bool = False
    mallopt: bool = False
    eval_batch: int = 10000
    flip_shift: int = 0  # random translation in pixels (0 = no augmentation)
    drop_last: bool = True
    seed: int = 0


def _parse_arch(spec: str, bn: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels, size, flat = 1, 28, False
    for token in (t.strip() for t in spec.split(",") if t.strip()):
        conv = _TOKEN.match(token)
        if conv:
            out = int(conv.group(1))
            k = int(conv.group(2) or 3)
            s = int(conv.group(3) or 1)
            p = int(conv.group(4)) if conv.group(4) is not None else k // 2
            layers.append(nn.Conv2d(channels, out, k, s, p, bias=not bn))
            channels, size = out, (size + 2 * p - k) // s + 1
            if conv.group(5):
                layers.append(nn.MaxPool2d(2))
                size //= 2
            if bn:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.ReLU(inplace=True))
        elif token == "p":
            layers.append(nn.MaxPool2d(2))
            size //= 2
        elif token == "a":
            layers.append(nn.AvgPool2d(2))
            size //= 2
        elif token == "g":
            layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
            size, flat = 1, True
        elif token.startswith("d"):
            layers.append(nn.Dropout(float(token[1:])))
        elif token.startswith("f"):
            width = int(token[1:])
            if not flat:
                layers.append(nn.Flatten())
                channels, flat = channels * size * size, True
            layers += [nn.Linear(channels, width), nn.ReLU(inplace=True)]
            channels = width
        else:
            raise ValueError(f"arch token {token!r} is not one of cN[kK][sS][pP], p, a, g, dX, fN")
    if not flat:
        layers.append(nn.Flatten())
        channels = channels * size * size
    layers.append(nn.Linear(channels, 10))
    return nn.Sequential(*layers)


def build_model(cfg: ProbeConfig) -> nn.Module:
    """The network named by ``cfg.arch``."""
    return _parse_arch(cfg.arch, cfg.bn)


def _set_mallopt() -> None:
    """Keep freed memory in the process (what MALLOC_MMAP/TRIM_THRESHOLD_ do, set at run time)."""
    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, 1 << 30)


def _optimizer(cfg: ProbeConfig, model: nn.Module) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.wd},
              {"params": no_decay, "weight_decay": 0.0}]
    impl: dict[str, Any] = {"foreach": {"foreach": True}, "fused": {"fused": True},
                            "loop": {"foreach": False}}[cfg.impl]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, **impl)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, **impl)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                               **impl)
    raise ValueError(f"optimizer {cfg.optimizer!r} is not adamw, adam or sgd")


def _load() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from legoml.data import load_mnist

    tr, te = load_mnist("train"), load_mnist("test")
    return tr.images, tr.labels, te.images, te.labels


def _normalize(images_u8: torch.Tensor) -> torch.Tensor:
    return images_u8.unsqueeze(1).float().sub_(MEAN * 255.0).mul_(1.0 / (STD * 255.0))


def _shift(x: torch.Tensor, pixels: int, gen: torch.Generator) -> torch.Tensor:
    """Random translation of the whole batch by up to ``pixels`` (one offset per batch)."""
    dx, dy = (int(v) for v in torch.randint(-pixels, pixels + 1, (2,), generator=gen))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def _evaluate(model: nn.Module, cfg: ProbeConfig, images: torch.Tensor,
              labels: torch.Tensor) -> float:
    model.eval()
    correct = 0
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16,
                                                enabled=cfg.precision == "bf16"):
        for i in range(0, images.shape[0], cfg.eval_batch):
            x = _normalize(images[i:i + cfg.eval_batch])
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            correct += int((model(x).argmax(1) == labels[i:i + cfg.eval_batch]).sum())
    model.train()
    return correct / images.shape[0]


def train(cfg: ProbeConfig, data: tuple[torch.Tensor, ...] | None = None) -> dict[str, Any]:
    """Train one configuration; return the measurements as a JSON-safe dict."""
    torch.set_num_threads(cfg.threads)
    if cfg.mallopt:
        _set_mallopt()
    tr_x, tr_y, te_x, te_y = data if data is not None else _load()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = build_model(cfg)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = _optimizer(cfg, model)
    n = tr_x.shape[0]
    per_epoch = n // cfg.batch if cfg.drop_last else -(-n // cfg.batch)
    total = max(1, round(cfg.epochs * per_epoch))
    sched: torch.optim.lr_scheduler.LRScheduler | None = None
    if cfg.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=total, pct_start=cfg.pct_start,
            div_factor=cfg.div_factor, final_div_factor=cfg.final_div_factor,
            anneal_strategy=cfg.anneal, three_phase=cfg.three_phase,
            cycle_momentum=cfg.optimizer == "sgd")
    forward = torch.compile(model) if cfg.compile else model
    bf16 = cfg.precision == "bf16"

    step_s: list[float] = []
    evals: list[dict[str, float]] = []
    train_s = 0.0
    cpu_start = time.process_time()
    cpu_s = 0.0
    time_to_99: float | None = None
    step = 0
    epoch = 0
    while step < total:
        perm = torch.randperm(n, generator=gen)
        epoch += 1
        for i in range(per_epoch):
            if step >= total:
                break
            t0 = time.perf_counter()
            idx = perm[i * cfg.batch:(i + 1) * cfg.batch]
            x = _normalize(tr_x.index_select(0, idx))
            y = tr_y.index_select(0, idx)
            if cfg.flip_shift:
                x = _shift(x, cfg.flip_shift, gen)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                out = forward(x)
            loss = F.cross_entropy(out.float(), y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            if sched is not None:
                sched.step()
            dt = time.perf_counter() - t0
            step_s.append(dt)
            train_s += dt
            step += 1
        cpu_s += time.process_time() - cpu_start
        acc = _evaluate(model, cfg, te_x, te_y)
        cpu_start = time.process_time()
        evals.append({"epoch": round(step / per_epoch, 3), "train_s": round(train_s, 3),
                      "test_acc": acc})
        if time_to_99 is None and acc >= TARGET:
            time_to_99 = train_s
    steady = step_s[min(20, len(step_s) // 4):]
    return {
        "config": asdict(cfg),
        "steps": total,
        "train_s": round(train_s, 3),
        "train_cpu_s": round(cpu_s, 3),
        "ms_per_step_median": round(1e3 * statistics.median(steady), 3),
        "ms_per_step_mean": round(1e3 * sum(step_s) / len(step_s), 3),
        "first_20_steps_s": round(sum(step_s[:20]), 3),
        "final_test_acc": evals[-1]["test_acc"],
        "evals": evals,
        "time_to_99_s": None if time_to_99 is None else round(time_to_99, 3),
        "params": sum(p.numel() for p in model.parameters()),
        "env": {k: v for k, v in os.environ.items() if k.startswith(("MALLOC_", "LD_PRELOAD"))},
    }


def speed(configs: list[ProbeConfig], data: tuple[torch.Tensor, ...], rounds: int = 8,
          steps: int = 15, warmup: int = 10) -> list[dict[str, Any]]:
    """Interleaved steady-state ms/step: every config runs ``steps`` steps per round in turn.

    The machine is shared, so the best round's median is the estimate of the uncontended
    step time; the median over rounds and the process CPU time per step are reported too.
    """
    torch.set_num_threads(configs[0].threads)
    if any(c.mallopt for c in configs):
        _set_mallopt()
    tr_x, tr_y = data[0], data[1]
    gen = torch.Generator().manual_seed(0)
    states: list[tuple[Any, ...]] = []
    for cfg in configs:
        torch.manual_seed(cfg.seed)
        model = build_model(cfg)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        fwd = torch.compile(model) if cfg.compile else model
        states.append((cfg, model, fwd, _optimizer(cfg, model), [], [], []))

    def run_steps(state: tuple[Any, ...], count: int, record: list[float] | None) -> float:
        cfg, _, fwd, opt, _, _, faults = state
        torch.set_num_threads(cfg.threads)
        cpu0 = time.process_time()
        flt0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(count):
            t0 = time.perf_counter()
            idx = torch.randint(0, tr_x.shape[0], (cfg.batch,), generator=gen)
            x = _normalize(tr_x.index_select(0, idx))
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", torch.bfloat16, enabled=cfg.precision == "bf16"):
                out = fwd(x)
            loss = F.cross_entropy(out.float(), tr_y.index_select(0, idx),
                                   label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            if record is not None:
                record.append(time.perf_counter() - t0)
        faults.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - flt0) / count)
        return (time.process_time() - cpu0) / count

    for state in states:
        run_steps(state, warmup, None)
    for _ in range(rounds):
        for state in states:
            times: list[float] = []
            state[5].append(run_steps(state, steps, times))
            state[4].append(statistics.median(times))
    out = []
    for cfg, _, _, _, round_medians, cpu, faults in states:
        best = min(round_medians)
        out.append({"config": asdict(cfg), "mode": "speed",
                    "ms_per_step_best_round": round(1e3 * best, 3),
                    "ms_per_step_median": round(1e3 * statistics.median(round_medians), 3),
                    "cpu_ms_per_step": round(1e3 * min(cpu), 3),
                    "page_faults_per_step": round(statistics.median(faults[1:] or faults), 1),
                    "us_per_sample": round(1e6 * best / cfg.batch, 2),
                    "est_epoch_s": round(best * (60000 // cfg.batch), 2)})
    return out


def _coerce(name: str, raw: str) -> Any:
    kind = {f.name: f.type for f in fields(ProbeConfig)}[name]
    if kind == "bool":
        return raw.lower() in ("1", "true", "yes", "on")
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    return raw


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = ProbeConfig()
    for f in fields(ProbeConfig):
        if f.name == "seed":
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=getattr(defaults, f.name))
        else:
            parser.add_argument(flag, dest=f.name, default=str(getattr(defaults, f.name)))
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--sweep", action="append", default=[],
                        help="key=v1,v2 (repeatable): cartesian product, interleaved")
    parser.add_argument("--tag", default="", help="free text copied into each JSON line")
    parser.add_argument("--speed", action="store_true",
                        help="only measure interleaved steady-state ms/step (no accuracy)")
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args(argv)
    values = {f.name: (_coerce(f.name, getattr(args, f.name)) if f.type != "bool"
                       else getattr(args, f.name))
              for f in fields(ProbeConfig) if f.name != "seed"}
    base = ProbeConfig(**values)
    axes = []
    for item in args.sweep:
        key, _, raw = item.partition("=")
        key = key.replace("-", "_")
        sep = ";" if key == "arch" else ","
        axes.append([(key, _coerce(key, v)) for v in raw.split(sep)])
    configs = [replace(base, **dict(combo)) for combo in itertools.product(*axes)] or [base]
    data = _load()
    if args.speed:
        for result in speed(configs, data, rounds=args.rounds):
            result["tag"] = args.tag
            print(json.dumps(result), flush=True)
        return
    for seed in (int(s) for s in args.seeds.split(",")):
        for cfg in configs:
            result = train(replace(cfg, seed=seed), data)
            result["tag"] = args.tag
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
