"""Optional TensorBoard mirror of a run's scalars (the CSV stays the source of truth)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, SupportsFloat

from legoml.track.errors import MissingExtraError

__all__ = ["TensorBoardSink", "require_tensorboard"]

_HINT = "TensorBoard logging needs tensorboard: pip install 'legoml-track[tensorboard]'"


def require_tensorboard() -> Any:
    """Return ``torch.utils.tensorboard.SummaryWriter`` or raise MissingExtraError."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # torch raises ImportError when tensorboard is absent
        raise MissingExtraError(_HINT) from exc
    return SummaryWriter


class TensorBoardSink:
    """Writes scalars as TensorBoard events under ``log_dir`` (``tensorboard --logdir runs``).

    Example (needs ``legoml-track[tensorboard]``)::

        sink = TensorBoardSink("runs/demo/tensorboard")
        sink.log_scalars({"train/loss": 0.5}, step=10)
        sink.close()
    """

    def __init__(self, log_dir: str | Path, flush_secs: int = 2) -> None:
        writer_cls = require_tensorboard()
        self.log_dir = Path(log_dir)
        self._writer = writer_cls(log_dir=str(self.log_dir), flush_secs=flush_secs)

    def log_scalars(
        self, values: Mapping[str, SupportsFloat], step: int, epoch: int | None = None
    ) -> None:
        """Add each value at ``step`` (TensorBoard has no epoch axis; ``epoch`` is ignored)."""
        for name, value in values.items():
            self._writer.add_scalar(name, float(value), global_step=step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
