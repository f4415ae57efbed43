"""The ``legoml-track`` command: list, show, plot and compare runs; inspect a checkpoint.

Errors print one line on stderr and exit non-zero, never a traceback.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from legoml.track._flatten import MISSING, config_differences, flatten
from legoml.track._scalars import read_scalars
from legoml.track._store import RunInfo, list_runs, read_run
from legoml.track.errors import RunError, TrackError

__all__ = ["main"]

PROG = "legoml-track"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def _number(value: float) -> str:
    return f"{value:.6g}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s"


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _value(value: Any) -> str:
    if value is MISSING:
        return "-"
    return value if isinstance(value, str) else json.dumps(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in (headers, *rows)
    ]
    return "\n".join(lines) + "\n"


def _metrics_text(metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={_number(v)}" for k, v in sorted(metrics.items())) or "-"


def _resolve(argument: str, root: str) -> Path:
    """A run given as a path, a directory name under ``root``, or a unique part of one."""
    path = Path(argument)
    if path.is_dir():
        return path
    base = Path(root)
    if (base / argument).is_dir():
        return base / argument
    matches = (
        [p for p in base.iterdir() if argument in p.name and (p / "meta.json").is_file()]
        if base.is_dir()
        else []
    )
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise RunError(f"run {argument!r} matches {len(matches)} runs under {base}; be precise")
    raise RunError(f"run not found: {argument} (not a directory, nor a run under {base})")


_LOWER_IS_BETTER = ("loss", "error", "mse", "mae", "perplexity")


def _lower_is_better(metric: str, ascending: bool | None) -> bool:
    """``--asc``/``--desc`` when given, else guessed from the name (losses and errors rise)."""
    if ascending is not None:
        return ascending
    name = metric.rsplit("/", 1)[-1].lower()
    return any(word in name for word in _LOWER_IS_BETTER)


def _did_you_mean(word: str, known: Sequence[str]) -> str:
    near = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


def _ranked(runs: list[RunInfo], metric: str, ascending: bool | None, where: str) -> list[RunInfo]:
    """``runs`` best first by their final ``metric``; runs without it (or NaN) go last."""
    have = [r for r in runs if math.isfinite(r.final_metrics.get(metric, math.nan))]
    if not have:
        names = sorted({k for r in runs for k in r.final_metrics})
        raise RunError(
            f"no run {where} has the final metric {metric!r}{_did_you_mean(metric, names)}; "
            f"known: {', '.join(names) or 'none'}"
        )
    lower = _lower_is_better(metric, ascending)
    have.sort(key=lambda r: r.final_metrics[metric], reverse=not lower)
    return have + [r for r in runs if r not in have]


def _matching(runs: list[RunInfo], text: str | None) -> list[RunInfo]:
    return runs if not text else [r for r in runs if text in r.dir.name or text in r.name]


def _config_cells(runs: list[RunInfo], keys: Sequence[str]) -> list[list[str]]:
    flat = [flatten(r.config) for r in runs]
    for key in keys:
        if not any(key in f for f in flat):
            known = sorted({k for f in flat for k in f})
            raise RunError(f"no run has the config key {key!r}{_did_you_mean(key, known)}")
    return [[_value(f.get(key, MISSING)) for key in keys] for f in flat]


def _cmd_ls(args: argparse.Namespace) -> str:
    runs = _matching(list_runs(args.root_dir), args.match)
    if not runs:
        return f"no runs under {args.root_dir}" + (f" matching {args.match!r}" if args.match else "") + "\n"
    if args.sort:
        runs = _ranked(runs, args.sort, args.ascending, f"under {args.root_dir}")
    keys: list[str] = args.config or []
    extra = _config_cells(runs, keys)
    rows = []
    for rank, (r, cells) in enumerate(zip(runs, extra, strict=True), start=1):
        row = [r.dir.name, r.status]
        if args.sort:
            value = r.final_metrics.get(args.sort, math.nan)
            row = [str(rank) if math.isfinite(value) else "-", *row, _number(value) if math.isfinite(value) else "-"]
        row += [*cells, _time(r.start), _duration(r.duration_s), _metrics_text(r.final_metrics)]
        rows.append(row)
    headers = ["RUN", "STATUS"]
    if args.sort:
        headers = ["RANK", *headers, args.sort.upper()]
    headers += [key.upper() for key in keys] + ["START", "DURATION", "FINAL METRICS"]
    return _table(headers, rows)


def _cmd_show(args: argparse.Namespace) -> str:
    info = read_run(_resolve(args.run, args.root))
    meta = info.meta
    git = meta.get("git_commit") or "-"
    if meta.get("git_dirty"):
        git += " (uncommitted changes)"
    fields = [
        ("run", str(info.dir)),
        ("name", info.name),
        ("status", info.status),
        ("start", _time(info.start)),
        ("end", _time(info.end)),
        ("duration", _duration(info.duration_s)),
        ("seed", "-" if info.seed is None else str(info.seed)),
        ("git", git),
        ("python", str(meta.get("python", "-"))),
        ("torch", str(meta.get("torch", "-"))),
        ("resumed", str(len(meta.get("resumes") or []))),
    ]
    if info.error:
        fields.append(("error", info.error))
    out = _table(["FIELD", "VALUE"], [list(f) for f in fields])
    config = flatten(info.config) if info.config else {}
    out += "\nconfig\n" + "".join(f"  {k} = {_value(v)}\n" for k, v in config.items())
    if not config:
        out += "  (empty)\n"
    out += "\nfinal metrics\n"
    out += "".join(f"  {k} = {_number(v)}\n" for k, v in sorted(info.final_metrics.items()))
    if not info.final_metrics:
        out += "  (none)\n"
    try:
        rows = read_scalars(info.dir)
    except RunError:
        rows = []
    if rows:
        summary: dict[str, list[Any]] = {}
        for row in rows:
            entry = summary.setdefault(row.name, [0, 0, 0.0])
            entry[0] += 1
            entry[1], entry[2] = row.step, row.value
        table = [[n, str(c), str(s), _number(v)] for n, (c, s, v) in sorted(summary.items())]
        out += "\nscalars\n" + _table(["NAME", "ROWS", "LAST STEP", "LAST VALUE"], table)
    return out


def _cmd_plot(args: argparse.Namespace) -> str:
    from legoml.track.plot import plot_runs  # matplotlib only for this command

    runs = [_resolve(r, args.root) for r in args.runs]
    path = plot_runs(runs, names=args.metric or None, out=args.out)
    return f"wrote {path}\n"


def _cmd_compare(args: argparse.Namespace) -> str:
    infos: list[RunInfo] = [read_run(_resolve(r, args.root)) for r in args.runs]
    if args.match:
        seen = {i.dir.resolve() for i in infos}
        found = _matching(list_runs(args.root), args.match)
        infos += [i for i in found if i.dir.resolve() not in seen and i.status != "unreadable"]
    if len(infos) < 2:
        raise RunError(
            "compare needs at least two runs: name them, or pick them with --match TEXT under --root"
        )
    if args.sort:
        infos = _ranked(infos, args.sort, args.ascending, "compared")
    headers = [i.dir.name for i in infos]
    if args.all:
        flat = [flatten(i.config) for i in infos]
        keys = sorted({k for f in flat for k in f})
        diffs = {k: [f.get(k, MISSING) for f in flat] for k in keys}
    else:
        diffs = config_differences([i.config for i in infos])
    title = (
        "config"
        if args.all
        else f"config differences ({len(diffs)} key{'' if len(diffs) == 1 else 's'})"
    )
    out = f"{title}\n"
    if diffs:
        out += _table(["KEY", *headers], [[k, *map(_value, v)] for k, v in diffs.items()])
    else:
        out += "  (configs are identical)\n"
    names = sorted({k for i in infos for k in i.final_metrics})
    out += "\nfinal metrics\n"
    if names:
        rows = [
            [n, *(_number(i.final_metrics[n]) if n in i.final_metrics else "-" for i in infos)]
            for n in names
        ]
        out += _table(["METRIC", *headers], rows)
    else:
        out += "  (none)\n"
    status = [[h, i.status, _duration(i.duration_s)] for h, i in zip(headers, infos, strict=True)]
    return out + "\nstatus\n" + _table(["RUN", "STATUS", "DURATION"], status)


def _cmd_ckpt(args: argparse.Namespace) -> str:
    from legoml.track.checkpoints import checkpoint_info  # torch only for this command

    info = checkpoint_info(args.checkpoint)
    fields = [
        ("path", str(info.path)),
        ("epoch", "-" if info.epoch is None else str(info.epoch)),
        ("global_step", "-" if info.global_step is None else str(info.global_step)),
        ("size", f"{info.size_bytes} bytes"),
        ("created", _time(info.created)),
        ("keys", ", ".join(info.keys) or "-"),
        ("metrics", _metrics_text(info.metrics)),
    ]
    return _table(["FIELD", "VALUE"], [list(f) for f in fields])


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="List, show, plot and compare LegoML runs.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    root = _Parser(add_help=False)
    root.add_argument("--root", default="runs", help="where run names are looked up (runs)")

    ranking = _Parser(add_help=False)
    ranking.add_argument("--sort", metavar="METRIC", help="rank by this final metric, best first")
    order = ranking.add_mutually_exclusive_group()
    order.add_argument("--asc", dest="ascending", action="store_const", const=True,
                       help="lower is better (the default for losses and errors)")
    order.add_argument("--desc", dest="ascending", action="store_const", const=False,
                       help="higher is better (the default for other metrics)")
    ranking.add_argument("--match", metavar="TEXT", help="only runs whose name contains TEXT")

    ls = sub.add_parser("ls", parents=[ranking], help="table of the runs under ROOT")
    ls.add_argument("root_dir", nargs="?", default="runs", metavar="ROOT")
    ls.add_argument("--config", action="append", metavar="KEY",
                    help="add a column for a config key, e.g. optimizer.lr (repeatable)")
    ls.set_defaults(handler=_cmd_ls)

    show = sub.add_parser("show", parents=[root], help="meta, config and metrics of a run")
    show.add_argument("run", metavar="RUN")
    show.set_defaults(handler=_cmd_show)

    plot = sub.add_parser("plot", parents=[root], help="PNG of logged curves, runs overlaid")
    plot.add_argument("runs", nargs="+", metavar="RUN")
    plot.add_argument("--out", default="scalars.png", help="PNG to write (scalars.png)")
    plot.add_argument("--metric", action="append", metavar="NAME", help="scalar to plot")
    plot.set_defaults(handler=_cmd_plot)

    compare = sub.add_parser(
        "compare", parents=[root, ranking], help="config diff and final metrics"
    )
    compare.add_argument("runs", nargs="*", metavar="RUN")
    compare.add_argument("--all", action="store_true", help="show every config key")
    compare.set_defaults(handler=_cmd_compare)

    ckpt = sub.add_parser("ckpt", help="epoch, step, metrics and size of a checkpoint")
    ckpt.add_argument("checkpoint", metavar="CHECKPOINT")
    ckpt.set_defaults(handler=_cmd_ckpt)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``legoml-track`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        sys.stdout.write(args.handler(args))
        sys.stdout.flush()
    except TrackError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 1
    except BrokenPipeError:  # e.g. `legoml-track ls | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except Exception as exc:  # one line, no traceback, for anything unexpected too
        sys.stderr.write(f"{PROG}: error: {type(exc).__name__}: {exc}\n")
        return 1
    return 0
