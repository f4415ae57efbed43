"""Fail fast: wrong monitored names raise, default names are honest, dict batches work."""

from __future__ import annotations

import dataclasses
from collections import namedtuple
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from core_helpers import toy_data
from structlog.testing import capture_logs

from legoml.core import (
    CheckpointCallback,
    Context,
    EarlyStopping,
    Engine,
    EvalOnEpochEndCallback,
    Events,
    MetricsCallback,
    make_reconstruction_eval_step,
    make_reconstruction_train_step,
    make_supervised_eval_step,
    make_supervised_train_step,
)
from legoml.core.callbacks.metrics import _MeanLoss
from legoml.core.errors import CallbackError, EngineError, MetricNotFoundError
from legoml.core.steps import _default_prepare


class Accuracy:
    def reset(self) -> None:
        self.hits, self.total = 0, 0

    def update(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        self.hits += int((predictions.argmax(dim=1) == targets).sum())
        self.total += len(targets)

    def compute(self) -> float:
        return self.hits / max(self.total, 1)


def training() -> tuple[Context, list[tuple[torch.Tensor, torch.Tensor]]]:
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 3)
    context = Context(model, torch.optim.SGD(model.parameters(), lr=0.1), F.cross_entropy)
    x, y = toy_data(n=32)
    return context, [(x[i : i + 8], y[i : i + 8]) for i in range(0, 32, 8)]


def reporting(values: dict[str, float], callback: Any) -> Engine:
    engine = Engine(lambda e, b, c: {"loss": None}, Context(torch.nn.Linear(1, 1)), [callback])
    engine.add_event_handler(Events.EPOCH_END, lambda e, c: e.state.metrics.update(values))
    return engine


# ---------------------------------------------------------------- 1. missing monitored names
@pytest.mark.parametrize("kind", ["early_stopping", "checkpoint"])
def test_a_misspelt_monitor_raises_with_a_did_you_mean(tmp_path: Path, kind: str) -> None:
    callback: Any = (
        EarlyStopping("val/acc", mode="max")
        if kind == "early_stopping"
        else CheckpointCallback(tmp_path, every_n_epochs=None, best_metric="val/acc")
    )
    engine = reporting({"val/accuracy": 0.5, "val/loss": 1.0}, callback)
    with pytest.raises(MetricNotFoundError) as info:
        engine.loop([0], max_epochs=3)
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, CallbackError)
    assert "'val/acc'" in message and "did you mean 'val/accuracy'?" in message
    assert "['val/accuracy', 'val/loss']" in message and "strict=False" in message
    assert engine.state.epoch == 1  # at the first epoch end, not after the run


def test_strict_false_keeps_the_warning(tmp_path: Path) -> None:
    stopper = EarlyStopping("val/acc", strict=False)
    ckpt = CheckpointCallback(tmp_path, every_n_epochs=None, best_metric="val/acc", strict=False)
    engine = reporting({"val/accuracy": 0.5}, stopper)
    engine.callbacks.append(ckpt)
    with capture_logs() as logs:
        assert engine.loop([0], max_epochs=2).epoch == 2
    events = [entry["event"] for entry in logs]
    assert events.count("early_stopping_metric_missing") == 2
    assert events.count("best_metric_missing") == 2


def test_a_monitor_whose_source_has_not_reported_yet_is_not_an_error() -> None:
    context, batches = training()
    evaluator = Engine(make_supervised_eval_step(), context, [MetricsCallback([Accuracy()])])
    stopper = EarlyStopping(patience=5)  # default monitor: val/loss
    trainer = Engine(
        make_supervised_train_step(),
        context,
        [MetricsCallback(), EvalOnEpochEndCallback(evaluator, batches, every_n_epochs=2), stopper],
    )
    state = trainer.loop(batches, max_epochs=4)  # epochs 1 and 3 have train/ metrics only
    assert state.epoch == 4 and stopper.best is not None


# ---------------------------------------------------------------- 2. honest default names
def test_metrics_callback_reports_a_sample_weighted_mean_loss_by_default() -> None:
    outputs = [(torch.tensor(1.0), torch.zeros(1)), (torch.tensor(4.0), torch.zeros(3))]
    step = lambda e, b, c: {"loss": outputs[b][0], "targets": outputs[b][1]}  # noqa: E731
    engine = Engine(step, Context(torch.nn.Identity()), [MetricsCallback()])
    assert engine.loop([0, 1]).metrics == {"train/loss": 3.25}  # (1*1 + 4*3) / 4
    opted_out = Engine(step, Context(torch.nn.Identity()), [MetricsCallback(loss=None)])
    assert opted_out.loop([0, 1]).metrics == {}
    no_loss = lambda e, b, c: {"loss": None, "targets": torch.zeros(2)}  # noqa: E731
    assert (
        Engine(no_loss, Context(torch.nn.Identity()), [MetricsCallback()]).loop([0]).metrics == {}
    )


def test_the_default_mean_loss_resumes_and_reduces() -> None:
    mean = _MeanLoss()
    mean.update(torch.tensor(2.0), torch.zeros(2))
    fresh = _MeanLoss()
    fresh.load_state_dict(mean.state_dict())
    fresh.update(torch.tensor([5.0]), None)
    assert fresh.compute() == 3.0 and fresh.count == 3
    mean.all_reduce()  # no process group: nothing to do
    assert mean.compute() == 2.0


def test_the_default_mean_loss_all_reduces_under_a_process_group(tmp_path: Path) -> None:
    store = f"file://{tmp_path / 'store'}"
    dist.init_process_group("gloo", init_method=store, rank=0, world_size=1)
    try:
        mean = _MeanLoss()
        mean.update(torch.tensor(3.0), torch.zeros(4))
        mean.all_reduce()
        assert mean.compute() == 3.0 and mean.count == 4
        empty = _MeanLoss()
        empty.all_reduce()  # a rank without losses still joins the collective
        assert empty.count == 0
    finally:
        dist.destroy_process_group()


def test_evaluator_metrics_at_the_default_prefix_become_val_names_once() -> None:
    context, batches = training()
    evaluator = Engine(make_supervised_eval_step(), context, [MetricsCallback([Accuracy()])])
    stopper = EarlyStopping(patience=5)  # val/loss, produced by the defaults
    trainer = Engine(
        make_supervised_train_step(),
        context,
        [MetricsCallback([Accuracy()]), EvalOnEpochEndCallback(evaluator, batches), stopper],
    )
    state = trainer.loop(batches, max_epochs=2)
    assert set(state.metrics) == {"train/accuracy", "train/loss", "val/accuracy", "val/loss"}
    assert stopper.best is not None


# ---------------------------------------------------------------- 3. dict batches
@dataclasses.dataclass
class Batch:
    image: torch.Tensor
    label: torch.Tensor
    index: int = 0


Triple = namedtuple("Triple", ["inputs", "targets", "ids"])


def test_dict_dataclass_and_namedtuple_batches_work_with_the_supervised_steps() -> None:
    context, batches = training()
    layouts: list[list[Any]] = [
        [{"x": x, "y": y} for x, y in batches],
        [{"images": x, "labels": y, "path": "p"} for x, y in batches],
        [Batch(x, y) for x, y in batches],
        [Triple(x, y, 0) for x, y in batches],
    ]
    for data in layouts:
        assert Engine(make_supervised_train_step(), context).loop(data).global_step == 4
        out = Engine(make_supervised_eval_step(), context).loop(data).output
        assert out.targets is batches[-1][1]  # type: ignore[union-attr]
    keyed = [{"feat": x, "cls": y} for x, y in batches]
    step = make_supervised_train_step(input_key="feat", target_key="cls")
    assert Engine(step, context).loop(keyed).global_step == 4


def test_unknown_dict_batches_are_explained_in_one_line() -> None:
    context, batches = training()
    with pytest.raises(EngineError) as info:
        Engine(make_supervised_train_step(), context).loop([{"feat": batches[0][0], "cls": 1}])
    assert str(info.value) == (
        "supervised steps need (inputs, targets) batches or a dict with input/target keys, "
        "got dict with keys ['cls', 'feat']; pass input_key=/target_key= or prepare_batch="
    )
    with pytest.raises(EngineError, match="not both"):
        make_supervised_eval_step(prepare_batch=_default_prepare, input_key="x")


def test_the_tuple_hot_path_is_unchanged() -> None:
    x, y = torch.zeros(2, 3), torch.zeros(2)
    inputs, targets = _default_prepare((x, y), torch.device("cpu"), True)
    assert inputs is x and targets is y


def test_dict_batches_work_with_the_reconstruction_steps() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 4)
    context = Context(model, torch.optim.SGD(model.parameters(), lr=0.1))
    x = torch.randn(8, 4)
    train = make_reconstruction_train_step(amp=None)
    assert Engine(train, context).loop([{"image": x, "label": 0}]).global_step == 1
    keyed = make_reconstruction_eval_step(amp=None, input_key="noisy", target_key="clean")
    out = Engine(keyed, context).loop([{"noisy": x + 1, "clean": x}]).output
    assert out.targets is x  # type: ignore[union-attr]
