"""``PruningCallback``: report a trial's metric at every epoch end; stop it when it lags.

Optuna's pruner (the median of earlier trials at the same epoch, by default) decides; the
callback then raises ``optuna.TrialPruned`` out of the loop, so the trial's run directory is
closed ``failed`` with an error that says it was pruned and why (legoml-track has no
"pruned" status), and no time is spent testing a model that will not be used.
"""

from __future__ import annotations

import math
from typing import Protocol

import structlog

from legoml.core import Callback, Context, Engine, Priority
from legoml_mnist.errors import AppError

__all__ = ["PruningCallback", "ReportingTrial"]

log = structlog.get_logger(__name__)


class ReportingTrial(Protocol):
    """What the callback needs of an Optuna trial (``optuna.Trial`` meets it)."""

    @property
    def number(self) -> int: ...

    def report(self, value: float, step: int) -> None: ...

    def should_prune(self) -> bool: ...


class PruningCallback(Callback):
    """Report ``engine.state.metrics[metric]`` to ``trial`` at each epoch end (step = epoch).

    Runs after the metrics are computed (``Priority.EARLY_STOPPING``) and before the epoch's
    checkpoint: a pruned trial saves nothing more."""

    priority = Priority.EARLY_STOPPING

    def __init__(self, trial: ReportingTrial, metric: str, study: str = "") -> None:
        self.trial = trial
        self.metric = metric
        self.study = study
        self.reported: dict[int, float] = {}

    def on_epoch_end(self, engine: Engine, context: Context) -> None:
        metrics = engine.state.metrics
        if self.metric not in metrics:
            raise AppError(
                f"the pruning metric {self.metric!r} is not among the training metrics "
                f"({', '.join(sorted(metrics)) or 'none'}); pick an objective the task reports"
            )
        value = float(metrics[self.metric])
        epoch = engine.state.epoch
        if not math.isfinite(value):
            return  # the non-finite-loss guard stops such a run; nothing to compare
        self.trial.report(value, step=epoch)
        self.reported[epoch] = value
        if self.trial.should_prune():
            import optuna

            reason = (
                f"pruned by the sweep (study {self.study!r}, trial {self.trial.number}) at epoch "
                f"{epoch}: {self.metric} {value:.4g} is worse than the pruner's threshold from "
                "earlier trials; not an error"
            )
            log.info("trial pruned", trial=self.trial.number, epoch=epoch, **{self.metric: value})
            raise optuna.TrialPruned(reason)
