"""Step helpers (AMP, scaler, accumulation, clipping, channels-last) and device helpers."""

from __future__ import annotations

import copy
import re
from collections import namedtuple
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from core_helpers import toy_data

import legoml.core.device as device_module
from legoml.core import (
    Context,
    Engine,
    Events,
    SupervisedStepOutput,
    detect_device,
    make_supervised_eval_step,
    make_supervised_train_step,
)
from legoml.core.device import cpu_supports_bf16, move_to_device
from legoml.core.errors import EngineError
from legoml.core.steps import resolve_amp_dtype

CPU = torch.device("cpu")


def setup(
    lr: float = 0.1, momentum: float = 0.0
) -> tuple[torch.nn.Module, Context, list[tuple[torch.Tensor, torch.Tensor]]]:
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 3)
    context = Context(
        model, torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum), F.cross_entropy
    )
    x, y = toy_data(n=48)
    return model, context, [(x[i : i + 8], y[i : i + 8]) for i in range(0, 48, 8)]


def test_train_step_matches_a_hand_written_loop_bit_for_bit() -> None:
    model, context, batches = setup(momentum=0.9)
    reference = copy.deepcopy(model)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        for x, y in batches:
            ref_opt.zero_grad(set_to_none=True)
            F.cross_entropy(reference(x), y).backward()
            ref_opt.step()
    state = Engine(make_supervised_train_step(), context).loop(batches, max_epochs=2)
    assert torch.equal(model.weight, reference.weight) and torch.equal(model.bias, reference.bias)
    out = state.output
    assert isinstance(out, SupervisedStepOutput)
    assert not out.loss.requires_grad and not out.predictions.requires_grad  # type: ignore[union-attr]
    assert out.predictions.shape == (8, 3) and out.targets is batches[-1][1]


def test_train_step_clears_grads_like_zero_grad_and_defers_to_overrides() -> None:
    # The step sets .grad to None itself (zero_grad's profiler range is slow); an optimizer
    # with its own zero_grad, or a running profiler, gets optimizer.zero_grad() instead.
    calls: list[bool] = []

    class CountingSGD(torch.optim.SGD):
        def zero_grad(self, set_to_none: bool = True) -> None:
            calls.append(set_to_none)
            super().zero_grad(set_to_none)

    model, context, batches = setup()
    frozen = torch.nn.Parameter(torch.ones(2))  # in the optimizer, never gets a gradient
    frozen.grad = torch.full((2,), 5.0)
    context.optimizer = torch.optim.SGD([*model.parameters(), frozen], lr=0.1)
    step = make_supervised_train_step()
    Engine(step, context).loop(batches[:1])
    assert frozen.grad is None and model.weight.grad is not None
    context.optimizer = CountingSGD(model.parameters(), lr=0.1)
    Engine(step, context).loop(batches[:2])
    assert calls == [True, True]
    calls.clear()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        Engine(step, Context(model, torch.optim.SGD(model.parameters(), lr=0.1), F.cross_entropy)).loop(
            batches[:1]
        )
    assert any("zero_grad" in event.name for event in prof.events())


def test_grad_accumulation_equals_one_big_batch() -> None:
    model, context, batches = setup()
    big_model = copy.deepcopy(model)
    big_opt = torch.optim.SGD(big_model.parameters(), lr=0.1)
    # 6 batches, accumulate 4: windows of 4 and 2 (the epoch's end closes the window)
    for window in (batches[:4], batches[4:]):
        big_opt.zero_grad()
        F.cross_entropy(
            big_model(torch.cat([x for x, _ in window])), torch.cat([y for _, y in window])
        ).backward()
        big_opt.step()
    Engine(make_supervised_train_step(grad_accum_steps=4), context).loop(batches)
    torch.testing.assert_close(model.weight, big_model.weight, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(model.bias, big_model.bias, rtol=1e-6, atol=1e-6)


def test_gradient_clipping_limits_the_update() -> None:
    model, context, batches = setup(lr=1.0)
    before = model.weight.detach().clone()
    clipped: list[float] = []

    def record(engine: Engine, ctx: Context) -> None:
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        clipped.append(
            float(
                torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
            )
        )

    engine = Engine(make_supervised_train_step(clip_grad_norm=1e-3), context)
    engine.add_event_handler(Events.STEP_END, record)
    engine.loop(batches[:1])
    assert clipped[0] == pytest.approx(1e-3, rel=1e-3)
    assert float((model.weight.detach() - before).abs().max()) <= 1e-3 + 1e-7


def test_bf16_autocast_on_cpu_and_eval_step() -> None:
    model, context, batches = setup()
    state = Engine(make_supervised_train_step(amp=torch.bfloat16), context).loop(batches[:2])
    assert state.output.predictions.dtype == torch.bfloat16
    assert state.output.loss.dtype == torch.float32  # cross-entropy autocasts to fp32
    eval_state = Engine(make_supervised_eval_step(amp=torch.bfloat16), context).loop(batches[:2])
    assert eval_state.output.predictions.dtype == torch.bfloat16 and not model.training


def test_fp16_with_grad_scaler_updates_weights() -> None:
    model, context, batches = setup()
    context.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    before = model.weight.detach().clone()
    Engine(make_supervised_train_step(amp=torch.float16, clip_grad_norm=10.0), context).loop(
        batches
    )
    assert not torch.equal(before, model.weight) and torch.isfinite(model.weight).all()
    assert "scaler" in context.state_dict()


def test_eval_step_uses_inference_mode_and_eval_mode() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(8, 3), torch.nn.Dropout(0.9))
    x, y = toy_data(n=8)
    captured: list[Any] = []
    engine = Engine(make_supervised_eval_step(), Context(model, loss_fn=F.cross_entropy))
    engine.add_event_handler(Events.STEP_END, lambda e, c: captured.append(e.state.output))
    engine.loop([(x, y)])
    out = captured[0]
    assert not model.training and out.predictions.is_inference()
    torch.testing.assert_close(out.predictions, model[0](x).detach())  # dropout off
    assert out.loss is not None
    no_loss = Engine(
        make_supervised_eval_step(compute_loss=False), Context(model, loss_fn=F.cross_entropy)
    )
    assert no_loss.loop([(x, y)]).output.loss is None


def test_train_step_sets_train_mode_and_channels_last() -> None:
    conv = torch.nn.Conv2d(1, 2, 3)
    model = torch.nn.Sequential(conv, torch.nn.Flatten(), torch.nn.LazyLinear(3))
    model(torch.zeros(1, 1, 6, 6))
    model.eval()
    seen: list[bool] = []
    conv.register_forward_pre_hook(
        lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    context = Context(model, torch.optim.SGD(model.parameters(), lr=0.1), F.cross_entropy)
    batch = (torch.randn(4, 1, 6, 6), torch.tensor([0, 1, 2, 0]))
    Engine(make_supervised_train_step(channels_last=True), context).loop([batch])
    assert model.training and seen == [True]


def test_custom_prepare_batch_and_bad_batches() -> None:
    model, context, batches = setup()
    dict_batches = [{"image": x, "label": y} for x, y in batches]
    step = make_supervised_train_step(
        prepare_batch=lambda b, device, nb: (b["image"].to(device), b["label"].to(device))
    )
    assert Engine(step, context).loop(dict_batches).global_step == 6
    with pytest.raises(EngineError, match=r"\(inputs, targets\) batches or a dict .*, got Tensor"):
        Engine(make_supervised_train_step(), context).loop([torch.zeros(3, 8)])
    with pytest.raises(EngineError, match="optimizer and context.loss_fn"):
        Engine(make_supervised_train_step(), Context(model)).loop(batches)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"grad_accum_steps": 0}, "grad_accum_steps"),
        ({"grad_accum_steps": True}, "grad_accum_steps"),
        ({"clip_grad_norm": 0.0}, "clip_grad_norm"),
        ({"amp": torch.float64}, "amp="),
    ],
)
def test_step_factory_rejects_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(EngineError, match=match):
        make_supervised_train_step(**kwargs)


def test_resolve_amp_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_amp_dtype(None, CPU) is None
    assert resolve_amp_dtype(torch.float16, CPU) is torch.float16
    assert resolve_amp_dtype("auto", torch.device("mps")) is torch.float16
    monkeypatch.setattr("legoml.core.steps.cpu_supports_bf16", lambda: True)
    assert resolve_amp_dtype("auto", CPU) is torch.bfloat16
    monkeypatch.setattr("legoml.core.steps.cpu_supports_bf16", lambda: False)
    assert resolve_amp_dtype("auto", CPU) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_amp_dtype("auto", torch.device("cuda")) is torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_amp_dtype("auto", torch.device("cuda")) is torch.bfloat16


AMP_VALUES = [
    (None, None),
    ("none", None),
    ("fp32", None),
    ("bf16", torch.bfloat16),
    (torch.bfloat16, torch.bfloat16),
    ("fp16", torch.float16),
    (torch.float16, torch.float16),
]


@pytest.mark.parametrize(("amp", "expected"), AMP_VALUES)
@pytest.mark.parametrize("device", ["cpu", "cuda", "mps"])
def test_resolve_amp_dtype_named_settings_ignore_the_device(
    amp: Any, expected: torch.dtype | None, device: str
) -> None:
    assert resolve_amp_dtype(amp, torch.device(device)) is expected


@pytest.mark.parametrize(("amp", "expected"), AMP_VALUES)
def test_step_factories_autocast_to_the_resolved_dtype(
    amp: Any, expected: torch.dtype | None
) -> None:
    _, context, batches = setup()
    train = Engine(make_supervised_train_step(amp=amp), context).loop(batches[:1])
    evaluate = Engine(make_supervised_eval_step(amp=amp), context).loop(batches[:1])
    dtype = expected or torch.float32
    assert train.output.predictions.dtype == evaluate.output.predictions.dtype == dtype


@pytest.mark.parametrize("bad", ["bfloat16", "BF16", "fp64", "", torch.float64, 16, ["bf16"]])
def test_bad_amp_values_name_the_accepted_ones(bad: Any) -> None:
    accepted = "use 'auto', 'bf16', 'fp16', 'fp32', 'none', None, torch.bfloat16 or torch.float16"
    for call in (
        lambda: resolve_amp_dtype(bad, CPU),
        lambda: make_supervised_train_step(amp=bad),
        lambda: make_supervised_eval_step(amp=bad),
    ):
        with pytest.raises(EngineError, match=re.escape(accepted)) as info:
            call()
        assert "\n" not in str(info.value) and str(info.value).startswith(f"amp={bad!r}")


def test_detect_device_is_cached_and_ordered(monkeypatch: pytest.MonkeyPatch) -> None:
    detect_device.cache_clear()
    calls: list[str] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: calls.append("cuda") or False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: calls.append("mps") or True)
    try:
        assert detect_device() == torch.device("mps")
        assert detect_device() == torch.device("mps")
        assert calls == ["cuda", "mps"]  # queried once
    finally:
        detect_device.cache_clear()


@pytest.mark.parametrize(
    ("cpuinfo", "expected"),
    [
        ("processor : 0\nflags : fpu sse avx2 avx512f avx512_bf16\n", True),
        ("processor : 0\nflags : fpu sse avx2 amx_bf16 amx_tile\n", True),
        ("processor : 0\nFeatures : fp asimd bf16 i8mm\n", True),
        ("processor : 0\nflags : fpu sse avx2 avx512f\n", False),
    ],
)
def test_cpu_bf16_detection_from_cpuinfo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpuinfo: str, expected: bool
) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    real = device_module._cpuinfo_flags
    monkeypatch.setattr(device_module, "_cpuinfo_flags", lambda: real(path))
    device_module.cpu_supports_bf16.cache_clear()
    try:
        assert device_module.cpu_supports_bf16() is expected
    finally:
        device_module.cpu_supports_bf16.cache_clear()
    assert isinstance(cpu_supports_bf16(), bool)


def test_default_prepare_passes_cpu_tensors_through_and_moves_the_rest() -> None:
    from legoml.core.steps import _default_prepare

    x, y = torch.zeros(2, 3), torch.zeros(2, dtype=torch.long)
    inputs, targets = _default_prepare((x, y), CPU, True)
    assert inputs is x and targets is y
    nested = ({"a": x, "b": [x]}, y)
    inputs, targets = _default_prepare(nested, CPU, True)
    assert inputs["a"] is x and inputs["b"][0] is x and targets is y
    meta = torch.device("meta")
    inputs, targets = _default_prepare((x, y), meta, True)
    assert inputs.device == meta and targets.device == meta
    inputs, _ = _default_prepare(({"a": x}, y), meta, True)
    assert inputs["a"].device == meta
    with pytest.raises(EngineError, match="need \\(inputs, targets\\) batches"):
        _default_prepare(x[0], CPU, True)


def test_move_to_device_nested_and_no_copy_when_already_there() -> None:
    Pair = namedtuple("Pair", "a b")
    a, b = torch.zeros(2), torch.ones(2, dtype=torch.long)
    batch = {"x": (a, [b, 3]), "p": Pair(a, "s")}
    moved = move_to_device(batch, CPU)
    assert moved["x"][0] is a and moved["x"][1][0] is b and moved["x"][1][1] == 3
    assert isinstance(moved["p"], Pair) and moved["p"].a is a
    pair = (a, b)
    assert move_to_device(pair, CPU) is pair
    meta = move_to_device((a, b), torch.device("meta"))
    assert meta[0].device.type == "meta" and isinstance(meta, tuple)


def test_keep_freed_memory_sets_the_allocator_once() -> None:
    import platform

    from legoml.core.device import keep_freed_memory

    result = keep_freed_memory()
    assert isinstance(result, bool)
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert result is True
    assert keep_freed_memory() is result  # cached: the second call does nothing new
