"""Handler order users can rely on: built-ins in the documented Priority order, and
``Priority.AFTER_BUILTINS`` runs after all of them (e.g. after the epoch's LR step)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from legoml.core import (
    Callback,
    CheckpointCallback,
    Context,
    EarlyStopping,
    Engine,
    EvalOnEpochEndCallback,
    Events,
    LoggingCallback,
    LRSchedulerCallback,
    MetricsCallback,
    NonFiniteLossGuard,
    Priority,
    ProgressBarCallback,
    TimerCallback,
    make_supervised_train_step,
)

DOCUMENTED = [  # (name, value) in run order, as in the Priority docstring and README
    ("GUARD", -100), ("TIMER", -50), ("METRICS", -20), ("EVALUATION", -10),
    ("DEFAULT", 0), ("SCHEDULER", 10), ("EARLY_STOPPING", 20), ("REPORTING", 30),
    ("CHECKPOINT", 50), ("AFTER_BUILTINS", 100),
]
BUILTINS = {
    NonFiniteLossGuard: "GUARD", TimerCallback: "TIMER", MetricsCallback: "METRICS",
    EvalOnEpochEndCallback: "EVALUATION", LRSchedulerCallback: "SCHEDULER",
    EarlyStopping: "EARLY_STOPPING", LoggingCallback: "REPORTING",
    ProgressBarCallback: "REPORTING", CheckpointCallback: "CHECKPOINT",
}


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(4, 3, generator=generator), torch.tensor([0, 1, 0, 1])) for _ in range(2)]


def engine_with_scheduler() -> tuple[Engine, torch.optim.Optimizer, MetricsCallback]:
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    metrics = MetricsCallback()
    callbacks: list[Any] = [LRSchedulerCallback(scheduler, interval="epoch"), metrics]
    engine = Engine(
        make_supervised_train_step(), Context(model, optimizer, nn.CrossEntropyLoss()), callbacks
    )
    return engine, optimizer, metrics


def test_priorities_have_the_documented_values_and_order() -> None:
    values = [getattr(Priority, name) for name, _ in DOCUMENTED]
    assert values == [value for _, value in DOCUMENTED]
    assert values == sorted(values)
    for cls, name in BUILTINS.items():
        assert cls.priority == getattr(Priority, name), cls.__name__
    assert Callback.priority == Priority.DEFAULT


def test_default_handler_sees_lr_before_the_epoch_step_after_builtins_sees_it_after() -> None:
    engine, optimizer, _ = engine_with_scheduler()
    seen: dict[str, list[float]] = {"default": [], "after": []}

    def record(key: str) -> Any:
        return lambda engine, context: seen[key].append(optimizer.param_groups[0]["lr"])

    engine.add_event_handler(Events.EPOCH_END, record("after"), priority=Priority.AFTER_BUILTINS)
    engine.add_event_handler(Events.EPOCH_END, record("default"))
    engine.loop(batches(), max_epochs=2)
    assert seen == {"default": [1.0, 0.5], "after": [0.5, 0.25]}


def test_callback_class_attribute_after_builtins_runs_last() -> None:
    engine, optimizer, _ = engine_with_scheduler()
    order: list[str] = []

    class Late(Callback):
        priority = Priority.AFTER_BUILTINS

        def on_epoch_end(self, engine: Engine, context: Context) -> None:
            order.append(f"late lr={optimizer.param_groups[0]['lr']}")

    class Early(Callback):
        def on_epoch_end(self, engine: Engine, context: Context) -> None:
            order.append(f"default lr={optimizer.param_groups[0]['lr']}")

    engine.callbacks.insert(0, Late())
    engine.callbacks.append(Early())
    engine.loop(batches(), max_epochs=1)
    assert order == ["default lr=1.0", "late lr=0.5"]


def test_builtins_run_in_documented_order_at_epoch_end() -> None:
    engine, _, metrics = engine_with_scheduler()
    order: list[str] = []
    scheduler_cb = engine.callbacks[0]
    for name, callback in (("scheduler", scheduler_cb), ("metrics", metrics)):
        hook = callback.on_epoch_end

        def traced(engine: Engine, context: Context, hook: Any = hook, name: str = name) -> None:
            order.append(name)
            hook(engine, context)

        callback.on_epoch_end = traced  # type: ignore[method-assign]
    engine.add_event_handler(
        Events.EPOCH_END, lambda e, c: order.append("user"), priority=Priority.DEFAULT
    )
    engine.add_event_handler(
        Events.EPOCH_END, lambda e, c: order.append("after"), priority=Priority.AFTER_BUILTINS
    )
    engine.loop(batches(), max_epochs=1)
    assert order == ["metrics", "user", "scheduler", "after"]
