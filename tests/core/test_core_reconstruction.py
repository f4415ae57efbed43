"""Reconstruction (auto-encoder) steps and the reconstruction fields of UnsupervisedStepOutput."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from legoml.core import (
    Context,
    Engine,
    Events,
    MetricsCallback,
    UnsupervisedStepOutput,
    make_reconstruction_eval_step,
    make_reconstruction_train_step,
)
from legoml.core.errors import EngineError
from legoml.metrics import MeanLoss


class TinyAutoencoder(nn.Module):
    """1x8x8 images -> 4x2x2 code -> 1x8x8; returns (reconstruction, code)."""

    def __init__(self, with_code: bool = True) -> None:
        super().__init__()
        self.with_code = with_code
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, 2, 1)
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(4, 8, 2, stride=2), nn.ReLU(), nn.ConvTranspose2d(8, 1, 2, 2)
        )

    def forward(self, x: torch.Tensor) -> Any:
        code = self.encoder(x)
        reconstruction = self.decoder(code)
        return (reconstruction, code) if self.with_code else reconstruction


def images(n: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g)


def setup(with_code: bool = True, lr: float = 1e-2) -> tuple[TinyAutoencoder, Context]:
    torch.manual_seed(0)
    model = TinyAutoencoder(with_code)
    return model, Context(model, torch.optim.Adam(model.parameters(), lr=lr))


def test_loss_decreases_over_30_steps_and_the_output_carries_everything() -> None:
    model, context = setup()
    x = images()
    batches = [(x[i : i + 16], torch.zeros(16, dtype=torch.long)) for i in range(0, 64, 16)]
    losses: list[float] = []
    engine = Engine(make_reconstruction_train_step(amp=None), context)
    engine.add_event_handler(
        Events.STEP_END, lambda e, c: losses.append(float(e.state.output.loss))
    )
    state = engine.loop(batches, max_steps=30)
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    out = state.output
    assert isinstance(out, UnsupervisedStepOutput)
    assert out.targets is batches[(30 - 1) % 4][0]  # the inputs, labels ignored
    assert out.reconstructions is not None and out.embeddings is not None
    assert out.reconstructions.shape == (16, 1, 8, 8) and out.embeddings.shape == (16, 4, 2, 2)
    assert out.predictions is out.reconstructions
    assert out.loss is not None
    assert not (out.loss.requires_grad or out.reconstructions.requires_grad)
    assert not out.embeddings.requires_grad
    assert out.loss.shape == () and model.training
    assert torch.equal(out.loss, F.mse_loss(out.reconstructions, out.targets))  # default MSE


def test_train_step_matches_a_hand_written_loop_bit_for_bit() -> None:
    model, context = setup(with_code=False)
    reference = TinyAutoencoder(with_code=False)
    reference.load_state_dict(model.state_dict())
    ref_opt = torch.optim.Adam(reference.parameters(), lr=1e-2)
    x = images(32)
    batches = [x[:16], x[16:]]  # bare tensors
    for batch in batches * 2:
        ref_opt.zero_grad(set_to_none=True)
        F.mse_loss(reference(batch), batch).backward()
        ref_opt.step()
    state = Engine(make_reconstruction_train_step(amp=None), context).loop(batches, max_epochs=2)
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), reference.state_dict().values(), strict=True)
    )
    assert state.output.embeddings is None and state.output.targets is batches[-1]


def test_metrics_callback_reads_reconstruction_outputs() -> None:
    _, context = setup()
    x = images(48)
    batches = [x[i : i + 16] for i in range(0, 48, 16)]

    class MeanAbsError:
        def reset(self) -> None:
            self.total, self.count = 0.0, 0

        def update(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
            self.total += float((predictions - targets).abs().sum())
            self.count += targets.numel()

        def compute(self) -> float:
            return self.total / self.count

    losses: list[float] = []
    train = Engine(
        make_reconstruction_train_step(amp=None),
        context,
        [MetricsCallback(metrics={}, loss=MeanLoss())],
    )
    train.add_event_handler(Events.STEP_END, lambda e, c: losses.append(float(e.state.output.loss)))
    metrics = train.loop(batches).metrics
    assert metrics["train/loss"] == pytest.approx(sum(losses) / 3)  # equal batch sizes
    evaluate = Engine(
        make_reconstruction_eval_step(amp=None),
        context,
        [MetricsCallback({"mae": MeanAbsError()}, loss=MeanLoss(), prefix="val/")],
    )
    result = evaluate.loop(batches).metrics
    assert set(result) == {"val/mae", "val/loss"} and result["val/mae"] > 0


def test_eval_step_has_no_grad_and_uses_eval_mode() -> None:
    model = nn.Sequential(nn.Conv2d(1, 1, 1), nn.Dropout(0.9))
    x = images(8)
    engine = Engine(make_reconstruction_eval_step(amp=None), Context(model))
    out = engine.loop([(x, torch.zeros(8))]).output
    assert not model.training
    assert out.reconstructions.is_inference() and not out.reconstructions.requires_grad
    assert out.loss is not None and not out.loss.requires_grad
    with torch.no_grad():
        expected = model[0](x)  # dropout off
    torch.testing.assert_close(out.reconstructions, expected)
    assert float(out.loss) == pytest.approx(float(F.mse_loss(expected, x)))
    assert out.embeddings is None and out.targets is x
    assert all(p.grad is None for p in model.parameters())


def test_custom_loss_prepare_batch_and_channels_last() -> None:
    model, context = setup()
    seen: list[bool] = []
    model.encoder[0].register_forward_pre_hook(
        lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    calls: list[torch.dtype] = []

    def l1(reconstruction: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        calls.append(reconstruction.dtype)
        return F.l1_loss(reconstruction, targets)

    context.loss_fn = l1
    clean = images(8)

    def noisy(batch: Any, device: torch.device, non_blocking: bool) -> tuple[Any, torch.Tensor]:
        return batch["noisy"], batch["clean"]  # a denoising auto-encoder

    step = make_reconstruction_train_step(amp=None, channels_last=True, prepare_batch=noisy)
    out = Engine(step, context).loop([{"noisy": clean + 0.1, "clean": clean}]).output
    assert seen == [True] and calls == [torch.float32] and out.targets is clean


def test_bf16_autocast_scaler_and_clipping() -> None:
    model, context = setup()
    x = images(16)
    out = Engine(make_reconstruction_train_step(amp="bf16"), context).loop([x]).output
    assert out.reconstructions.dtype == torch.bfloat16 and out.loss.dtype == torch.float32
    context.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    before = [p.detach().clone() for p in model.parameters()]
    step = make_reconstruction_train_step(amp="fp16", clip_grad_norm=1e-3)
    Engine(step, context).loop([x, x])
    after = list(model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert all(torch.isfinite(p).all() for p in after)


@pytest.mark.parametrize(
    ("batch", "match"),
    [
        (["not", "tensors"], r"tensor of inputs, \(inputs, labels\) batches or a dict.*got list"),
        ({"a": torch.zeros(2)}, r"got dict with keys \['a'\]; pass input_key="),
        ((torch.zeros(1), torch.zeros(1), torch.zeros(1)), "got tuple"),
    ],
)
def test_bad_batches_are_explained(batch: Any, match: str) -> None:
    _, context = setup()
    with pytest.raises(EngineError, match=match):
        Engine(make_reconstruction_train_step(amp=None), context).loop([batch])


def test_bad_models_contexts_and_arguments_are_explained() -> None:
    x = images(4)
    with pytest.raises(EngineError, match=r"a tensor or \(reconstruction, embedding\), got dict"):
        Engine(make_reconstruction_eval_step(), Context(_DictModel())).loop([x])
    with pytest.raises(EngineError, match="reconstruction has shape"):
        Engine(make_reconstruction_eval_step(), Context(nn.Flatten())).loop([x])
    with pytest.raises(EngineError, match="needs context.optimizer"):
        Engine(make_reconstruction_train_step(), Context(TinyAutoencoder())).loop([x])
    with pytest.raises(EngineError, match="clip_grad_norm"):
        make_reconstruction_train_step(clip_grad_norm=0.0)
    for bad in ("fp64", torch.float64):
        with pytest.raises(EngineError, match="amp="):
            make_reconstruction_train_step(amp=bad)  # type: ignore[arg-type]
        with pytest.raises(EngineError, match="amp="):
            make_reconstruction_eval_step(amp=bad)  # type: ignore[arg-type]


class _DictModel(nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": x}


def test_unsupervised_output_keeps_positional_fields() -> None:
    loss, recon, emb = torch.tensor(1.0), torch.ones(2, 3), torch.zeros(2, 1)
    out = UnsupervisedStepOutput(loss, recon, emb, {"k": 1})
    assert (out.metadata, out.targets, out.predictions) == ({"k": 1}, None, recon)
    with pytest.raises(AttributeError):
        out.predictions = recon  # type: ignore[misc]
    assert not hasattr(out, "__dict__")  # still a slots dataclass
