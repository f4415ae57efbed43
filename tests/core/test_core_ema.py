"""EMACallback: the average itself, buffers, swapping, saving and exact resume."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from core_helpers import ResumableBatches, toy_data, train_step
from torch import nn

from legoml.core import (
    CheckpointCallback,
    Context,
    EMACallback,
    Engine,
    EvalOnEpochEndCallback,
    Events,
    MetricsCallback,
    ResumeError,
    SupervisedStepOutput,
)
from legoml.core.callbacks.ema import ema_decay
from legoml.core.errors import CallbackError


class BNNet(nn.Module):
    """BatchNorm (running stats, an int counter) and dropout (global RNG)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


def sgd_context(model: nn.Module, lr: float = 0.1) -> Context:
    return Context(model, torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9))


def batches(n: int = 40, size: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    x, y = toy_data(n=n)
    return [(x[i : i + size], y[i : i + size]) for i in range(0, n, size)]


def eval_step(engine: Engine, batch: Any, context: Context) -> SupervisedStepOutput:
    context.model.eval()
    with torch.no_grad():
        return SupervisedStepOutput(None, context.model(batch[0]), batch[1])


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_the_average_follows_the_formula_for_weights_and_bn_buffers() -> None:
    torch.manual_seed(0)
    model = BNNet()
    context = sgd_context(model)
    averaged = EMACallback(decay=0.8, warmup=False)
    copied = EMACallback(decay=0.8, warmup=False, buffers="copy")
    engine = Engine(train_step, context, [averaged, copied])
    seen: list[dict[str, torch.Tensor]] = [snapshot(model)]
    engine.add_event_handler(Events.STEP_END, lambda e, c: seen.append(snapshot(c.model)))
    engine.loop(batches(), max_epochs=2)
    expected = dict(seen[0])
    for weights in seen[1:]:
        expected = {
            k: 0.8 * v + 0.2 * weights[k] if v.is_floating_point() else weights[k].clone()
            for k, v in expected.items()
        }
    last = seen[-1]
    assert averaged.num_updates == averaged.num_steps == 10
    for key, value in averaged.shadow.items():
        assert value.dtype == (torch.float32 if last[key].is_floating_point() else last[key].dtype)
        torch.testing.assert_close(value, expected[key], rtol=1e-6, atol=1e-6)
    assert averaged.shadow["net.1.num_batches_tracked"].item() == 10  # copied, not averaged
    # buffers="copy": parameters averaged, BatchNorm statistics are the model's own
    assert torch.equal(copied.shadow["net.1.running_mean"], last["net.1.running_mean"])
    assert torch.equal(copied.shadow["net.1.running_var"], last["net.1.running_var"])
    assert not torch.equal(averaged.shadow["net.1.running_mean"], last["net.1.running_mean"])
    torch.testing.assert_close(copied.shadow["net.0.weight"], expected["net.0.weight"])


def test_warmup_start_step_and_every() -> None:
    assert ema_decay(0.999, 0, warmup=True) == pytest.approx(0.1)
    assert ema_decay(0.999, 90, warmup=True) == pytest.approx(0.91)
    assert ema_decay(0.9, 1000, warmup=True) == 0.9 and ema_decay(0.9, 0, warmup=False) == 0.9
    torch.manual_seed(0)
    model = nn.Linear(8, 3)
    context = sgd_context(model)
    ema = EMACallback(decay=0.5, start_step=3, every=2, warmup=False)
    engine = Engine(train_step, context, [ema])
    seen: list[dict[str, torch.Tensor]] = []
    engine.add_event_handler(Events.STEP_END, lambda e, c: seen.append(snapshot(c.model)))
    engine.loop(batches(), max_epochs=2)  # 10 optimizer steps
    assert (ema.num_steps, ema.num_updates) == (10, 3)  # steps 5, 7, 9 average
    expected = seen[2]["weight"]  # copied through step 3
    for step in (5, 7, 9):
        expected = 0.5 * expected + 0.5 * seen[step - 1]["weight"]
    torch.testing.assert_close(ema.shadow["weight"], expected)


def test_only_optimizer_steps_count_with_gradient_accumulation() -> None:
    model = nn.Linear(8, 3)
    context = sgd_context(model)

    def accumulate(engine: Engine, batch: Any, ctx: Context) -> SupervisedStepOutput:
        x, y = batch
        assert ctx.optimizer is not None
        out = ctx.model(x)
        loss = F.cross_entropy(out, y)
        loss.backward()  # type: ignore[no-untyped-call]
        if engine.state.global_step % 2 == 0:
            ctx.optimizer.step()
            ctx.optimizer.zero_grad()
        return SupervisedStepOutput(loss=loss.detach(), predictions=out.detach(), targets=y)

    ema = EMACallback(decay=0.9)
    Engine(accumulate, context, [ema]).loop(batches(), max_epochs=2)
    assert (ema.num_steps, ema.num_updates) == (5, 5)
    # a step function that does not use context.optimizer: every STEP_END counts
    free = EMACallback(decay=0.9)
    Engine(lambda e, b, c: {"loss": None}, Context(nn.Linear(2, 2)), [free]).loop([0, 1, 2])
    assert free.num_updates == 3


@pytest.mark.parametrize("fails", [False, True])
def test_the_optimizer_hook_is_removed_when_the_loop_ends_or_fails(fails: bool) -> None:
    model = nn.Linear(8, 3)
    context = sgd_context(model)
    assert context.optimizer is not None
    hooks = context.optimizer._optimizer_step_post_hooks  # torch's registry of post hooks
    seen: list[int] = []

    def step(engine: Engine, batch: Any, ctx: Context) -> SupervisedStepOutput:
        seen.append(len(hooks))
        if fails and engine.state.global_step == 2:
            raise RuntimeError("boom")
        return train_step(engine, batch, ctx)

    engine = Engine(step, context, [EMACallback(decay=0.9)])
    if fails:
        with pytest.raises(RuntimeError, match="boom"):
            engine.loop(batches())
    else:
        engine.loop(batches())
    assert seen and set(seen) == {1}  # one hook while the loop runs
    assert len(hooks) == 0


def test_fp32_shadow_of_a_bf16_model_and_the_unwrapped_module() -> None:
    inner = nn.Linear(8, 3).to(torch.bfloat16)
    model = nn.DataParallel(inner)  # on CPU it just calls the module; unwrapped like DDP

    def step(engine: Engine, batch: Any, ctx: Context) -> dict[str, Any]:
        x, y = batch
        assert ctx.optimizer is not None
        ctx.optimizer.zero_grad()
        loss = F.cross_entropy(ctx.model(x.to(torch.bfloat16)).float(), y)
        loss.backward()  # type: ignore[no-untyped-call]
        ctx.optimizer.step()
        return {"loss": loss.detach()}

    ema = EMACallback(decay=0.99)
    Engine(step, sgd_context(model, lr=0.5), [ema]).loop(batches(), max_epochs=3)
    assert set(ema.shadow) == {"weight", "bias"}  # no "module." prefix
    assert all(t.dtype == torch.float32 for t in ema.shadow.values())
    # fp32 accumulation keeps the small updates a bf16 average would round away
    assert not torch.equal(ema.shadow["weight"], ema.shadow["weight"].bfloat16().float())


def test_swapped_puts_the_average_in_and_restores_the_weights_exactly() -> None:
    torch.manual_seed(0)
    model = BNNet()
    ema = EMACallback(decay=0.7)
    Engine(train_step, sgd_context(model), [ema]).loop(batches())
    raw = snapshot(model)
    with ema.swapped() as swapped:
        assert swapped is model
        for key, value in model.state_dict().items():
            assert torch.equal(value, ema.shadow[key].to(value.dtype)), key
    assert all(torch.equal(v, raw[k]) for k, v in model.state_dict().items())
    with pytest.raises(RuntimeError, match="inside"), ema.swapped(model):
        raise RuntimeError("inside")
    assert all(torch.equal(v, raw[k]) for k, v in model.state_dict().items())
    other = BNNet()
    ema.copy_to(other)
    assert all(torch.equal(v, ema.shadow[k].to(v.dtype)) for k, v in other.state_dict().items())


def test_eval_on_epoch_end_measures_the_average_and_leaves_training_alone() -> None:
    class WeightSum:
        name = "weight_sum"

        def __init__(self, model: nn.Module) -> None:
            self.model = model

        def reset(self) -> None:
            self.value = 0.0

        def update(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
            self.value = float(self.model.net[0].weight.detach().sum())  # type: ignore[index,union-attr]

        def compute(self) -> float:
            return self.value

    def run(with_eval: bool) -> tuple[dict[str, torch.Tensor], Engine, EMACallback]:
        torch.manual_seed(0)
        model = BNNet()
        context = sgd_context(model)
        ema = EMACallback(decay=0.9)
        callbacks: list[Any] = [ema]
        if with_eval:
            evaluator = Engine(
                eval_step, context, [MetricsCallback([WeightSum(model)], loss=None)]
            )
            callbacks += [
                EvalOnEpochEndCallback(evaluator, batches(16), ema=ema),
                EvalOnEpochEndCallback(evaluator, batches(16), prefix="raw/"),
            ]
        engine = Engine(train_step, context, callbacks)
        engine.loop(batches(), max_epochs=2)
        return snapshot(model), engine, ema

    plain, _, plain_ema = run(with_eval=False)
    evaluated, engine, ema = run(with_eval=True)
    assert all(torch.equal(evaluated[k], v) for k, v in plain.items())  # training untouched
    assert all(torch.equal(ema.shadow[k], v) for k, v in plain_ema.shadow.items())
    metrics = engine.state.metrics
    assert metrics["val/weight_sum"] == pytest.approx(float(ema.shadow["net.0.weight"].sum()))
    assert metrics["raw/weight_sum"] == pytest.approx(float(plain["net.0.weight"].sum()))
    assert metrics["val/weight_sum"] != metrics["raw/weight_sum"]
    with pytest.raises(CallbackError, match="must be an EMACallback"):
        EvalOnEpochEndCallback(engine, [], ema=object())  # type: ignore[arg-type]


def test_save_weights_writes_a_plain_loadable_state_dict(tmp_path: Path) -> None:
    model = BNNet()
    ema = EMACallback(decay=0.9)
    with pytest.raises(CallbackError, match="no average yet"):
        ema.save_weights(tmp_path / "ema.pt")
    Engine(train_step, sgd_context(model), [ema]).loop(batches())
    ema.save_weights(tmp_path / "ema.pt")
    fresh = BNNet()
    fresh.load_state_dict(torch.load(tmp_path / "ema.pt", weights_only=True))  # strict
    assert all(torch.equal(v, ema.shadow[k]) for k, v in fresh.state_dict().items())
    with pytest.raises(ResumeError, match="does not match the model"):
        ema.swapped(nn.Linear(2, 2)).__enter__()


def build(seed: int) -> tuple[Engine, Context, EMACallback]:
    torch.manual_seed(seed)
    random.seed(seed)
    model = BNNet()
    context = Context(model, torch.optim.Adam(model.parameters(), lr=0.01))
    ema = EMACallback(decay=0.9, warmup=True, start_step=2)
    # train mode on purpose: BatchNorm statistics change while swapped and must be restored
    evaluator = Engine(
        lambda e, b, c: SupervisedStepOutput(None, c.model(b[0]), b[1]), context
    )
    x, y = toy_data(n=16, seed=1)
    callbacks = [ema, EvalOnEpochEndCallback(evaluator, [(x, y)], ema=ema)]
    return Engine(train_step, context, callbacks), context, ema


def source() -> ResumableBatches:
    x, y = toy_data(n=40)
    return ResumableBatches(x, y, 8, seed=3)


@pytest.mark.parametrize("stop_at", [1, 5, 7, 12])
def test_a_killed_run_resumes_to_bit_identical_ema_weights(tmp_path: Path, stop_at: int) -> None:
    full, full_context, full_ema = build(seed=0)
    full.loop(source(), max_epochs=3)

    engine, context, _ = build(seed=0)
    engine.callbacks.append(
        CheckpointCallback(tmp_path, every_n_steps=1, every_n_epochs=None, keep_last=1)
    )
    engine.add_event_handler(Events.STEP_END(once=stop_at), lambda e, c: e.terminate())
    engine.loop(source(), max_epochs=3)
    ckpt = torch.load(tmp_path / f"step-{stop_at:08d}.pt", weights_only=True)
    assert ckpt["engine"]["callbacks"]["EMACallback"]["num_steps"] == stop_at

    fresh, fresh_context, fresh_ema = build(seed=99)  # other init: all must come from the file
    fresh_context.load_state_dict(ckpt["context"])
    fresh.load_state_dict(ckpt["engine"])
    fresh.loop(source())
    assert (fresh_ema.num_steps, fresh_ema.num_updates) == (15, 13)
    assert fresh_ema.shadow.keys() == full_ema.shadow.keys()
    for key, value in full_ema.shadow.items():
        assert torch.equal(fresh_ema.shadow[key], value), key
    for key, value in full_context.model.state_dict().items():
        assert torch.equal(fresh_context.model.state_dict()[key], value), key


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"decay": 1.0}, r"decay=\.\.\.\) must be a float in \[0, 1\), got 1.0"),
        ({"decay": -0.1}, "decay"),
        ({"decay": float("nan")}, "decay"),
        ({"decay": True}, "decay"),
        ({"decay": "0.9"}, "decay"),
        ({"every": 0}, "every"),
        ({"start_step": -1}, "start_step"),
        ({"buffers": "mean"}, "buffers"),
        ({"warmup": 1}, "warmup"),
    ],
)
def test_bad_arguments_are_one_clear_error(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(CallbackError, match=match) as info:
        EMACallback(**kwargs)
    assert "\n" not in str(info.value)


def test_bad_state_and_misuse_are_refused() -> None:
    ema = EMACallback()
    with pytest.raises(CallbackError, match="does not know the model"):
        ema.swapped().__enter__()
    with pytest.raises(ResumeError, match="'shadow'"):
        ema.load_state_dict({"shadow": {"w": 1.0}, "num_updates": 0, "num_steps": 0})
    with pytest.raises(ResumeError, match="'num_steps' must be an int >= 0"):
        ema.load_state_dict({"shadow": {}, "num_updates": 0, "num_steps": -1})
    ema.load_state_dict({"shadow": {"other": torch.zeros(1)}, "num_updates": 1, "num_steps": 1})
    engine = Engine(lambda e, b, c: {"loss": None}, Context(nn.Linear(2, 2)), [ema])
    with pytest.raises(ResumeError, match="does not match the model"):
        engine.loop([0])
