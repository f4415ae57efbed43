"""The default ``legoml-mnist train`` recipe as a Lightning ``Trainer.fit`` script.

Lightning's defaults stay on: its logger (TensorBoard, or CSV without tensorboard), its
end-of-fit checkpoint, its progress bar and model summary. Same model, optimizer, per-step
one-cycle schedule, bf16 autocast (``precision="bf16-mixed"``), channels_last input and
batches as ``e2e_hand.py``; the test set is evaluated with ``trainer.test``. Runs in
``.venv-peers``: ``.venv-peers/bin/python benchmarks/e2e_lightning.py OUT_DIR``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lightning  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import _e2e_common as common  # noqa: E402

phases = common.Phases()
phases.mark("imports")


class Module(lightning.LightningModule):
    def __init__(self, total_steps: int) -> None:
        super().__init__()
        self.model = common.build_model()
        self.total_steps = total_steps
        self.correct = 0
        self.seen = 0

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self.model(x).float(), y, label_smoothing=common.LABEL_SMOOTHING)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.correct += int((self.model(x).argmax(1) == y).sum())
        self.seen += len(y)
        self.log("test_accuracy", self.correct / self.seen)

    def configure_optimizers(self) -> Any:
        optimizer = common.make_optimizer(self.model)
        scheduler = common.make_scheduler(optimizer, self.total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class TestBatches:
    """The test set in evaluation batches (normalized, channels_last)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return -(-len(self.labels) // common.EVAL_BATCH)

    def __iter__(self) -> Any:
        for start in range(0, len(self.labels), common.EVAL_BATCH):
            x = common.normalize(self.images[start : start + common.EVAL_BATCH])
            yield x.contiguous(memory_format=torch.channels_last), self.labels[start : start + common.EVAL_BATCH]


class TrainTime(lightning.Callback):
    """Seconds from the first training batch's start to the end of training."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.seconds = 0.0

    def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, batch_idx: int) -> None:
        if self.start is None:
            self.start = time.perf_counter()

    def on_train_end(self, trainer: Any, module: Any) -> None:
        self.seconds = time.perf_counter() - (self.start or time.perf_counter())


def main(out_dir: Path) -> None:
    lightning.seed_everything(0, verbose=False)
    train_x, train_y, test_x, test_y = common.load_data()
    batches = common.Batches(train_x, train_y)
    phases.mark("data")
    steps = common.total_steps(batches)
    module = Module(steps)
    timer = TrainTime()
    trainer = lightning.Trainer(
        max_steps=steps, max_epochs=1, accelerator="cpu", devices=1,
        precision="bf16-mixed" if common.amp_dtype() is not None else "32-true",
        default_root_dir=str(out_dir), callbacks=[timer], num_sanity_val_steps=0,
    )
    phases.mark("build")
    trainer.fit(module, train_dataloaders=batches)
    phases.mark("train")  # Lightning's fit: set-up, loop, logger and checkpoint writes
    results = trainer.test(module, dataloaders=TestBatches(test_x, test_y), verbose=False)
    phases.mark("eval")
    accuracy = float(results[0]["test_accuracy"]) if results else float("nan")
    phases.emit(train_seconds=timer.seconds, steps=int(trainer.global_step), test_accuracy=accuracy,
                lightning=lightning.__version__)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "e2e-lightning-out"))
