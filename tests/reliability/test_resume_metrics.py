"""In-process: an epoch interrupted and resumed reports the same epoch metrics as an
uninterrupted one (the metric accumulators travel in the checkpoint)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from reliability_helpers import assert_same_tree
from torch import nn

from legoml.core import Context, Engine, Events, MetricsCallback, make_supervised_train_step
from legoml.metrics import MeanLoss, MultiClassAccuracy

EPOCHS = 2


def _data() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(60, 6, generator=generator)
    y = torch.randint(0, 3, (60,), generator=generator)
    return [(x[i : i + 10], y[i : i + 10]) for i in range(0, 60, 10)]  # 6 steps an epoch


def _engine() -> tuple[Engine, Context]:
    torch.manual_seed(0)
    model = nn.Linear(6, 3)
    context = Context(model, torch.optim.SGD(model.parameters(), lr=0.5), nn.CrossEntropyLoss())
    metrics = MetricsCallback({"accuracy": MultiClassAccuracy()}, loss=MeanLoss())
    return Engine(make_supervised_train_step(), context, [metrics]), context


def _epoch_metrics(engine: Engine, log: list[dict[str, float]]) -> None:
    engine.add_event_handler(Events.EPOCH_END, lambda e, c: log.append(dict(e.state.metrics)))


@pytest.mark.parametrize("stop_at", [1, 4, 6, 9])
def test_epoch_metrics_survive_a_mid_epoch_resume(stop_at: int, tmp_path: Path) -> None:
    full, _ = _engine()
    expected: list[dict[str, float]] = []
    _epoch_metrics(full, expected)
    full.loop(_data(), max_epochs=EPOCHS)

    first, context = _engine()
    seen: list[dict[str, float]] = []
    _epoch_metrics(first, seen)
    first.add_event_handler(Events.STEP_END(once=stop_at), lambda e, c: e.terminate())
    first.loop(_data(), max_epochs=EPOCHS)
    path = tmp_path / "state.pt"
    torch.save({"engine": first.state_dict(), "context": context.state_dict()}, path)
    saved = torch.load(path, weights_only=True)

    resumed, resumed_context = _engine()
    _epoch_metrics(resumed, seen)
    resumed_context.load_state_dict(saved["context"])
    resumed.load_state_dict(saved["engine"])
    resumed.loop(_data())
    assert seen == expected
    assert_same_tree(resumed_context.state_dict(), full.context.state_dict(), "context")
