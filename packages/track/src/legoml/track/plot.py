"""PNG plots of logged scalars, several runs overlaid (needs ``legoml-track[plot]``)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from legoml.track._atomic import atomic_write
from legoml.track._scalars import ScalarRow, read_scalars
from legoml.track.errors import MissingExtraError, RunError

__all__ = ["plot_runs"]

_HINT = "plotting needs matplotlib: pip install 'legoml-track[plot]'"


def _figure_classes() -> tuple[Any, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingExtraError(_HINT) from exc
    return Figure, FigureCanvasAgg


def plot_runs(
    runs: Sequence[str | Path],
    names: Sequence[str] | None = None,
    out: str | Path = "scalars.png",
    *,
    dpi: int = 100,
) -> Path:
    """Plot scalars against step, one panel per scalar name, one line per run; returns ``out``.

    ``names`` picks the scalars (default: every name logged by any run). Uses matplotlib's
    object API (no pyplot global state), and writes the PNG atomically.
    """
    if not runs:
        raise RunError("plot_runs needs at least one run directory")
    Figure, FigureCanvasAgg = _figure_classes()
    series: list[tuple[str, list[ScalarRow]]] = [
        (Path(r).resolve().name, read_scalars(r)) for r in runs
    ]
    logged: dict[str, None] = {}
    for _, rows in series:
        logged.update(dict.fromkeys(row.name for row in rows))
    wanted = list(names) if names else sorted(logged)
    if not wanted:
        raise RunError(f"no scalars logged in {', '.join(map(str, runs))}; nothing to plot")
    unknown = [name for name in wanted if name not in logged]
    if unknown:
        raise RunError(
            f"scalar {unknown[0]!r} was not logged; available: {', '.join(sorted(logged))}"
        )
    columns = 1 if len(wanted) == 1 else 2
    rows_n = math.ceil(len(wanted) / columns)
    figure = Figure(figsize=(6.0 * columns, 3.6 * rows_n), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    for index, name in enumerate(wanted):
        axes = figure.add_subplot(rows_n, columns, index + 1)
        for run_index, (label, rows) in enumerate(series):
            points = [(row.step, row.value) for row in rows if row.name == name]
            if points:
                steps, values = zip(*points, strict=True)
                axes.plot(
                    steps,
                    values,
                    label=label,
                    color=f"C{run_index % 10}",
                    marker="." if len(points) < 50 else None,
                )
        axes.set_title(name)
        axes.set_xlabel("step")
        axes.grid(True, alpha=0.3)
        if len(series) > 1:
            axes.legend(fontsize="small")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, lambda handle: handle.write(buffer.getvalue()))
    return target
