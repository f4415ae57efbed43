"""The Optuna side of a sweep: the RDB storage, the objective, and one worker's loop.

Several workers (local processes or other machines) share one study through its storage.
Each trial is a normal training run under the runs root, named ``<study>-trial-<number>``.

Counting: a trial is *finished* when it completed, was pruned, or failed with an error of
its own (a diverging config); the study stops at ``n_trials`` finished. A worker only starts
a trial while fewer than ``n_trials`` are finished or in flight, and a trial that still finds
``n_trials`` others ahead of it (two workers asked at once) ends at once as a "surplus" FAIL
without training, so the total is exact across workers and restarts.

Dead workers: every running trial sends a heartbeat; a trial whose heartbeat is older than
the grace period (3 heartbeats) is failed by whichever worker looks next, its run directory
is closed ``failed`` with the reason, and it is queued again with the same parameters
(Optuna's retry callback). A heartbeat is used rather than failing every RUNNING trial when
a sweep starts, because another machine may be running those trials right now.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import structlog

from legoml.track import Run as TrackRun
from legoml.track import TrackError, read_run
from legoml_mnist.errors import AppError
from legoml_mnist.sweep.pruning import PruningCallback
from legoml_mnist.sweep.space import SearchSpace
from legoml_mnist.trainer import TrainerNode
from legoml_mnist.upgrade import trainer_from_config

if TYPE_CHECKING:
    import optuna

__all__ = ["SweepPlan", "open_storage", "require_optuna", "trial_run_dirs", "work"]

log = structlog.get_logger(__name__)

INSTALL_HINT = "pip install 'legoml-mnist[sweep]'"
MAX_FAILURES_IN_A_ROW = 3


def require_optuna() -> Any:
    """The ``optuna`` module, or one line saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise AppError(f"legoml-mnist sweep needs Optuna: {INSTALL_HINT}") from None
    return optuna


@dataclass(frozen=True)
class SweepPlan:
    """Everything a worker needs (plain data, so it crosses to a spawned process)."""

    base: dict[str, Any]
    space: SearchSpace
    study: str
    storage: str
    objective: str
    direction: Literal["maximize", "minimize"]
    n_trials: int
    runs_root: str
    threads: int | None = None
    pruner: Literal["median", "none"] = "median"
    startup_trials: int = 5
    warmup_epochs: int = 0
    heartbeat: int = 10
    max_retry: int = 2
    sampler_seed: int | None = None

    @property
    def prune_metric(self) -> str:
        """The training metric reported each epoch: ``train/<name>`` for ``test/<name>``."""
        return "train/" + self.objective.split("/", 1)[-1]

    def base_node(self) -> TrainerNode:
        return trainer_from_config(self.base, "the sweep's base config")


def trial_run_name(study: str, number: int) -> str:
    return f"{study}-trial-{number:04d}"


def trial_run_dirs(runs_root: str | Path, run_name: str) -> list[Path]:
    """The run directories of one trial (``<time>-<run_name>-<hex>`` with that name)."""
    root = Path(runs_root)
    if not root.is_dir():
        return []
    found = []
    for candidate in sorted(root.glob(f"*-{run_name}-*")):
        try:
            if read_run(candidate).name == run_name:
                found.append(candidate)
        except TrackError:
            continue
    return found


# -- storage ---------------------------------------------------------------------------------


class _StaleTrials:
    """Called for each trial of a dead worker: close its run directory as failed, then let
    Optuna queue it again (``max_retry`` times)."""

    def __init__(self, max_retry: int) -> None:
        optuna = require_optuna()
        retry_cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
        retry_cls = retry_cls or optuna.storages.RetryFailedTrialCallback
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks the retry callback experimental
            self.retry = retry_cls(max_retry=max_retry)
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        root, name = trial.user_attrs.get("runs_root"), trial.user_attrs.get("run_name")
        reason = (
            f"the sweep worker running trial {trial.number} of study {study.study_name!r} "
            "stopped (no heartbeat); the trial is queued again as a new trial"
        )
        for directory in trial_run_dirs(root, name) if isinstance(root, str) and isinstance(name, str) else []:
            try:
                if read_run(directory).status == "running":
                    TrackRun.resume(directory).close(f"SweepWorkerLost: {reason}")
            except (TrackError, OSError) as err:  # e.g. the run lives on another machine
                log.warning("cannot close the run of a dead trial", run=str(directory), error=str(err))
        log.warning("trial of a dead worker failed", trial=trial.number, retried_up_to=self.max_retry)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.retry(study, trial)


def open_storage(url: str, heartbeat: int, max_retry: int) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage at ``url`` with heartbeats; one line when it cannot be opened."""
    optuna = require_optuna()
    engine: dict[str, Any] = {}
    if url.startswith("sqlite"):  # several processes write one file: wait for the lock
        engine["connect_args"] = {"timeout": 60}
    options: dict[str, Any] = {
        "engine_kwargs": engine,
        "heartbeat_interval": heartbeat,
        "grace_period": 3 * heartbeat,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # heartbeats are "experimental" in Optuna
        try:
            storage = optuna.storages.RDBStorage(
                url, heartbeat_stale_trial_callback=_StaleTrials(max_retry), **options
            )
        except TypeError:  # Optuna before 4.9 names the callback failed_trial_callback
            storage = optuna.storages.RDBStorage(url, failed_trial_callback=_StaleTrials(max_retry), **options)
        except AppError:
            raise
        except Exception as err:  # a bad URL, a missing driver, an unreachable server
            first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
            raise AppError(
                f"cannot open the study storage {url!r} ({first}); give a SQLAlchemy URL such "
                "as sqlite:///runs/sweep.db or postgresql://user@host/db"
            ) from None
    return storage  # type: ignore[no-any-return]


def make_sampler_and_pruner(plan: SweepPlan, worker: int) -> tuple[Any, Any]:
    optuna = require_optuna()
    seed = None if plan.sampler_seed is None else plan.sampler_seed + worker
    sampler = optuna.samplers.TPESampler(seed=seed)
    if plan.pruner == "none":
        return sampler, optuna.pruners.NopPruner()
    return sampler, optuna.pruners.MedianPruner(
        n_startup_trials=plan.startup_trials, n_warmup_steps=plan.warmup_epochs
    )


# -- counting --------------------------------------------------------------------------------


def is_finished(trial: optuna.trial.FrozenTrial) -> bool:
    """Counts toward ``n_trials``: completed, pruned, or failed by its own error."""
    name = trial.state.name
    return name in ("COMPLETE", "PRUNED") or (name == "FAIL" and "error" in trial.user_attrs)


def is_pending(trial: optuna.trial.FrozenTrial) -> bool:
    return trial.state.name in ("RUNNING", "WAITING")


class _Surplus(Exception):
    """The trial found ``n_trials`` others finished or running ahead of it."""


class _TrialFailed(Exception):
    """The trial's training raised; the message is its one-line reason."""


# -- the objective ---------------------------------------------------------------------------


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:300]}" if text else type(err).__name__


class Objective:
    """Train one trial's config and return its objective (the final test metric)."""

    def __init__(self, plan: SweepPlan, study: optuna.Study) -> None:
        self.plan = plan
        self.study = study
        self.base = plan.base_node()

    def __call__(self, trial: optuna.Trial) -> float:
        optuna = require_optuna()
        plan = self.plan
        trials = self.study.get_trials(deepcopy=False)
        ahead = [t for t in trials if t.number < trial.number and (is_finished(t) or is_pending(t))]
        mine = next((t for t in trials if t.number == trial.number), None)
        if len(ahead) >= plan.n_trials:
            trial.set_user_attr("surplus", True)
            raise _Surplus(f"{plan.n_trials} trials are already finished or running; not run")
        values = plan.space.sample(trial)
        name = trial_run_name(plan.study, trial.number)
        trial.set_user_attr("run_name", name)
        trial.set_user_attr("runs_root", plan.runs_root)
        trial.set_user_attr("host", socket.gethostname())
        changes: dict[str, Any] = {"run_name": name, "runs_root": plan.runs_root, "progress": False}
        if plan.threads is not None and self.base.threads is None:
            changes["threads"] = plan.threads
        retried = mine.system_attrs.get("failed_trial") if mine is not None else None
        log.info("trial started", trial=trial.number, retry_of=retried, **values)
        pruning = PruningCallback(trial, plan.prune_metric, plan.study)
        try:
            node = plan.space.apply(self.base, values).fork(**changes)
            result = node.build().train(callbacks=[pruning])
        except optuna.TrialPruned as err:
            self._record(trial, values, "PRUNED", None, str(err))
            raise
        except Exception as err:
            reason = _one_line(err)
            trial.set_user_attr("error", reason)
            self._record(trial, values, "FAIL", None, reason)
            raise _TrialFailed(reason) from None
        metrics = dict(result.final_metrics)
        if result.report is not None:
            metrics.update(result.report.metrics)
        if plan.objective not in metrics:
            reason = f"the run reported no {plan.objective!r} (it has {', '.join(sorted(metrics))})"
            trial.set_user_attr("error", reason)
            raise _TrialFailed(reason)
        value = float(metrics[plan.objective])
        self._record(trial, values, "COMPLETE", value, None, result.run_dir)
        return value

    def _record(
        self,
        trial: optuna.Trial,
        values: dict[str, Any],
        state: str,
        value: float | None,
        reason: str | None,
        run_dir: Path | None = None,
    ) -> None:
        """The run directory goes in the trial; the trial (study, params, value) in the run's
        ``artifacts/sweep_trial.json``, so either side finds the other."""
        name = trial_run_name(self.plan.study, trial.number)
        found = [run_dir] if run_dir is not None else trial_run_dirs(self.plan.runs_root, name)
        if not found:
            return
        trial.set_user_attr("run_dir", str(found[-1]))
        record = {
            "study": self.plan.study,
            "storage": self.plan.storage,
            "trial": trial.number,
            "state": state,
            "objective": self.plan.objective,
            "direction": self.plan.direction,
            "value": value,
            "params": values,
            "reason": reason,
        }
        target = found[-1] / "artifacts" / "sweep_trial.json"
        try:
            target.parent.mkdir(exist_ok=True)
            temporary = target.with_suffix(".json.tmp")
            temporary.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
            os.replace(temporary, target)
        except OSError as err:
            log.warning("cannot write the trial record", run=str(found[-1]), error=str(err))


# -- one worker ------------------------------------------------------------------------------


def work(plan: SweepPlan, worker: int = 0) -> None:
    """Run trials of the study until ``n_trials`` are finished (by anyone)."""
    optuna = require_optuna()
    storage = open_storage(plan.storage, plan.heartbeat, plan.max_retry)
    sampler, pruner = make_sampler_and_pruner(plan, worker)
    study = optuna.load_study(study_name=plan.study, storage=storage, sampler=sampler, pruner=pruner)
    objective = Objective(plan, study)
    poll = min(float(plan.heartbeat), 2.0)
    failures = 0
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        finished = sum(map(is_finished, trials))
        waiting = sum(t.state.name == "WAITING" for t in trials)
        running = sum(t.state.name == "RUNNING" for t in trials)
        if finished >= plan.n_trials:
            log.info("study has its trials", worker=worker, finished=finished)
            return
        if finished + running + waiting >= plan.n_trials and waiting == 0:
            time.sleep(poll)  # the last trials run elsewhere: wait for them to end (or die)
            continue
        try:
            study.optimize(objective, n_trials=1, gc_after_trial=False, show_progress_bar=False)
        except _Surplus:
            continue
        except _TrialFailed as err:
            failures += 1
            if failures >= MAX_FAILURES_IN_A_ROW:
                raise AppError(
                    f"{failures} trials in a row failed in this worker, the last with {err}; "
                    "fix the base config or narrow the search space, then rerun the same command"
                ) from None
            continue
        except optuna.exceptions.UpdateFinishedTrialError:
            log.warning("a slow trial was declared dead by another worker; its result is dropped")
            continue
        failures = 0
