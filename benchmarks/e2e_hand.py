"""The default ``legoml-mnist train`` recipe as a hand-written PyTorch script (end to end).

Reads MNIST, trains 0.65 epoch (304 steps), evaluates the test set, saves a checkpoint;
prints one JSON line (phases, training seconds, test accuracy). Run by
``bench_end_to_end.py``: ``python benchmarks/e2e_hand.py OUT_DIR``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import _e2e_common as common  # noqa: E402

phases = common.Phases()
phases.mark("imports")


def main(out_dir: Path) -> None:
    torch.manual_seed(0)
    train_x, train_y, test_x, test_y = common.load_data()
    batches = common.Batches(train_x, train_y)
    phases.mark("data")
    model = common.build_model()
    optimizer = common.make_optimizer(model)
    steps = common.total_steps(batches)
    scheduler = common.make_scheduler(optimizer, steps)
    dtype = common.amp_dtype()
    phases.mark("build")
    start, step = time.perf_counter(), 0
    model.train()
    while step < steps:
        for x, y in batches:
            with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=common.LABEL_SMOOTHING)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if step == steps:
                break
    train_seconds = time.perf_counter() - start
    phases.mark("train")
    accuracy = common.evaluate(model, test_x, test_y)
    phases.mark("eval")
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
         "scheduler": scheduler.state_dict(), "step": step},
        out_dir / "checkpoint.pt",
    )
    phases.mark("writes")
    phases.emit(train_seconds=train_seconds, steps=step, test_accuracy=accuracy)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "e2e-hand-out"))
