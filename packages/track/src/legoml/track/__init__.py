"""legoml-track: run directories of plain files, crash-safe scalars, safe atomic checkpoints.

Checkpoint and resume functions (torch) and TrackingCallback (legoml-core) are imported on
first use, so ``import legoml.track`` stays light (the CLI lists runs without loading torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from legoml.track._mlflow_options import MLflowOptions
from legoml.track._run import Run, config_to_dict, run
from legoml.track._scalars import SCALARS_HEADER, ScalarRow, read_scalars, rewind_scalars
from legoml.track._store import RunInfo, list_runs, read_run
from legoml.track._tensorboard import TensorBoardSink
from legoml.track.errors import CheckpointError, MissingExtraError, RunError, TrackError
from legoml.track.plot import plot_runs

if TYPE_CHECKING:
    from legoml.track.callback import TrackingCallback
    from legoml.track.checkpoints import (
        CheckpointInfo,
        checkpoint_info,
        find_latest_checkpoint,
        load_checkpoint,
        load_model_from_checkpoint,
        save_checkpoint,
    )
    from legoml.track.resume import resolve_checkpoint, restore_checkpoint, resume_run

__all__ = [
    "SCALARS_HEADER",
    "CheckpointError",
    "CheckpointInfo",
    "MLflowOptions",
    "MissingExtraError",
    "Run",
    "RunError",
    "RunInfo",
    "ScalarRow",
    "TensorBoardSink",
    "TrackError",
    "TrackingCallback",
    "checkpoint_info",
    "config_to_dict",
    "find_latest_checkpoint",
    "list_runs",
    "load_checkpoint",
    "load_model_from_checkpoint",
    "plot_runs",
    "read_run",
    "read_scalars",
    "resolve_checkpoint",
    "restore_checkpoint",
    "resume_run",
    "rewind_scalars",
    "run",
    "save_checkpoint",
]

_LAZY = {
    "TrackingCallback": "callback",
    "CheckpointInfo": "checkpoints",
    "checkpoint_info": "checkpoints",
    "find_latest_checkpoint": "checkpoints",
    "load_checkpoint": "checkpoints",
    "load_model_from_checkpoint": "checkpoints",
    "save_checkpoint": "checkpoints",
    "resolve_checkpoint": "resume",
    "restore_checkpoint": "resume",
    "resume_run": "resume",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"legoml.track.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
