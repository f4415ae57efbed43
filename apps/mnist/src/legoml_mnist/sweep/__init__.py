"""Hyperparameter sweeps over any field of the training config, with Optuna.

``legoml-mnist sweep SPACE`` samples the fields named in a space file, trains each trial as
a normal run directory (``<study>-trial-<number>``), prunes trials that lag at an epoch end,
and keeps the study in Optuna's RDB storage so several processes or machines share it and a
killed sweep resumes with the same command. Optuna is imported only when a sweep runs
(``pip install 'legoml-mnist[sweep]'``).
"""

from legoml_mnist.sweep.command import SweepOutcome, make_plan, run_sweep, sweep_command
from legoml_mnist.sweep.pruning import PruningCallback
from legoml_mnist.sweep.space import Param, SearchSpace, load_search_space, parse_search_space
from legoml_mnist.sweep.study import SweepPlan, trial_run_dirs

__all__ = [
    "Param",
    "PruningCallback",
    "SearchSpace",
    "SweepOutcome",
    "SweepPlan",
    "load_search_space",
    "make_plan",
    "parse_search_space",
    "run_sweep",
    "sweep_command",
    "trial_run_dirs",
]
