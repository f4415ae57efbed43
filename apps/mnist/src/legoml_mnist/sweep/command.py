"""``legoml-mnist sweep``: check the space, open (or join) the study, run the workers, report.

Everything the user can get wrong (space file, objective, storage URL, flags) is checked
before the first trial starts; rerunning the same command after a crash or a kill joins the
same study and carries on to ``n_trials``.
"""

from __future__ import annotations

import argparse
import difflib
import multiprocessing
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog

from legoml_mnist.errors import AppError
from legoml_mnist.sweep.space import SearchSpace, load_search_space
from legoml_mnist.sweep.study import (
    SweepPlan,
    is_finished,
    open_storage,
    require_optuna,
    work,
)
from legoml_mnist.trainer import TrainerNode

__all__ = ["SweepOutcome", "run_sweep", "sweep_command"]

log = structlog.get_logger(__name__)

_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_LOWER_IS_BETTER = ("loss", "mse", "mae", "error")
DEFAULT_TRIALS = 20


@dataclass
class SweepOutcome:
    """What the study holds once the workers are done."""

    study: str
    storage: str
    objective: str
    direction: str
    n_trials: int
    counts: dict[str, int]
    best_number: int | None = None
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_run_dir: str | None = None

    @property
    def finished(self) -> int:
        return self.counts.get("finished", 0)


def _positive(name: str, value: object, low: int = 1, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        limit = f"{low}..{high}" if high is not None else f">= {low}"
        raise AppError(f"{name} must be an int {limit}, got {value!r}")
    return value


def _cpus() -> int:
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)


def _objective(base: TrainerNode, wanted: str | None) -> str:
    """``wanted`` if the experiment reports it at the end (``test/<metric>``), else one line."""
    names = ["loss", *base.task.metrics(base.dataset)]
    allowed = [f"test/{name}" for name in dict.fromkeys(names)]
    objective = wanted or f"test/{base.task.final_metrics[0]}"
    if objective not in allowed:
        near = difflib.get_close_matches(objective, allowed, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise AppError(
            f"objective {objective!r} is not a metric this experiment reports{hint}; use one of "
            f"{', '.join(allowed)} (the trainer has no validation split, so sweeps rank by the test split)"
        )
    return objective


def _direction(objective: str, wanted: str | None) -> Literal["maximize", "minimize"]:
    if wanted is not None:
        if wanted not in ("maximize", "minimize"):
            raise AppError(f"direction must be maximize or minimize, got {wanted!r}")
        return "maximize" if wanted == "maximize" else "minimize"
    name = objective.split("/")[-1]
    return "minimize" if any(word in name for word in _LOWER_IS_BETTER) else "maximize"


def make_plan(args: argparse.Namespace, base: TrainerNode) -> SweepPlan:
    """Check the space file and the flags against ``base``; nothing is written yet."""
    space: SearchSpace = load_search_space(Path(args.space), base)
    objective = _objective(base, args.objective or space.objective)
    direction = _direction(objective, args.direction or space.direction)
    n_trials = _positive("--n-trials", args.n_trials if args.n_trials is not None else (space.n_trials or DEFAULT_TRIALS))
    workers = _positive("--workers", args.workers, 1, 64)
    study = args.study or Path(args.space).stem
    if not _STUDY_NAME.match(study):
        raise AppError(f"study name {study!r}: use letters, digits, '.', '_' or '-' (at most 64), e.g. --study lr-search")
    runs_root = Path(base.runs_root).resolve()
    storage = args.storage or f"sqlite:///{runs_root / (study + '.db')}"
    return SweepPlan(
        base=base.to_dict(),
        space=space,
        study=study,
        storage=storage,
        objective=objective,
        direction=direction,
        n_trials=n_trials,
        runs_root=str(runs_root),
        threads=max(1, _cpus() // workers) if workers > 1 else None,
        pruner=args.pruner,
        startup_trials=_positive("--pruner-startup-trials", args.pruner_startup_trials, 0),
        warmup_epochs=_positive("--pruner-warmup-epochs", args.pruner_warmup_epochs, 0),
        heartbeat=_positive("--heartbeat", args.heartbeat, 1, 3600),
        max_retry=_positive("--max-retry", args.max_retry, 0),
        sampler_seed=args.sampler_seed,
    )


def _open_study(plan: SweepPlan) -> Any:
    """Create the study, or join it when its objective and direction agree."""
    optuna = require_optuna()
    Path(plan.runs_root).mkdir(parents=True, exist_ok=True)
    storage = open_storage(plan.storage, plan.heartbeat, plan.max_retry)
    try:
        study = optuna.create_study(
            storage=storage, study_name=plan.study, direction=plan.direction, load_if_exists=True
        )
    except Exception as err:
        raise AppError(f"cannot create or load study {plan.study!r} in {plan.storage}: {err}") from None
    direction = study.direction.name.lower()
    recorded = study.user_attrs.get("objective", plan.objective)
    if direction != plan.direction or recorded != plan.objective:
        raise AppError(
            f"study {plan.study!r} in {plan.storage} already {direction}s {recorded}; rerun with "
            f"that objective and direction, or pick another --study"
        )
    if "objective" not in study.user_attrs:
        study.set_user_attr("objective", plan.objective)
        study.set_user_attr("space", plan.space.describe())
    study.set_user_attr("n_trials", plan.n_trials)
    return study


def _worker_main(plan: SweepPlan, worker: int) -> None:
    """Entry point of a spawned worker process: one error line and exit 1 on a user error."""
    from legoml_mnist.cli import USER_ERRORS
    from legoml_mnist.logs import configure_logging

    configure_logging()
    try:
        work(plan, worker)
    except USER_ERRORS as err:
        sys.stderr.write(f"error: sweep worker {worker}: {err}\n")
        raise SystemExit(1) from None


def run_sweep(plan: SweepPlan, workers: int = 1) -> SweepOutcome:
    """Run ``workers`` local workers on the study until it has ``n_trials`` finished."""
    study = _open_study(plan)
    log.info("sweep", study=plan.study, storage=plan.storage, n_trials=plan.n_trials,
             objective=plan.objective, direction=plan.direction, workers=workers)
    if workers == 1:
        work(plan, 0)
    else:
        spawn = multiprocessing.get_context("spawn")  # no forked OpenMP or torch state
        processes = [
            spawn.Process(target=_worker_main, args=(plan, index), name=f"legoml-sweep-{index}")
            for index in range(workers)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        failed = [f"worker {i} exit code {p.exitcode}" for i, p in enumerate(processes) if p.exitcode != 0]
        if failed:
            log.warning("workers stopped early", workers=failed)
    return outcome(plan, study)


def outcome(plan: SweepPlan, study: Any) -> SweepOutcome:
    """Counts and the best trial as the study holds them now."""
    trials = study.get_trials(deepcopy=False)
    states = [t.state.name for t in trials]
    counts = {
        "finished": sum(map(is_finished, trials)),
        "complete": states.count("COMPLETE"),
        "pruned": states.count("PRUNED"),
        "failed": sum(is_finished(t) and t.state.name == "FAIL" for t in trials),
    }
    result = SweepOutcome(plan.study, plan.storage, plan.objective, plan.direction, plan.n_trials, counts)
    if counts["complete"]:
        best = study.best_trial
        decode = {p.path: p for p in plan.space.params}
        result.best_number = best.number
        result.best_value = float(best.value)
        result.best_params = {k: decode[k].decode(v) if k in decode else v for k, v in best.params.items()}
        result.best_run_dir = best.user_attrs.get("run_dir")
    return result


def sweep_command(args: argparse.Namespace, base: TrainerNode, out: Callable[[str], None]) -> int:
    """``legoml-mnist sweep``: everything but parsing the flags and the base config."""
    require_optuna()
    plan = make_plan(args, base)
    result = run_sweep(plan, args.workers)
    counts = result.counts
    out(
        f"study {result.study}: {result.finished} of {result.n_trials} trials finished "
        f"({counts['complete']} complete, {counts['pruned']} pruned, {counts['failed']} failed)"
    )
    if result.best_number is not None:
        params = " ".join(f"{k}={v}" for k, v in result.best_params.items())
        out(f"best trial {result.best_number}: {result.objective} {result.best_value:.4f} ({result.direction})")
        out(f"params: {params}")
        out(f"rank them: legoml-track ls {plan.runs_root} --match {result.study}-trial --sort {result.objective}")
        out(f"run directory: {result.best_run_dir}")
    if result.finished < result.n_trials:
        raise AppError(
            f"only {result.finished} of {result.n_trials} trials finished (a worker stopped); "
            "rerun the same command to continue the study"
        )
    if result.best_number is None:
        raise AppError(f"no trial of study {result.study!r} completed (all pruned or failed); widen the space or check the errors above")
    return 0
