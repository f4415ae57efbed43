"""Optimizer nodes (param groups without decay on biases/norms) and scheduler LR curves."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

import legoml.nn as L
from legoml.nn.optim import param_groups


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 8),
        nn.LayerNorm(8),
        nn.GroupNorm(2, 8),
        nn.Linear(8, 3),
    )


def _ids(tensors: list[torch.Tensor]) -> set[int]:
    return {id(t) for t in tensors}


def test_biases_and_norm_weights_get_no_weight_decay() -> None:
    model = _model()
    optimizer = L.AdamWNode(weight_decay=0.05).build(model)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.05, 0.0]
    decay, no_decay = (g["params"] for g in optimizer.param_groups)
    assert _ids(decay) == _ids([model[0].weight, model[4].weight, model[7].weight])
    expected = [model[0].bias, model[4].bias, model[7].bias]
    expected += [p for i in (1, 5, 6) for p in model[i].parameters()]
    assert _ids(no_decay) == _ids(expected)
    assert len(decay) + len(no_decay) == len(list(model.parameters()))


def test_tiny_cnn_param_groups() -> None:
    model = L.TinyCNNNode(batch_norm=True).build()
    groups = param_groups(model, 0.1)
    decay, no_decay = groups[0]["params"], groups[1]["params"]
    assert all(p.ndim > 1 for p in decay)
    assert all(p.ndim == 1 for p in no_decay)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert _ids([n.weight for n in norms]) <= _ids(no_decay)


def test_adamw_really_leaves_biases_undecayed() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3))
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = L.AdamWNode(lr=0.1, weight_decay=0.5).build(model)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    weight, bias, ln_weight, ln_bias = (p.detach() for p in model.parameters())
    assert torch.allclose(weight, before[0] * (1 - 0.1 * 0.5))
    assert torch.equal(bias, before[1])
    assert torch.equal(ln_weight, before[2]) and torch.equal(ln_bias, before[3])


def test_decay_everything_when_asked() -> None:
    groups = param_groups(_model(), 0.1, decay_norm_and_bias=True)
    assert len(groups) == 1 and groups[0]["weight_decay"] == 0.1


def test_frozen_and_shared_parameters() -> None:
    shared = nn.Linear(2, 2)
    model = nn.Sequential(shared, shared, nn.Linear(2, 2))
    model[2].weight.requires_grad_(False)
    groups = L.SGDNode(weight_decay=0.01).build(model).param_groups
    assert [len(g["params"]) for g in groups] == [1, 2]  # shared weight once; frozen left out


def test_tensors_and_ready_groups() -> None:
    weight, bias = torch.zeros(3, 3, requires_grad=True), torch.zeros(3, requires_grad=True)
    optimizer = L.AdamNode(weight_decay=0.2).build([weight, bias])
    assert [(len(g["params"]), g["weight_decay"]) for g in optimizer.param_groups] == [
        (1, 0.2),
        (1, 0.0),
    ]
    custom = L.SGDNode(lr=0.5, weight_decay=0.3).build(
        [{"params": [weight], "lr": 0.01}, {"params": [bias], "weight_decay": 0.0}]
    )
    assert [(g["lr"], g["weight_decay"]) for g in custom.param_groups] == [(0.01, 0.3), (0.5, 0.0)]


def test_optimizer_errors() -> None:
    with pytest.raises(L.BuildError, match="lazy .* run one forward pass first"):
        L.AdamWNode().build(L.TinyCNNNode(input_size=None).build())
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(L.BuildError, match="no trainable parameters"):
        L.SGDNode().build(frozen)
    with pytest.raises(L.BuildError, match="expected a module, tensors or param-group dicts"):
        L.SGDNode().build([1, 2])  # type: ignore[list-item]
    with pytest.raises(L.ConfigError, match="^fused: foreach and fused cannot both be true"):
        L.AdamNode(foreach=True, fused=True)
    with pytest.raises(L.ConfigError, match=r"^betas\[1\]: must be < 1.0, got 1.0"):
        L.AdamWNode(betas=(0.9, 1.0))


def test_optimizer_hyperparameters_reach_torch() -> None:
    model = nn.Linear(2, 2)
    sgd = L.SGDNode(lr=0.2, momentum=0.8, nesterov=True, foreach=True).build(model)
    assert isinstance(sgd, torch.optim.SGD)
    group = sgd.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["foreach"]) == (
        0.2,
        0.8,
        True,
        True,
    )
    adam = L.AdamNode(lr=0.01, betas=(0.8, 0.9), eps=1e-6, amsgrad=True).build(model)
    assert type(adam) is torch.optim.Adam
    group = adam.param_groups[0]
    assert (group["betas"], group["eps"], group["amsgrad"]) == ((0.8, 0.9), 1e-6, True)
    adamw = L.AdamWNode().build(model)
    assert type(adamw) is torch.optim.AdamW and adamw.param_groups[0]["weight_decay"] == 0.01


def _curve(
    node: L.SchedulerNode, total: int, lr: float = 1.0, steps: int | None = None
) -> list[float]:
    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=lr, momentum=0.9)
    scheduler = node.build(optimizer, total_steps=total)
    lrs = []
    for _ in range(total if steps is None else steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_step_lr_curve() -> None:
    assert _curve(L.StepLRNode(step_size=3, gamma=0.5), 8) == pytest.approx(
        [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25]
    )


def test_cosine_curve() -> None:
    curve = _curve(L.CosineNode(min_lr=0.1), 10, steps=11)
    assert curve[0] == pytest.approx(1.0)
    assert curve[5] == pytest.approx(0.55)
    assert curve[10] == pytest.approx(0.1)
    assert curve[2] == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi * 2 / 10)) / 2)


def test_one_cycle_curve() -> None:
    total = 20
    curve = _curve(L.OneCycleNode(max_lr=0.5), total)
    assert curve[0] == pytest.approx(0.5 / 25)
    peak = curve.index(max(curve))
    assert max(curve) == pytest.approx(0.5) and peak == round(0.3 * total) - 1
    assert curve[-1] == pytest.approx(0.5 / 25 / 1e4)
    # without max_lr the optimizer's own LR is the peak
    assert max(_curve(L.OneCycleNode(anneal_strategy="linear"), total, lr=0.2)) == pytest.approx(
        0.2
    )


def test_warmup_cosine_curve() -> None:
    curve = _curve(L.WarmupCosineNode(warmup_steps=4, min_lr_ratio=0.1), 20, lr=2.0, steps=21)
    assert curve[:5] == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.0])
    assert curve[12] == pytest.approx(2.0 * 0.55)
    assert curve[20] == pytest.approx(0.2)
    assert all(a >= b for a, b in zip(curve[4:], curve[5:], strict=False))
    assert L.WarmupCosineNode().warmup_for(100) == 5
    assert L.WarmupCosineNode(warmup_ratio=0.0).warmup_for(100) == 0
    assert _curve(L.WarmupCosineNode(warmup_ratio=0.0), 4) == pytest.approx(
        [1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4))]
    )


def test_scheduler_errors() -> None:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    with pytest.raises(L.ConfigError, match="^warmup_steps: 30 warmup steps exceed the 20"):
        L.WarmupCosineNode(warmup_steps=30).build(optimizer, 20)
    for node in (L.StepLRNode(), L.CosineNode(), L.OneCycleNode(), L.WarmupCosineNode()):
        with pytest.raises(L.ConfigError, match="^total_steps: must be an int >= 1, got 0"):
            node.build(optimizer, 0)
    with pytest.raises(L.ConfigError, match="^pct_start: must be < 1.0"):
        L.OneCycleNode(pct_start=1.0)


@pytest.mark.parametrize(
    "node",
    [
        L.StepLRNode(step_size=2),
        L.CosineNode(),
        L.OneCycleNode(),
        L.WarmupCosineNode(warmup_steps=3),
    ],
    ids=lambda n: type(n).__name__,
)
def test_scheduler_and_optimizer_state_resume_with_weights_only_load(node: L.SchedulerNode) -> None:
    def make() -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        optimizer = L.AdamWNode(lr=0.1).build(nn.Linear(2, 2))
        return optimizer, node.build(optimizer, total_steps=12)

    optimizer, scheduler = make()
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    buffer = io.BytesIO()
    torch.save({"opt": optimizer.state_dict(), "sched": scheduler.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    resumed_opt, resumed = make()
    resumed_opt.load_state_dict(state["opt"])
    resumed.load_state_dict(state["sched"])
    for _ in range(6):
        assert resumed.get_last_lr() == pytest.approx(scheduler.get_last_lr())
        for opt, sched in ((optimizer, scheduler), (resumed_opt, resumed)):
            opt.step()
            sched.step()
