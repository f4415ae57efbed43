"""CheckpointCallback: periodic and best checkpoints through a saver, rank 0 only.

File layout in ``dirname``: ``step-00000123.pt`` (global step, zero-padded so names sort),
and the best checkpoint(s) by ``best_metric``: ``best.pt`` (``keep_best=1``, the default)
or, with ``keep_best=K > 1``, ``best-step-00000123-val_accuracy-0.9912.pt`` per kept file
(step, metric and value in the name). Each file is a dict with ``engine``
(engine.state_dict()), ``context`` (context.state_dict()), ``epoch``, ``global_step``,
``metrics`` and optionally ``config`` and ``extra``; it loads with
``torch.load(path, weights_only=True)``. To resume::

    ckpt = torch.load(path, weights_only=True)
    context.load_state_dict(ckpt["context"])
    engine.load_state_dict(ckpt["engine"])
    engine.loop(data, max_epochs=...)
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import structlog
import torch

from legoml.core._callback_base import Callback, Priority
from legoml.core.atomic import atomic_write
from legoml.core.callbacks.early_stopping import _monitored
from legoml.core.distributed import barrier, get_world_size, is_main_process
from legoml.core.errors import CallbackError, NonFiniteLossError
from legoml.core.protocols import CheckpointSaver
from legoml.core.values import to_scalar

if TYPE_CHECKING:
    from legoml.core.context import Context
    from legoml.core.engine import Engine

__all__ = ["BestCheckpoint", "CheckpointCallback", "atomic_torch_save", "checkpoint_name"]

_log = structlog.get_logger(__name__)

BEST_NAME = "best.pt"


def checkpoint_name(global_step: int) -> str:
    """``step-00000123.pt``: the periodic checkpoint file name for a global step."""
    return f"step-{global_step:08d}.pt"


def _metric_slug(metric: str) -> str:
    """``val/accuracy`` -> ``val_accuracy``: a metric name that is safe in a file name."""
    return re.sub(r"[^A-Za-z0-9.]+", "_", metric).strip("_") or "metric"


def best_checkpoint_name(global_step: int, metric: str, value: float) -> str:
    """``best-step-00000123-val_accuracy-0.9912.pt``: a ``keep_best > 1`` file name."""
    return f"best-step-{global_step:08d}-{_metric_slug(metric)}-{value:.6g}.pt"


def atomic_torch_save(path: Path, state: Mapping[str, Any]) -> None:
    """``torch.save`` through :func:`legoml.core.atomic.atomic_write` (temporary file, fsync,
    rename, folder fsync): a crash mid-save leaves the previous file intact. Meets
    :class:`CheckpointSaver`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = dict(state)
    atomic_write(path, lambda handle: torch.save(payload, handle))


def _params_finite(model: torch.nn.Module) -> bool:
    flags = [
        torch.isfinite(t).all()
        for t in model.state_dict().values()
        if t.is_floating_point() or t.is_complex()
    ]
    if not flags:
        return True
    device = flags[0].device
    return bool(torch.stack([flag.to(device) for flag in flags]).all())  # one sync


def _saved_step(path: Path) -> int | None:
    """The ``global_step`` stored in a checkpoint file, None when it cannot be read."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # another saver's format, a torn file: the caller keeps the file
        return None
    step = data.get("global_step") if isinstance(data, Mapping) else None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


class BestCheckpoint(NamedTuple):
    """One of the kept best checkpoints: its global step, metric value and file name."""

    step: int
    value: float
    file: str


class CheckpointCallback(Callback):
    """Save every N steps and/or epochs, keep the last ``keep_last``, and the ``keep_best``
    best by ``best_metric``.

    Runs last at its events (priority CHECKPOINT) so files include what metrics,
    evaluation, schedulers and early stopping did at that point. Only rank 0 writes;
    all ranks meet at a barrier after periodic saves. With ``check_finite`` (default) it
    refuses, with :class:`NonFiniteLossError`, to write a state whose loss or weights are
    NaN/Inf, so the last good checkpoint survives. A ``best_metric`` absent although its
    source reported (other ``val/...`` metrics for ``val/accuracy``) raises
    :class:`MetricNotFoundError` naming the metrics available; ``strict=False`` only warns,
    as does the first epoch end after a resume.

    Best checkpoints: at each epoch end the ``best_metric`` value competes for the top
    ``keep_best`` (ties: the earlier step wins; a NaN/Inf value never enters). ``keep_best=1``
    keeps one ``best.pt``; more keep ``best-step-<step>-<metric>-<value>.pt`` files, and the
    one that falls out is deleted only after the new one is written. The ranking (steps,
    values, file names) is in :meth:`state_dict`, hence in every checkpoint. On resume, best
    files of this metric that the loaded ranking does not list were written after that
    checkpoint by the stopped run (or were evicted and not yet deleted), so they are
    deleted, as is a ``best.pt`` holding another step than the ranking says; a listed file
    that is gone stays in the ranking (an unbroken run ranks it too) with a warning.

    Example:
        >>> import tempfile, torch
        >>> from legoml.core import Context, Engine
        >>> folder = tempfile.mkdtemp()
        >>> saver = CheckpointCallback(folder, every_n_steps=2, every_n_epochs=None, keep_last=1)
        >>> _ = Engine(lambda e, b, c: {"loss": b}, Context(torch.nn.Linear(1, 1)), [saver]).loop(
        ...     [torch.tensor(0.0)] * 4)
        >>> sorted(p.name for p in Path(folder).iterdir())
        ['step-00000004.pt']
    """

    priority = Priority.CHECKPOINT

    def __init__(
        self,
        dirname: str | os.PathLike[str],
        saver: CheckpointSaver = atomic_torch_save,
        every_n_steps: int | None = None,
        every_n_epochs: int | None = 1,
        keep_last: int | None = 3,
        best_metric: str | None = None,
        mode: Literal["max", "min"] = "max",
        config: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
        check_finite: bool = True,
        strict: bool = True,
        keep_best: int = 1,
    ) -> None:
        for name, value in (
            ("every_n_steps", every_n_steps),
            ("every_n_epochs", every_n_epochs),
            ("keep_last", keep_last),
        ):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise CallbackError(
                    f"CheckpointCallback({name}=...) must be None or an int >= 1, got {value!r}"
                )
        if isinstance(keep_best, bool) or not isinstance(keep_best, int) or keep_best < 1:
            raise CallbackError(
                f"CheckpointCallback(keep_best=...) must be an int >= 1, got {keep_best!r}"
            )
        if keep_best > 1 and best_metric is None:
            raise CallbackError(
                f"CheckpointCallback(keep_best={keep_best}) ranks by a metric: set best_metric"
            )
        if mode not in ("max", "min"):
            raise CallbackError(
                f"CheckpointCallback(mode=...) must be 'max' or 'min', got {mode!r}"
            )
        if every_n_steps is None and every_n_epochs is None and best_metric is None:
            raise CallbackError(
                "CheckpointCallback saves nothing: set every_n_steps, every_n_epochs or best_metric"
            )
        self.dirname = Path(dirname)
        self.saver = saver
        self.every_n_steps = every_n_steps
        self.every_n_epochs = every_n_epochs
        self.keep_last = keep_last
        self.best_metric = best_metric
        self.mode = mode
        self.keep_best = keep_best
        self.config = dict(config) if config is not None else None
        self.extra = extra
        self.check_finite = check_finite
        self.strict = strict
        self._resumed = False  # a resumed epoch may have measured nothing: only warn
        self._reconcile = False  # a loaded ranking is checked against the folder once
        self.saved: list[str] = []
        self.best: list[BestCheckpoint] = []  # best first
        self._main = True

    # -------------------------------------------------------------- best ranking
    @property
    def best_score(self) -> float | None:
        """The best ``best_metric`` value so far (None before the first one)."""
        return self.best[0].value if self.best else None

    @property
    def best_step(self) -> int | None:
        """The global step of :attr:`best_score`."""
        return self.best[0].step if self.best else None

    @property
    def best_files(self) -> list[Path]:
        """Paths of the kept best checkpoints, best first."""
        return [self.dirname / entry.file for entry in self.best]

    def _rank_key(self, entry: BestCheckpoint) -> tuple[float, int]:
        return (-entry.value if self.mode == "max" else entry.value, entry.step)

    # -------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "saved": list(self.saved),
            "best_score": self.best_score,
            "best_step": self.best_step,
            "best": [
                {"step": entry.step, "value": entry.value, "file": entry.file}
                for entry in self.best
            ],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.saved = [str(name) for name in state.get("saved", [])]
        ranking = state.get("best")
        if ranking is not None:
            self.best = [
                BestCheckpoint(int(item["step"]), float(item["value"]), str(item["file"]))
                for item in ranking
            ]
        else:  # written before keep_best: one best.pt at most
            best, step = state.get("best_score"), state.get("best_step")
            self.best = (
                [] if best is None or step is None
                else [BestCheckpoint(int(step), float(best), BEST_NAME)]
            )
        self._resumed = True
        self._reconcile = True

    # -------------------------------------------------------------- hooks
    def save(self, engine: Engine, context: Context) -> None:
        """Save a periodic checkpoint now, unless this global step already has one.

        For the end of a run that stops between the regular saves (fractional epochs).
        """
        if checkpoint_name(engine.state.global_step) not in self.saved:
            self._save_periodic(engine, context)

    def on_engine_start(self, engine: Engine, context: Context) -> None:
        self._main = is_main_process()
        if self._reconcile:
            self._reconcile = False
            self._reconcile_best()

    def on_step_end(self, engine: Engine, context: Context) -> None:
        every = self.every_n_steps
        if every is not None and engine.state.global_step % every == 0:
            self._save_periodic(engine, context)

    def on_epoch_end(self, engine: Engine, context: Context) -> None:
        state = engine.state
        # every rank checks the name, so a wrong one fails on all of them, not rank 0 alone
        entered, evicted = self._update_best(state.metrics, state.global_step)
        best_file = entered if self._main else None
        every = self.every_n_epochs
        if every is not None and state.epoch % every == 0:
            self._save_periodic(engine, context, best_file)
        elif best_file is not None:
            self._write(best_file, self._payload(engine, context), engine)
        self._delete(evicted)  # only now that the new best file is on disk

    # -------------------------------------------------------------- internals
    def _update_best(
        self, metrics: Mapping[str, float], global_step: int
    ) -> tuple[str | None, list[str]]:
        """Rank this epoch's value: the file to write (None if it did not make the top
        ``keep_best``) and the files that fell out, to delete once it is written."""
        name = self.best_metric
        if name is None:
            return None, []
        strict, self._resumed = self.strict and not self._resumed, False
        if not _monitored(
            "CheckpointCallback(best_metric)", name, metrics, strict, "best_metric_missing"
        ):
            return None, []
        value = float(metrics[name])
        if not math.isfinite(value):
            _log.warning("best_metric_not_finite", metric=name, value=value, step=global_step)
            return None, []
        file = (
            BEST_NAME if self.keep_best == 1 else best_checkpoint_name(global_step, name, value)
        )
        entry = BestCheckpoint(global_step, value, file)
        others = [old for old in self.best if old.step != global_step]  # a replayed step
        ranked = sorted([*others, entry], key=self._rank_key)[: self.keep_best]
        if entry not in ranked:
            return None, []
        old_files = [old.file for old in self.best]
        self.best = ranked
        return file, self._unreferenced(old_files)

    def _unreferenced(self, files: list[str]) -> list[str]:
        kept = {entry.file for entry in self.best}
        return [file for file in dict.fromkeys(files) if file not in kept]

    def _reconcile_best(self) -> None:
        """Make the folder's best files match a loaded ranking (see the class docstring)."""
        if self.best_metric is None:
            return
        ranked = sorted(self.best, key=self._rank_key)
        dropped = ranked[self.keep_best :]  # keep_best shrank since that run
        self.best = ranked[: self.keep_best]
        if not self._main:
            return
        stale = self._unreferenced([entry.file for entry in dropped])
        if self.dirname.is_dir():
            pattern = re.compile(
                rf"best-step-\d{{8}}-{re.escape(_metric_slug(self.best_metric))}-.*\.pt"
            )
            listed = {entry.file for entry in self.best}
            stale += [
                path.name
                for path in sorted(self.dirname.iterdir())
                if pattern.fullmatch(path.name) and path.name not in listed
            ]
        legacy = self.dirname / BEST_NAME
        holders = [entry for entry in self.best if entry.file == BEST_NAME]
        if legacy.is_file() and (holders or self.keep_best == 1):
            if not holders or _saved_step(legacy) not in (None, holders[0].step):
                stale.append(BEST_NAME)
        if stale:
            _log.warning("best_checkpoints_stale_removed", files=sorted(set(stale)))
            self._delete(stale)
        missing = [entry.file for entry in self.best if not (self.dirname / entry.file).exists()]
        if missing:
            _log.warning("best_checkpoints_missing", files=missing)

    def _delete(self, files: list[str]) -> None:
        if self._main:
            for file in files:
                (self.dirname / file).unlink(missing_ok=True)

    def _save_periodic(
        self, engine: Engine, context: Context, best_file: str | None = None
    ) -> None:
        # Every rank keeps the same list (only rank 0 writes), so ``save()`` takes the same
        # branch, and meets the same barrier, on all ranks.
        name = checkpoint_name(engine.state.global_step)
        if name in self.saved:
            self.saved.remove(name)
        self.saved.append(name)
        if self._main:
            payload = self._payload(engine, context)
            if best_file is not None:  # first: a periodic file never lists a missing best
                self._write(best_file, payload, engine)
            self._write(name, payload, engine)
        self._prune()
        if get_world_size() > 1:
            barrier()

    def _payload(self, engine: Engine, context: Context) -> dict[str, Any]:
        if self.check_finite:
            self._check_finite(engine, context)
        state = engine.state
        payload: dict[str, Any] = {
            "engine": engine.state_dict(),
            "context": context.state_dict(),
            "epoch": state.epoch,
            "global_step": state.global_step,
            "metrics": {str(k): float(v) for k, v in state.metrics.items()},
        }
        if self.config is not None:
            payload["config"] = self.config
        if self.extra is not None:
            payload["extra"] = dict(self.extra() if callable(self.extra) else self.extra)
        return payload

    def _check_finite(self, engine: Engine, context: Context) -> None:
        loss = to_scalar(getattr(engine.state.output, "loss", None))
        finite_loss = loss is None or loss == loss and abs(loss) != float("inf")
        if not finite_loss or not _params_finite(context.model):
            what = f"loss {loss}" if not finite_loss else "non-finite model weights"
            raise NonFiniteLossError(
                f"{what} at global step {engine.state.global_step}; checkpoint not written "
                f"(the last good one in {self.dirname} is kept)"
            )

    def _write(self, name: str, payload: Mapping[str, Any], engine: Engine) -> None:
        path = self.dirname / name
        path.parent.mkdir(parents=True, exist_ok=True)
        self.saver(path, payload)

    def _prune(self) -> None:
        keep = self.keep_last
        if keep is None:
            return
        while len(self.saved) > keep:
            name = self.saved.pop(0)
            if self._main:
                (self.dirname / name).unlink(missing_ok=True)
