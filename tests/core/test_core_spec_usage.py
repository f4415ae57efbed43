"""The usage block of SPEC section 4 (legoml.core) runs as written."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from legoml.core import Context, Engine, MetricsCallback, SupervisedStepOutput


class MultiClassAccuracy:
    """Inline stand-in for legoml.metrics.MultiClassAccuracy (another distribution)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.correct, self.total = 0, 0

    def update(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        self.correct += int((predictions.argmax(dim=1) == targets).sum())
        self.total += targets.numel()

    def compute(self) -> float:
        return self.correct / max(self.total, 1)


def test_spec_section_4_usage_block_runs_as_written() -> None:
    torch.manual_seed(0)
    x = torch.randn(256, 10)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()  # a learnable 3-class rule
    train_loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    device = torch.device("cpu")

    # --- SPEC section 4, verbatim apart from the elided step body ---
    def train_step(engine, batch, context) -> SupervisedStepOutput:  # type: ignore[no-untyped-def]
        x, y = batch
        x, y = x.to(context.device), y.to(context.device)
        context.optimizer.zero_grad()
        out = context.model(x)
        loss = context.loss_fn(out, y)
        loss.backward()
        context.optimizer.step()
        return SupervisedStepOutput(
            loss=loss,
            predictions=out.detach(),
            targets=y,
            metadata={"lr": context.optimizer.param_groups[0]["lr"]},
        )

    context = Context(model=model, optimizer=optimizer, loss_fn=loss_fn, device=device)
    trainer = Engine(train_step, context)
    trainer.callbacks.append(MetricsCallback(metrics=[MultiClassAccuracy()]))
    trainer.loop(train_loader, max_epochs=10)
    # ---

    state = trainer.state
    assert (state.epoch, state.global_step) == (10, 80)
    assert state.metrics["train/accuracy"] > 0.9
    assert state.output.metadata == {"lr": 0.01}
