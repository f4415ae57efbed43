"""Behaviour of every built-in callback."""

from __future__ import annotations

import io
import math
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import structlog
import torch
import torch.nn.functional as F
from core_helpers import Accuracy, MeanLoss, toy_data
from structlog.testing import capture_logs

from legoml.core import (
    CheckpointCallback,
    Context,
    EarlyStopping,
    Engine,
    EvalOnEpochEndCallback,
    Events,
    LoggingCallback,
    LRSchedulerCallback,
    MetricsCallback,
    NonFiniteLossError,
    NonFiniteLossGuard,
    ProgressBarCallback,
    SupervisedStepOutput,
    TimerCallback,
    make_supervised_eval_step,
    make_supervised_train_step,
)
from legoml.core.callbacks import atomic_torch_save, metric_name
from legoml.core.errors import CallbackError


def fixed_outputs(outputs: list[SupervisedStepOutput]) -> Any:
    def step(engine: Engine, batch: Any, context: Context) -> SupervisedStepOutput:
        return outputs[(engine.state.global_step - 1) % len(outputs)]

    return step


def out(preds: list[list[float]], targets: list[int], loss: float = 1.0) -> SupervisedStepOutput:
    return SupervisedStepOutput(torch.tensor(loss), torch.tensor(preds), torch.tensor(targets))


def training(lr: float = 0.1) -> tuple[Context, list[tuple[torch.Tensor, torch.Tensor]]]:
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 3)
    context = Context(model, torch.optim.SGD(model.parameters(), lr=lr), F.cross_entropy)
    x, y = toy_data(n=32)
    return context, [(x[i : i + 8], y[i : i + 8]) for i in range(0, 32, 8)]


# ---------------------------------------------------------------- MetricsCallback
def test_metrics_callback_computes_per_epoch_and_resets() -> None:
    outputs = [
        out([[1, 0], [0, 1]], [0, 0], loss=2.0),
        out([[1, 0], [1, 0], [0, 1], [0, 1]], [0, 0, 1, 1], loss=0.5),
    ]
    per_epoch: list[dict[str, float]] = []
    engine = Engine(
        fixed_outputs(outputs),
        Context(torch.nn.Identity()),
        [MetricsCallback([Accuracy()], loss=MeanLoss())],
    )
    engine.add_event_handler(Events.EPOCH_END, lambda e, c: per_epoch.append(dict(e.state.metrics)))
    engine.loop([0, 1], max_epochs=2)
    expected = {
        "train/accuracy": pytest.approx(5 / 6),
        "train/loss": pytest.approx((2.0 * 2 + 0.5 * 4) / 6),
    }
    assert per_epoch == [expected, expected]  # reset at each epoch start


def test_metrics_callback_flattens_dicts_and_keeps_non_scalars() -> None:
    class Report:
        def reset(self) -> None:
            self.n = 0

        def update(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
            self.n += len(targets)

        def compute(self) -> dict[str, Any]:
            return {
                "count": self.n,
                "nested": {"half": torch.tensor(self.n / 2)},
                "matrix": torch.eye(2),
            }

    callback = MetricsCallback({"report": Report()}, prefix="val/")
    engine = Engine(fixed_outputs([out([[1, 0]], [0])]), Context(torch.nn.Identity()), [callback])
    metrics = engine.loop([0, 1, 2]).metrics
    assert metrics == {"val/report/count": 3.0, "val/report/nested/half": 1.5, "val/loss": 1.0}
    assert torch.equal(callback.results["report"]["matrix"], torch.eye(2))


def test_metric_names_and_bad_metrics() -> None:
    class MultiClassAccuracy(Accuracy):
        name = ""

    class BinaryF1Score(Accuracy):
        name = ""

    assert metric_name(MultiClassAccuracy()) == "accuracy"
    assert metric_name(BinaryF1Score()) == "f1_score"
    assert metric_name(Accuracy()) == "accuracy"
    with pytest.raises(CallbackError, match="both named 'accuracy'"):
        MetricsCallback([Accuracy(), Accuracy()])
    with pytest.raises(CallbackError, match=r"lacks update, compute, reset\(\)"):
        MetricsCallback({"x": object()})  # type: ignore[dict-item]
    with pytest.raises(CallbackError, match="reserved"):
        MetricsCallback({"loss": Accuracy()}, loss=MeanLoss())


def test_metrics_callback_explains_outputs_without_predictions() -> None:
    engine = Engine(
        lambda e, b, c: {"loss": torch.tensor(1.0)},
        Context(torch.nn.Identity()),
        [MetricsCallback([Accuracy()])],
    )
    with pytest.raises(CallbackError, match="predictions and targets"):
        engine.loop([0])


def test_metrics_callback_loss_only_with_dict_outputs() -> None:
    step = lambda e, b, c: {"loss": torch.tensor(float(b)), "targets": torch.zeros(2)}  # noqa: E731
    engine = Engine(step, Context(torch.nn.Identity()), [MetricsCallback(loss=MeanLoss())])
    assert engine.loop([1, 3]).metrics == {"train/loss": 2.0}


# ---------------------------------------------------------------- EvalOnEpochEndCallback
def test_eval_callback_runs_every_n_epochs_and_after_the_last() -> None:
    context, batches = training()
    evaluator = Engine(
        make_supervised_eval_step(),
        context,
        [MetricsCallback([Accuracy()], loss=MeanLoss(), prefix="")],
    )
    runs: list[int] = []
    evaluator.add_event_handler(Events.ENGINE_START, lambda e, c: runs.append(trainer.state.epoch))
    cb = EvalOnEpochEndCallback(evaluator, batches[:2], every_n_epochs=2)
    trainer = Engine(make_supervised_train_step(), context, [cb, MetricsCallback([Accuracy()])])
    state = trainer.loop(batches, max_epochs=5)
    assert runs == [2, 4, 5]
    assert set(state.metrics) == {"train/accuracy", "train/loss", "val/accuracy", "val/loss"}
    assert cb.last_metrics == {k: v for k, v in state.metrics.items() if k.startswith("val/")}
    assert state.timings["eval"] > 0
    assert context.model.training is False  # the evaluator left the model in eval mode
    with pytest.raises(CallbackError, match="every_n_epochs"):
        EvalOnEpochEndCallback(evaluator, batches, every_n_epochs=0)


def test_eval_metrics_feed_checkpoint_and_early_stopping_in_order(tmp_path: Path) -> None:
    context, batches = training()
    evaluator = Engine(
        make_supervised_eval_step(), context, [MetricsCallback(loss=MeanLoss(), prefix="val/")]
    )
    ckpt = CheckpointCallback(tmp_path, best_metric="val/loss", mode="min")
    stopper = EarlyStopping("val/loss", patience=1)
    # deliberately listed in the "wrong" order: priorities put evaluation first
    trainer = Engine(
        make_supervised_train_step(),
        context,
        [ckpt, stopper, EvalOnEpochEndCallback(evaluator, batches)],
    )
    trainer.loop(batches, max_epochs=2)
    assert stopper.best is not None and ckpt.best_score == stopper.best
    assert (tmp_path / "best.pt").exists()


# ---------------------------------------------------------------- ProgressBarCallback
def test_progress_bar_shows_loss_metrics_and_throughput() -> None:
    stream = io.StringIO()
    context, batches = training()
    bar = ProgressBarCallback(file=stream, refresh_every=1, postfix_every=2, mininterval=0)
    Engine(make_supervised_train_step(), context, [bar, MetricsCallback([Accuracy()])]).loop(
        batches, max_epochs=2
    )
    text = stream.getvalue()
    assert "epoch 1/2" in text and "epoch 2/2" in text and "4/4" in text
    assert "loss=" in text and "samples/s=" in text and "train/accuracy=" in text
    assert bar.bar is None  # closed after every epoch


def test_progress_bar_disabled_and_closed_on_exception() -> None:
    stream = io.StringIO()
    Engine(
        lambda e, b, c: {"loss": None},
        Context(torch.nn.Identity()),
        [ProgressBarCallback(file=stream, disable=True)],
    ).loop([1, 2])
    assert stream.getvalue() == ""
    bar = ProgressBarCallback(file=stream)

    def boom(e: Engine, b: Any, c: Context) -> None:
        raise RuntimeError("x")

    with pytest.raises(RuntimeError):
        Engine(boom, Context(torch.nn.Identity()), [bar]).loop([1])
    assert bar.bar is None
    with pytest.raises(CallbackError, match="refresh_every"):
        ProgressBarCallback(refresh_every=0)


def test_progress_bar_starts_at_the_resumed_step() -> None:
    stream = io.StringIO()
    engine = Engine(
        lambda e, b, c: {"loss": None},
        Context(torch.nn.Identity()),
        [ProgressBarCallback(file=stream, refresh_every=1)],
    )
    engine.add_event_handler(Events.STEP_END(once=3), lambda e, c: e.terminate())
    engine.loop(list(range(5)))
    state = engine.state_dict()
    stream.truncate(0)
    engine.load_state_dict(state)
    engine.loop(list(range(5)))
    assert " 3/5" in stream.getvalue() and " 5/5" in stream.getvalue()


# ---------------------------------------------------------------- LoggingCallback
class _Sink:
    def __init__(self) -> None:
        self.rows: list[tuple[dict[str, float], int, int | None]] = []

    def log_scalars(self, values: Mapping[str, float], step: int, epoch: int | None = None) -> None:
        self.rows.append((dict(values), step, epoch))


def test_logging_callback_logs_run_epochs_and_steps() -> None:
    context, batches = training()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the sink-less callback is not deprecated
        cb = LoggingCallback(every_n_steps=2, name="train")
    with capture_logs() as logs:
        Engine(make_supervised_train_step(), context, [cb, MetricsCallback(loss=MeanLoss())]).loop(
            batches, max_epochs=2
        )
    events = [entry["event"] for entry in logs]
    assert events == ["train_start"] + (["train_step"] * 2 + ["train_epoch"]) * 2 + ["train_end"]
    step_logs = [entry for entry in logs if entry["event"] == "train_step"]
    assert [entry["global_step"] for entry in step_logs] == [2, 4, 6, 8]
    assert all(isinstance(entry["loss"], float) for entry in step_logs)
    epoch_logs = [entry for entry in logs if entry["event"] == "train_epoch"]
    assert [entry["global_step"] for entry in epoch_logs] == [4, 8]
    assert "train/loss" in epoch_logs[0]["metrics"]


def test_logging_callback_sink_is_deprecated_but_still_receives_epoch_metrics() -> None:
    sink = _Sink()
    context, batches = training()
    with pytest.warns(
        DeprecationWarning, match=r"LoggingCallback\(sink=\.\.\.\) is deprecated"
    ) as caught:
        cb = LoggingCallback(sink=sink, logger=_null_logger())
    assert "legoml.track.TrackingCallback" in str(caught[0].message)
    assert caught[0].filename == __file__  # points at the caller's line
    Engine(make_supervised_train_step(), context, [cb, MetricsCallback(loss=MeanLoss())]).loop(
        batches, max_epochs=2
    )
    assert [row[1:] for row in sink.rows] == [(4, 1), (8, 2)] and "train/loss" in sink.rows[0][0]


def test_logging_callback_step_handler_lives_only_while_the_loop_runs() -> None:
    # Per-step logging is a filtered handler attached at ENGINE_START: nothing runs per
    # step without every_n_steps, and nothing is left on the engine after loop() ends.
    context, batches = training()
    quiet = Engine(make_supervised_train_step(), context, [LoggingCallback(logger=_null_logger())])
    quiet.loop(batches)
    assert quiet._compiled[Events.STEP_END] == ()
    chatty = LoggingCallback(every_n_steps=3, logger=_null_logger())
    engine = Engine(make_supervised_train_step(), context, [chatty])
    seen: list[int] = []
    engine.add_event_handler(
        Events.STEP_END, lambda e, c: seen.append(len(e._compiled[Events.STEP_END]))
    )
    engine.loop(batches, max_epochs=2)
    assert set(seen) == {2} and engine._entries[-1].event is Events.STEP_END
    assert len(engine._entries) == 1  # only the test's own handler remains
    with capture_logs() as logs:  # a second loop() attaches it again, once
        engine.loop(batches, max_epochs=1)
    assert [e["global_step"] for e in logs if e["event"] == "engine_step"] == [3]

    def fail_at_2(e: Engine, b: Any, c: Context) -> Any:
        if e.state.step == 2:
            raise ValueError("stop")
        return {"loss": torch.tensor(1.0)}

    failing = Engine(fail_at_2, context, [LoggingCallback(every_n_steps=1, logger=_null_logger())])
    with pytest.raises(ValueError):
        failing.loop(batches)
    assert failing._entries == []


def _null_logger() -> Any:
    return structlog.wrap_logger(structlog.ReturnLogger())


def test_logging_callback_logs_failures_and_rejects_bad_interval() -> None:
    def boom(e: Engine, b: Any, c: Context) -> None:
        raise ValueError("broken input")

    with capture_logs() as logs, pytest.raises(ValueError):
        Engine(boom, Context(torch.nn.Identity()), [LoggingCallback()]).loop([1])
    assert logs[-1]["event"] == "engine_failed" and "broken input" in logs[-1]["error"]
    assert logs[-1]["log_level"] == "error"
    with pytest.raises(CallbackError, match="every_n_steps"):
        LoggingCallback(every_n_steps=0)
    assert isinstance(LoggingCallback(logger=structlog.get_logger("x")).logger, object)


# ---------------------------------------------------------------- CheckpointCallback
def test_checkpoint_keep_last_and_file_content(tmp_path: Path) -> None:
    context, batches = training()
    cb = CheckpointCallback(
        tmp_path,
        every_n_steps=3,
        every_n_epochs=1,
        keep_last=2,
        config={"lr": 0.1},
        extra=lambda: {"note": "x"},
    )
    Engine(make_supervised_train_step(), context, [cb]).loop(batches, max_epochs=3)
    # saves at steps 3, 4 (epoch), 6, 8 (epoch), 9, 12 (both: once) -> keep the last two
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000009.pt", "step-00000012.pt"]
    assert cb.saved == ["step-00000009.pt", "step-00000012.pt"]
    ckpt = torch.load(tmp_path / "step-00000012.pt", weights_only=True)
    assert set(ckpt) == {"engine", "context", "epoch", "global_step", "metrics", "config", "extra"}
    assert (ckpt["epoch"], ckpt["global_step"], ckpt["config"], ckpt["extra"]) == (
        3,
        12,
        {"lr": 0.1},
        {"note": "x"},
    )
    assert ckpt["engine"]["epoch_complete"] is True
    assert ckpt["engine"]["callbacks"]["CheckpointCallback"]["saved"] == cb.saved
    assert torch.equal(ckpt["context"]["model"]["weight"], context.model.weight)
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind


@pytest.mark.parametrize(("mode", "best_epoch"), [("max", 3), ("min", 2)])
def test_checkpoint_best_by_metric(tmp_path: Path, mode: str, best_epoch: int) -> None:
    scores = {1: 0.2, 2: 0.1, 3: 0.9}
    engine = Engine(lambda e, b, c: {"loss": torch.tensor(0.0)}, Context(torch.nn.Linear(1, 1)))
    engine.add_event_handler(
        Events.EPOCH_END, lambda e, c: e.state.metrics.update({"val/acc": scores[e.state.epoch]})
    )
    cb = CheckpointCallback(tmp_path, every_n_epochs=None, best_metric="val/acc", mode=mode)  # type: ignore[arg-type]
    engine.callbacks.append(cb)
    engine.loop([0, 1], max_epochs=3)
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["epoch"] == best_epoch and best["metrics"]["val/acc"] == scores[best_epoch]
    assert cb.best_score == scores[best_epoch] and cb.best_step == 2 * best_epoch


def test_checkpoint_warns_when_best_metric_is_missing(tmp_path: Path) -> None:
    cb = CheckpointCallback(tmp_path, every_n_epochs=None, best_metric="val/nope")
    with capture_logs() as logs:
        Engine(lambda e, b, c: {"loss": None}, Context(torch.nn.Linear(1, 1)), [cb]).loop([0])
    assert logs[-1]["event"] == "best_metric_missing" and not list(tmp_path.iterdir())


def test_checkpoint_refuses_non_finite_state_and_keeps_the_last_good_one(tmp_path: Path) -> None:
    losses = [1.0, 0.5, float("nan")]
    engine = Engine(
        lambda e, b, c: {"loss": torch.tensor(losses[e.state.global_step - 1])},
        Context(torch.nn.Linear(1, 1)),
    )
    engine.callbacks.append(CheckpointCallback(tmp_path, every_n_steps=1, every_n_epochs=None))
    with pytest.raises(NonFiniteLossError, match="global step 3; checkpoint not written"):
        engine.loop([0, 1, 2])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000001.pt", "step-00000002.pt"]
    model = torch.nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.fill_(float("inf"))
    engine = Engine(
        lambda e, b, c: {"loss": torch.tensor(1.0)},
        Context(model),
        [CheckpointCallback(tmp_path / "w")],
    )
    with pytest.raises(NonFiniteLossError, match="non-finite model weights"):
        engine.loop([0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"every_n_steps": 0}, "every_n_steps"),
        ({"keep_last": 0}, "keep_last"),
        ({"mode": "best"}, "mode"),
        ({"every_n_epochs": None}, "saves nothing"),
    ],
)
def test_checkpoint_bad_arguments(tmp_path: Path, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(CallbackError, match=match):
        CheckpointCallback(tmp_path, **kwargs)


def test_atomic_save_keeps_the_old_file_when_saving_fails(tmp_path: Path) -> None:
    path = tmp_path / "step-00000001.pt"
    atomic_torch_save(path, {"a": torch.ones(1)})

    class Unpicklable:
        def __reduce__(self) -> Any:
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        atomic_torch_save(path, {"a": Unpicklable()})
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(1))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


# ---------------------------------------------------------------- EarlyStopping
def test_early_stopping_stops_after_patience_and_survives_resume() -> None:
    values = [1.0, 0.8, 0.85, 0.79, 0.9, 0.95, 0.7]
    engine = Engine(lambda e, b, c: {"loss": None}, Context(torch.nn.Identity()))
    engine.add_event_handler(
        Events.EPOCH_END,
        lambda e, c: e.state.metrics.update({"val/loss": values[e.state.epoch - 1]}),
    )
    stopper = EarlyStopping("val/loss", mode="min", patience=2, min_delta=0.005)
    engine.callbacks.append(stopper)
    state = engine.loop([0], max_epochs=7)
    assert state.epoch == 6 and stopper.stopped_epoch == 6 and stopper.best == 0.79
    saved = engine.state_dict()
    fresh_stopper = EarlyStopping("val/loss", mode="min", patience=2)
    fresh = Engine(lambda e, b, c: {"loss": None}, Context(torch.nn.Identity()), [fresh_stopper])
    fresh.load_state_dict(saved)
    assert fresh.loop([0], max_epochs=10).epoch == 6  # already stopped: ends at once
    assert fresh_stopper.best == 0.79


def test_early_stopping_max_mode_missing_metric_and_bad_args() -> None:
    engine = Engine(
        lambda e, b, c: {"loss": None},
        Context(torch.nn.Identity()),
        [EarlyStopping("val/acc", mode="max", patience=1)],
    )
    with capture_logs() as logs:
        assert engine.loop([0], max_epochs=3).epoch == 3
    assert [entry["event"] for entry in logs] == ["early_stopping_metric_missing"] * 3
    engine.add_event_handler(
        Events.EPOCH_END(filter=lambda e, n: True),
        lambda e, c: e.state.metrics.update({"val/acc": 0.5}),
        priority=-100,
    )
    assert engine.loop([0], max_epochs=5).epoch == 2
    for kwargs in ({"mode": "up"}, {"patience": 0}, {"min_delta": -1.0}):
        with pytest.raises(CallbackError):
            EarlyStopping(**kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- LRSchedulerCallback
def test_lr_scheduler_per_step_and_per_epoch() -> None:
    context, batches = training(lr=1.0)
    assert context.optimizer is not None
    context.scheduler = torch.optim.lr_scheduler.StepLR(context.optimizer, step_size=1, gamma=0.5)
    state = Engine(
        make_supervised_train_step(), context, [LRSchedulerCallback(interval="step")]
    ).loop(batches, max_epochs=2)
    assert context.optimizer.param_groups[0]["lr"] == 0.5**8 and state.metrics["train/lr"] == 0.5**8

    context, batches = training(lr=1.0)
    assert context.optimizer is not None
    sched = torch.optim.lr_scheduler.StepLR(context.optimizer, step_size=1, gamma=0.5)
    cb = LRSchedulerCallback(sched, interval="epoch", lr_key=None)
    state = Engine(make_supervised_train_step(), context, [cb]).loop(batches, max_epochs=3)
    assert context.optimizer.param_groups[0]["lr"] == 0.125 and "train/lr" not in state.metrics
    assert cb.state_dict()["scheduler"]["last_epoch"] == 3


def test_lr_scheduler_reduce_on_plateau_uses_monitor() -> None:
    context, batches = training(lr=1.0)
    assert context.optimizer is not None
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(context.optimizer, patience=0, factor=0.1)
    engine = Engine(
        make_supervised_train_step(), context, [LRSchedulerCallback(plateau, monitor="val/loss")]
    )
    engine.add_event_handler(
        Events.EPOCH_END, lambda e, c: e.state.metrics.update({"val/loss": 1.0}), priority=-50
    )
    engine.loop(batches, max_epochs=3)
    assert context.optimizer.param_groups[0]["lr"] == pytest.approx(0.01)
    with pytest.raises(CallbackError, match="monitor"):
        LRSchedulerCallback(plateau)
    missing = Engine(
        make_supervised_train_step(), context, [LRSchedulerCallback(plateau, monitor="val/x")]
    )
    with pytest.raises(CallbackError, match="'val/x'"):
        missing.loop(batches)


def test_lr_scheduler_needs_a_scheduler_and_a_valid_interval() -> None:
    context, batches = training()
    with pytest.raises(CallbackError, match="no scheduler"):
        Engine(make_supervised_train_step(), context, [LRSchedulerCallback()]).loop(batches)
    with pytest.raises(CallbackError, match="interval"):
        LRSchedulerCallback(interval="batch")  # type: ignore[arg-type]


# ---------------------------------------------------------------- NonFiniteLossGuard
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_guard_stops_at_the_bad_step_before_the_checkpoint(tmp_path: Path, bad: float) -> None:
    losses = [1.0, 0.5, 0.4, bad, 0.3]
    seen: list[int] = []
    engine = Engine(
        lambda e, b, c: {"loss": torch.tensor(losses[e.state.global_step - 1])},
        Context(torch.nn.Linear(1, 1)),
    )
    ckpt = CheckpointCallback(tmp_path, every_n_steps=2, every_n_epochs=None, check_finite=False)
    engine.callbacks += [
        ckpt,
        NonFiniteLossGuard(),
    ]  # listed after the checkpoint, still runs first
    engine.add_event_handler(Events.STEP_END, lambda e, c: seen.append(e.state.global_step))
    with pytest.raises(
        NonFiniteLossError, match=rf"loss is {bad} at epoch 1, step 4 \(global step 4\)"
    ):
        engine.loop(list(range(5)))
    assert seen == [1, 2, 3]
    assert [p.name for p in tmp_path.iterdir()] == ["step-00000002.pt"]


def test_guard_check_every_and_per_sample_losses() -> None:
    engine = Engine(
        lambda e, b, c: {
            "loss": torch.tensor(float("nan")) if e.state.global_step == 3 else torch.tensor(1.0)
        },
        Context(torch.nn.Identity()),
        [NonFiniteLossGuard(check_every=2)],
    )
    assert engine.loop([0, 1, 2, 4, 5]).global_step == 5  # step 3 is not checked
    vector = Engine(
        lambda e, b, c: {"loss": torch.tensor([1.0, math.inf])},
        Context(torch.nn.Identity()),
        [NonFiniteLossGuard()],
    )
    with pytest.raises(NonFiniteLossError):
        vector.loop([0])
    assert (
        Engine(lambda e, b, c: {"loss": None}, Context(torch.nn.Identity()), [NonFiniteLossGuard()])
        .loop([0])
        .step
        == 1
    )
    with pytest.raises(CallbackError):
        NonFiniteLossGuard(check_every=0)


# ---------------------------------------------------------------- TimerCallback
def test_timer_writes_step_data_and_throughput() -> None:
    context, batches = training()
    state = Engine(make_supervised_train_step(), context, [TimerCallback()]).loop(batches)
    t = state.timings
    assert {"step", "data", "samples_per_s", "steps_per_s", "epoch", "total"} <= set(t)
    assert 0 < t["step"] < t["epoch"] and t["data"] >= 0
    assert t["samples_per_s"] == pytest.approx(8 * t["steps_per_s"])
    assert t["epoch"] <= t["total"]


def test_timer_splits_step_time_from_data_time() -> None:
    # A slow data source shows in "data", a slow step in "step"; samples count every batch
    # (the last one is smaller) and a resumed epoch counts only its remaining steps.
    class SlowData:
        def __init__(self, sizes: list[int], wait: float) -> None:
            self.sizes, self.wait = sizes, wait

        def __len__(self) -> int:
            return len(self.sizes)

        def __iter__(self) -> Any:
            for size in self.sizes:
                time.sleep(self.wait)
                yield (torch.zeros(size, 2), torch.zeros(size))

    def slow_step(e: Engine, b: Any, c: Context) -> Any:
        time.sleep(0.002)
        return {"loss": None}

    timer = TimerCallback()
    state = Engine(slow_step, Context(torch.nn.Identity()), [timer]).loop(
        SlowData([4, 4, 4, 1], wait=0.02)
    )
    t = state.timings
    assert t["data"] >= 0.02 and 0.002 <= t["step"] < 0.02
    assert t["samples_per_s"] * t["epoch"] == pytest.approx(13, rel=0.05)
    assert t["steps_per_s"] * t["epoch"] == pytest.approx(4, rel=0.05)
    engine = Engine(slow_step, Context(torch.nn.Identity()), [TimerCallback()])
    engine.state.step = 3  # an epoch resumed after 3 steps: one step left
    timer2 = engine.callbacks[0]
    timer2.on_epoch_start(engine, engine.context)
    timer2.on_step_start(engine, engine.context)
    engine.state.step, engine.state.batch = 4, (torch.zeros(1, 2), torch.zeros(1))
    timer2.on_step_end(engine, engine.context)
    timer2.on_epoch_end(engine, engine.context)
    resumed = engine.state.timings
    assert resumed["samples_per_s"] == pytest.approx(resumed["steps_per_s"])  # 1 sample, 1 step
    assert resumed["step"] > 0


def test_metrics_callback_running_values_every_n_steps() -> None:
    from legoml.core import Context, Engine, Events, MetricsCallback

    class Seen:
        def reset(self) -> None:
            self.n = 0

        def update(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
            self.n += len(targets)

        def compute(self) -> int:
            return self.n

    seen: list[float | None] = []
    step = lambda e, b, c: {"loss": None, "predictions": b, "targets": b}  # noqa: E731
    engine = Engine(
        step, Context(torch.nn.Identity()), [MetricsCallback({"seen": Seen()}, running_every=2)]
    )
    engine.add_event_handler(
        Events.STEP_END, lambda e, c: seen.append(e.state.metrics.get("train/seen"))
    )
    engine.loop([torch.zeros(4)] * 5)
    assert seen == [None, 8.0, 8.0, 16.0, 16.0]
    assert engine.state.metrics["train/seen"] == 20.0
    with pytest.raises(Exception, match="running_every"):
        MetricsCallback({"seen": Seen()}, running_every=0)
