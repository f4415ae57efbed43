"""legoml-core: an event-driven training Engine with callbacks and exact resume.

The public face holds what a training loop needs: the Engine and its vocabulary, the step
outputs, the built-in callbacks, the step factories, seeding, device detection and the errors
worth catching. Every other piece lives in a named submodule: ``legoml.core.distributed``
(DDP and rank helpers), ``legoml.core.device`` (``move_to_device``...),
``legoml.core.protocols`` (the doors other packages meet), ``legoml.core.events``
(``FilteredEvent``, ``RemovableHandle``), ``legoml.core.steps`` (``AmpSetting``,
``resolve_amp_dtype``), ``legoml.core.callbacks`` (``atomic_torch_save``, ``checkpoint_name``),
``legoml.core.context`` (``unwrap_model``), ``legoml.core.engine`` (``StepFn``),
``legoml.core.errors`` (every error), ``legoml.core.values`` (int checks, scalars) and
``legoml.core.atomic`` (the atomic file write).
"""

from typing import TYPE_CHECKING

from legoml.core._callback_base import Callback, Priority
from legoml.core._deprecated import moved_names
from legoml.core.callbacks import (
    CheckpointCallback,
    EarlyStopping,
    EMACallback,
    EvalOnEpochEndCallback,
    LoggingCallback,
    LRSchedulerCallback,
    MetricsCallback,
    NonFiniteLossGuard,
    ProgressBarCallback,
    TimerCallback,
)
from legoml.core.context import Context
from legoml.core.device import detect_device
from legoml.core.engine import Engine
from legoml.core.errors import CoreError, NonFiniteLossError, ResumeError
from legoml.core.events import Events
from legoml.core.reconstruction_steps import (
    make_reconstruction_eval_step,
    make_reconstruction_train_step,
)
from legoml.core.seeding import seed_everything
from legoml.core.state import State
from legoml.core.step_output import (
    DictStepOutput,
    StepOutput,
    SupervisedStepOutput,
    UnsupervisedStepOutput,
)
from legoml.core.steps import make_supervised_eval_step, make_supervised_train_step

__all__ = [
    "Callback",
    "CheckpointCallback",
    "Context",
    "CoreError",
    "DictStepOutput",
    "EMACallback",
    "EarlyStopping",
    "Engine",
    "EvalOnEpochEndCallback",
    "Events",
    "LRSchedulerCallback",
    "LoggingCallback",
    "MetricsCallback",
    "NonFiniteLossError",
    "NonFiniteLossGuard",
    "Priority",
    "ProgressBarCallback",
    "ResumeError",
    "State",
    "StepOutput",
    "SupervisedStepOutput",
    "TimerCallback",
    "UnsupervisedStepOutput",
    "detect_device",
    "make_reconstruction_eval_step",
    "make_reconstruction_train_step",
    "make_supervised_eval_step",
    "make_supervised_train_step",
    "seed_everything",
]


def _moved_to(module: str, *names: str) -> dict[str, str]:
    return {name: f"{module}.{name}" for name in names}


#: Names that left the top level, and where they live now (deprecated aliases, one release).
_MOVED = {
    **_moved_to("legoml.core.steps", "AmpSetting", "resolve_amp_dtype"),
    **_moved_to("legoml.core.callbacks", "atomic_torch_save", "checkpoint_name"),
    **_moved_to("legoml.core.context", "unwrap_model"),
    **_moved_to("legoml.core.device", "cpu_supports_bf16", "keep_freed_memory", "move_to_device"),
    **_moved_to(
        "legoml.core.distributed",
        "DistributedInfo",
        "barrier",
        "destroy_distributed",
        "distributed_session",
        "get_local_rank",
        "get_rank",
        "get_world_size",
        "init_distributed",
        "is_distributed",
        "is_main_process",
        "release_ddp",
        "wrap_ddp",
    ),
    **_moved_to("legoml.core.engine", "StepFn"),
    **_moved_to(
        "legoml.core.errors",
        "CallbackError",
        "DistributedError",
        "EngineError",
        "MetricNotFoundError",
    ),
    **_moved_to("legoml.core.events", "FilteredEvent", "RemovableHandle"),
    **_moved_to(
        "legoml.core.protocols", "CheckpointSaver", "MetricLike", "ScalarSink", "StatefulLike"
    ),
}

__getattr__ = moved_names(__name__, _MOVED)

if TYPE_CHECKING:  # the deprecated names keep their types for mypy users
    from legoml.core.callbacks import atomic_torch_save as atomic_torch_save
    from legoml.core.callbacks import checkpoint_name as checkpoint_name
    from legoml.core.context import unwrap_model as unwrap_model
    from legoml.core.device import cpu_supports_bf16 as cpu_supports_bf16
    from legoml.core.device import keep_freed_memory as keep_freed_memory
    from legoml.core.device import move_to_device as move_to_device
    from legoml.core.distributed import DistributedInfo as DistributedInfo
    from legoml.core.distributed import barrier as barrier
    from legoml.core.distributed import destroy_distributed as destroy_distributed
    from legoml.core.distributed import distributed_session as distributed_session
    from legoml.core.distributed import get_local_rank as get_local_rank
    from legoml.core.distributed import get_rank as get_rank
    from legoml.core.distributed import get_world_size as get_world_size
    from legoml.core.distributed import init_distributed as init_distributed
    from legoml.core.distributed import is_distributed as is_distributed
    from legoml.core.distributed import is_main_process as is_main_process
    from legoml.core.distributed import release_ddp as release_ddp
    from legoml.core.distributed import wrap_ddp as wrap_ddp
    from legoml.core.engine import StepFn as StepFn
    from legoml.core.errors import CallbackError as CallbackError
    from legoml.core.errors import DistributedError as DistributedError
    from legoml.core.errors import EngineError as EngineError
    from legoml.core.errors import MetricNotFoundError as MetricNotFoundError
    from legoml.core.events import FilteredEvent as FilteredEvent
    from legoml.core.events import RemovableHandle as RemovableHandle
    from legoml.core.protocols import CheckpointSaver as CheckpointSaver
    from legoml.core.protocols import MetricLike as MetricLike
    from legoml.core.protocols import ScalarSink as ScalarSink
    from legoml.core.protocols import StatefulLike as StatefulLike
    from legoml.core.steps import AmpSetting as AmpSetting
    from legoml.core.steps import resolve_amp_dtype as resolve_amp_dtype
