"""legoml-core: an event-driven training Engine with callbacks and exact resume.

The public face; implementation lives in the submodules.
"""

from legoml.core._callback_base import Callback, Priority
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
    atomic_torch_save,
    checkpoint_name,
)
from legoml.core.context import Context, unwrap_model
from legoml.core.device import cpu_supports_bf16, detect_device, keep_freed_memory, move_to_device
from legoml.core.distributed import (
    DistributedInfo,
    barrier,
    destroy_distributed,
    distributed_session,
    get_local_rank,
    get_rank,
    get_world_size,
    init_distributed,
    is_distributed,
    is_main_process,
    release_ddp,
    wrap_ddp,
)
from legoml.core.engine import Engine, StepFn
from legoml.core.errors import (
    CallbackError,
    CoreError,
    DistributedError,
    EngineError,
    MetricNotFoundError,
    NonFiniteLossError,
    ResumeError,
)
from legoml.core.events import Events, FilteredEvent, RemovableHandle
from legoml.core.protocols import CheckpointSaver, MetricLike, ScalarSink, StatefulLike
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
from legoml.core.steps import (
    AmpSetting,
    make_supervised_eval_step,
    make_supervised_train_step,
    resolve_amp_dtype,
)

__all__ = [
    "AmpSetting",
    "Callback",
    "CallbackError",
    "CheckpointCallback",
    "CheckpointSaver",
    "Context",
    "CoreError",
    "DictStepOutput",
    "DistributedError",
    "DistributedInfo",
    "EMACallback",
    "EarlyStopping",
    "Engine",
    "EngineError",
    "EvalOnEpochEndCallback",
    "Events",
    "FilteredEvent",
    "LRSchedulerCallback",
    "LoggingCallback",
    "MetricLike",
    "MetricNotFoundError",
    "MetricsCallback",
    "NonFiniteLossError",
    "NonFiniteLossGuard",
    "Priority",
    "ProgressBarCallback",
    "RemovableHandle",
    "ResumeError",
    "ScalarSink",
    "State",
    "StatefulLike",
    "StepFn",
    "StepOutput",
    "SupervisedStepOutput",
    "TimerCallback",
    "UnsupervisedStepOutput",
    "atomic_torch_save",
    "barrier",
    "checkpoint_name",
    "cpu_supports_bf16",
    "destroy_distributed",
    "detect_device",
    "distributed_session",
    "get_local_rank",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "keep_freed_memory",
    "make_reconstruction_eval_step",
    "make_reconstruction_train_step",
    "make_supervised_eval_step",
    "make_supervised_train_step",
    "move_to_device",
    "release_ddp",
    "resolve_amp_dtype",
    "seed_everything",
    "unwrap_model",
    "wrap_ddp",
]
