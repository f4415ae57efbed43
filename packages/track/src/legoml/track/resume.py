"""Resume in one call: find a run's latest checkpoint, restore the model, optimizer and engine
from it, and reopen the run with scalars.csv rewound to exactly where that checkpoint was.

Example::

    from legoml.track import resume_run, save_checkpoint, TrackingCallback
    from legoml.core import CheckpointCallback

    with resume_run("runs/exp", context, engine, config=cfg) as r:  # fresh, resumed or done
        engine.callbacks += [
            TrackingCallback(r),
            CheckpointCallback(r.checkpoints_dir, saver=save_checkpoint, every_n_steps=10),
        ]
        engine.loop(loader, max_epochs=3)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from legoml.track._mlflow_options import MLflowOptions
from legoml.track._run import Run, require_sinks
from legoml.track._rundir import check_name_and_seed, config_to_dict
from legoml.track._scalars import HEADER_SIZE
from legoml.track.checkpoints import (
    CHECKPOINT_SUFFIXES,
    _progress,
    find_latest_checkpoint,
    load_checkpoint,
)
from legoml.track.errors import CheckpointError, RunError

if TYPE_CHECKING:
    from legoml.core.protocols import StatefulLike

__all__ = [
    "CHECKPOINT_PATH_KEY",
    "recorded_scalars_size",
    "resolve_checkpoint",
    "restore_checkpoint",
    "resume_run",
]

log = structlog.get_logger(__name__)

CHECKPOINT_PATH_KEY = "checkpoint_path"  # restore_checkpoint() puts the file it loaded here


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path | None:
    """The checkpoint ``path`` stands for: a file is itself; a run directory or a folder of
    checkpoints gives its latest by training progress; ``None`` when there is none yet.

    A path that does not exist is an error: callers that accept "nothing yet" check first.
    """
    target = Path(path)
    if not target.exists():
        raise CheckpointError(f"no such checkpoint or run directory: {target}; check the path")
    if target.is_file():
        return target
    folder = target / "checkpoints"
    if folder.is_dir():  # a run directory (or a copy of one without its meta.json)
        return find_latest_checkpoint(folder)
    if (target / "meta.json").is_file():
        return None
    return find_latest_checkpoint(target)


def _detail(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return (" ".join(lines[:2]) or type(exc).__name__)[:300]


def _load_state(target: StatefulLike, state: Any, problem: str, fix: str) -> None:
    """``target.load_state_dict(state)``, a refusal becoming one ``CheckpointError`` line."""
    try:
        target.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{problem} ({_detail(exc)}); {fix}") from exc


def restore_checkpoint(
    path: str | os.PathLike[str],
    context: StatefulLike,
    engine: StatefulLike | None = None,
    *,
    map_location: Any = "cpu",
) -> dict[str, Any]:
    """Load a training checkpoint (a file, or a run directory's latest) into ``context`` and,
    when given, ``engine``; returns the checkpoint dict, with the file it came from (a
    ``Path``) under ``"checkpoint_path"``.

    The load is the safe one of :func:`load_checkpoint`; nothing on disk changes. A
    checkpoint of another model or optimizer is refused in one line (the context may then be
    partly loaded: build a fresh one before trying another file).
    """
    target = Path(path)
    found = resolve_checkpoint(target)
    if found is None:
        raise CheckpointError(
            f"{target} holds no checkpoint yet; pass a checkpoint file or start the run fresh"
        )
    data = load_checkpoint(found, map_location=map_location)
    needed = ("context", "engine") if engine is not None else ("context",)
    for key in needed:
        if not isinstance(data.get(key), Mapping):
            raise CheckpointError(
                f"{found}: not a training checkpoint (no {key!r} entry); for bare weights "
                "use load_model_from_checkpoint"
            )
    _load_state(
        context,
        data["context"],
        f"{found}: the checkpoint does not fit this model/optimizer",
        "build the model and optimizer the run was trained with",
    )
    if engine is not None:
        _load_state(
            engine,
            data["engine"],
            f"{found}: its engine state cannot be loaded",
            "resume with a fresh Engine, or use an earlier checkpoint",
        )
    _, step = _progress(data)
    log.info("checkpoint restored", path=str(found), global_step=step)
    data[CHECKPOINT_PATH_KEY] = found
    return data


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def recorded_scalars_size(checkpoint: Mapping[str, Any]) -> int | None:
    """Bytes scalars.csv held when ``checkpoint`` was saved: the ``scalars_size`` a
    TrackingCallback put in the engine state, else an older checkpoint's
    ``extra["scalars_size"]``; ``None`` when unknown (the rewind then goes by step only)."""
    engine = checkpoint.get("engine")
    callbacks = engine.get("callbacks") if isinstance(engine, Mapping) else None
    sizes: dict[str, int] = {}
    if isinstance(callbacks, Mapping):
        for key, state in callbacks.items():
            if isinstance(state, Mapping) and _is_size(state.get("scalars_size")):
                sizes[str(key)] = int(state["scalars_size"])
    if "TrackingCallback" in sizes:
        return sizes["TrackingCallback"]
    if len(set(sizes.values())) == 1:
        return next(iter(sizes.values()))
    extra = checkpoint.get("extra")
    size = extra.get("scalars_size") if isinstance(extra, Mapping) else None
    if isinstance(size, int) and _is_size(size):
        return size
    if sizes:
        log.warning(
            "several scalars sizes recorded; rewinding by step only", callbacks=sorted(sizes)
        )
    return None


def _run_holding(path: Path) -> Path | None:
    """The run directory that is ``path`` or holds it (up to two levels up)."""
    for candidate in (path, *list(path.parents)[:2]):
        if (candidate / "meta.json").is_file():
            return candidate
    return None


def _continue(
    run_dir: Path,
    checkpoint: Path | None,
    context: StatefulLike,
    engine: StatefulLike,
    options: dict[str, Any],
) -> Run:
    """Restore first (memory only), then reopen the run rewound to that checkpoint."""
    if checkpoint is None:
        log.info("no checkpoint yet; starting from step 0", run=str(run_dir))
        return Run.resume(run_dir, rewind_to_step=0, rewind_to_size=HEADER_SIZE, **options)
    data = restore_checkpoint(checkpoint, context, engine)
    _, step = _progress(data)
    own = checkpoint.resolve().parent == (run_dir / "checkpoints").resolve()
    size = recorded_scalars_size(data) if own else None  # a size of this run's own CSV only
    log.info("resuming run", run=str(run_dir), checkpoint=str(checkpoint), global_step=step)
    return Run.resume(run_dir, rewind_to_step=step, rewind_to_size=size, **options)


def resume_run(
    path: str | os.PathLike[str],
    context: StatefulLike,
    engine: StatefulLike,
    *,
    config: object = None,
    seed: int | None = None,
    name: str | None = None,
    tensorboard: bool = False,
    mlflow: bool | str | MLflowOptions = False,
    create: bool = True,
) -> Run:
    """Start, resume or reopen the run at ``path`` in one idempotent call; use with ``with``.

    - a run directory (it has meta.json), or its ``checkpoints/`` folder: restore ``context``
      and ``engine`` from its latest checkpoint and reopen the run with the rows logged after
      that checkpoint dropped; with no checkpoint yet, reopen it with every row dropped and
      ``context``/``engine`` untouched (training starts from step 0);
    - a checkpoint file inside a run: the same from that checkpoint (the exact, byte-level
      rewind only when it lies in that run's own ``checkpoints/``);
    - a missing path or an empty directory: a fresh run in exactly that directory, named
      ``name`` or the folder's name (``create=False`` refuses instead).

    The checkpoint is restored before the run directory is touched, so a refused one changes
    nothing on disk. ``name`` applies to fresh runs only; ``config`` and ``seed`` are recorded
    as by :func:`run`. A finished run reopens at its end: ``engine.loop`` then trains nothing.
    ``mlflow`` (as in :func:`run`) continues the MLflow run recorded in the run directory.
    """
    check_name_and_seed(name, seed)
    config_to_dict(config)  # a bad config fails before anything is read or written
    target = Path(path)
    where = target.resolve()
    mirror = require_sinks(tensorboard, mlflow, _run_holding(where))
    options: dict[str, Any] = {
        "config": config,
        "seed": seed,
        "tensorboard": tensorboard,
        "mlflow": mirror or False,
    }
    if not where.exists() and where.suffix in CHECKPOINT_SUFFIXES:
        raise CheckpointError(f"checkpoint not found: {target}; check the path")
    owner = _run_holding(where)
    if where.is_file():
        if owner is None:
            raise RunError(
                f"checkpoint {target} is not inside a run directory; pass the run directory "
                "to resume (or load it alone with restore_checkpoint)"
            )
        return _continue(owner, where, context, engine, options)
    if owner is not None and (owner == where or where == owner / "checkpoints"):
        return _continue(owner, resolve_checkpoint(owner), context, engine, options)
    if owner is not None:
        raise RunError(f"{target} is inside the run {owner}; pass the run directory itself")
    if where.exists() and (not where.is_dir() or any(where.iterdir())):
        raise RunError(
            f"{target} is not a run directory (no meta.json) and not empty; pass a run "
            "directory, a checkpoint inside one, or a new directory"
        )
    if not create:
        raise RunError(
            f"no such run directory or checkpoint: {target}; check the path, or pass "
            "create=True to start a new run there"
        )
    return Run.create_at(where, name, config, seed, tensorboard=tensorboard, mlflow=mirror or False)
