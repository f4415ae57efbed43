"""The confusion matrix as a PNG (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["save_confusion_png"]


def save_confusion_png(matrix: torch.Tensor, path: Path) -> Path:
    """Draw ``matrix`` (rows: true class, columns: predicted) with its counts into ``path``.

    A bare ``Figure`` on the Agg canvas with fixed margins: no pyplot and no layout pass,
    about half the cost of ``pyplot`` + ``tight_layout`` (measured: benchmarks/README.md)."""
    from matplotlib.figure import Figure

    counts = matrix.to(torch.int64).cpu()
    n = counts.shape[0]
    fig = Figure(figsize=(6.5, 5.5), dpi=100)
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.1, top=0.93)
    ax = fig.subplots()
    image = ax.imshow(counts.numpy(), cmap="Blues")
    fig.colorbar(image, ax=ax)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix")
    threshold = counts.max().item() / 2
    for r, row in enumerate(counts.tolist()):
        for c, value in enumerate(row):
            color = "white" if value > threshold else "black"
            ax.text(c, r, str(value), ha="center", va="center", fontsize=7, color=color)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def save_reconstruction_grid(originals: torch.Tensor, reconstructions: torch.Tensor, path: Path) -> Path:
    """Two rows per block of images: originals above their reconstructions (pixels in [0, 1])."""
    from torchvision.utils import save_image

    count = originals.shape[0]
    per_row = min(count, 8)
    rows = []
    for start in range(0, count, per_row):
        rows += [originals[start : start + per_row], reconstructions[start : start + per_row]]
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(torch.cat(rows).clamp(0.0, 1.0), path, nrow=per_row, padding=2, pad_value=0.5)
    return path
