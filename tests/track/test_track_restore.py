"""resolve_checkpoint and restore_checkpoint: which file a path means, and loading it into a
context and engine safely, with one-line errors for everything that does not fit."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from legoml.core import Context, Engine
from legoml.track import (
    CheckpointError,
    resolve_checkpoint,
    restore_checkpoint,
    run,
    save_checkpoint,
)
from legoml.track.resume import CHECKPOINT_PATH_KEY, recorded_scalars_size


def _parts(in_features: int = 3) -> tuple[Context, Engine]:
    model = nn.Linear(in_features, 2)
    context = Context(model, torch.optim.SGD(model.parameters(), lr=0.1))
    return context, Engine(lambda engine, batch, context: {"loss": batch}, context)


def _training_checkpoint(path: Path, step: int, **extra: Any) -> Path:
    context, engine = _parts()
    engine.loop([torch.tensor(0.0)] * step)
    save_checkpoint(
        path,
        {"context": context.state_dict(), "engine": engine.state_dict(), "global_step": step}
        | extra,
    )
    return path


def test_resolve_a_file_a_run_and_a_checkpoints_folder(tmp_path: Path) -> None:
    with run("r", root=tmp_path) as r:
        pass
    assert resolve_checkpoint(r.dir) is None  # a run killed before its first save
    folder = r.checkpoints_dir
    for step in (2, 10, 9):
        save_checkpoint(folder / f"step-{step:08d}.pt", {"global_step": step})
    newest = folder / "step-00000002.pt"
    os.utime(newest, (4e9, 4e9))  # file times never decide
    assert resolve_checkpoint(r.dir) == folder / "step-00000010.pt"
    assert resolve_checkpoint(folder) == folder / "step-00000010.pt"
    assert resolve_checkpoint(newest) == newest
    assert resolve_checkpoint(tmp_path) is None  # a folder of runs holds no .pt itself


def test_resolve_a_run_without_a_checkpoints_folder_and_an_empty_folder(tmp_path: Path) -> None:
    with run("r", root=tmp_path) as r:
        pass
    r.checkpoints_dir.rmdir()
    (r.dir / "stray.pt").write_bytes(b"not searched: only checkpoints/ is")
    assert resolve_checkpoint(r.dir) is None
    (tmp_path / "empty").mkdir()
    assert resolve_checkpoint(tmp_path / "empty") is None


def test_resolve_a_missing_path_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"^no such checkpoint or run directory: .*nope"):
        resolve_checkpoint(tmp_path / "nope")


def test_restore_loads_context_and_engine_and_says_from_where(tmp_path: Path) -> None:
    path = _training_checkpoint(tmp_path / "c.pt", step=4)
    saved = torch.load(path, weights_only=True)["context"]["model"]
    context, engine = _parts()
    data = restore_checkpoint(path, context, engine)
    assert data[CHECKPOINT_PATH_KEY] == path and data["global_step"] == 4
    assert engine.state.global_step == 4
    assert all(torch.equal(saved[k], v) for k, v in context.model.state_dict().items())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]  # read only


def test_restore_from_a_run_directory_takes_its_latest(tmp_path: Path) -> None:
    with run("r", root=tmp_path) as r:
        pass
    _training_checkpoint(r.checkpoints_dir / "step-00000002.pt", step=2)
    _training_checkpoint(r.checkpoints_dir / "step-00000005.pt", step=5)
    context, engine = _parts()
    data = restore_checkpoint(r.dir, context)  # no engine: context only
    assert data[CHECKPOINT_PATH_KEY].name == "step-00000005.pt"
    assert engine.state.global_step == 0


def test_restore_refuses_a_run_without_checkpoints(tmp_path: Path) -> None:
    with run("r", root=tmp_path) as r:
        pass
    context, _ = _parts()
    with pytest.raises(CheckpointError, match="holds no checkpoint yet"):
        restore_checkpoint(r.dir, context)


def test_restore_refuses_what_is_not_a_training_checkpoint(tmp_path: Path) -> None:
    context, engine = _parts()
    bare = tmp_path / "bare.pt"
    save_checkpoint(bare, context.model.state_dict())
    with pytest.raises(CheckpointError, match=r"not a training checkpoint \(no 'context' entry\)"):
        restore_checkpoint(bare, context)
    weights_only = tmp_path / "weights.pt"
    save_checkpoint(weights_only, {"context": context.state_dict()})
    restore_checkpoint(weights_only, context)  # fine without an engine
    with pytest.raises(CheckpointError, match=r"no 'engine' entry"):
        restore_checkpoint(weights_only, context, engine)


@pytest.mark.parametrize("other", ["model", "optimizer"])
def test_restore_refuses_another_model_or_optimizer_in_one_line(other: str, tmp_path: Path) -> None:
    path = _training_checkpoint(tmp_path / "c.pt", step=1)
    if other == "model":
        context, engine = _parts(in_features=7)
    else:
        model = nn.Linear(3, 2)
        groups: list[dict[str, Any]] = [{"params": [model.weight]}, {"params": [model.bias]}]
        optimizer = torch.optim.SGD(groups, lr=0.1)
        context = Context(model, optimizer)
        engine = Engine(lambda engine, batch, context: {"loss": batch}, context)
    with pytest.raises(CheckpointError) as caught:
        restore_checkpoint(path, context, engine)
    message = str(caught.value)
    assert message.startswith(f"{path}: the checkpoint does not fit this model/optimizer (")
    assert "\n" not in message and len(message) < 500


def test_restore_refuses_a_broken_engine_state(tmp_path: Path) -> None:
    path = _training_checkpoint(tmp_path / "c.pt", step=1)
    data = torch.load(path, weights_only=True)
    data["engine"]["epoch"] = "one"
    save_checkpoint(path, data)
    context, engine = _parts()
    with pytest.raises(CheckpointError, match="its engine state cannot be loaded"):
        restore_checkpoint(path, context, engine)


def test_restore_never_loads_unsafely(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"context": {"model": {}}, "payload": Path("x")}, path)
    context, _ = _parts()
    with pytest.raises(CheckpointError, match="refusing to load"):
        restore_checkpoint(path, context)


def test_recorded_scalars_size_prefers_the_callback_then_extra() -> None:
    def checkpoint(callbacks: dict[str, Any], extra: Any = None) -> dict[str, Any]:
        data: dict[str, Any] = {"engine": {"callbacks": callbacks}}
        if extra is not None:
            data["extra"] = extra
        return data

    assert recorded_scalars_size(checkpoint({"TrackingCallback": {"scalars_size": 40}})) == 40
    assert recorded_scalars_size(checkpoint({"Mine": {"scalars_size": 7}})) == 7
    both = {"TrackingCallback": {"scalars_size": 40}, "TrackingCallback#1": {"scalars_size": 9}}
    assert recorded_scalars_size(checkpoint(both)) == 40
    assert recorded_scalars_size(checkpoint({}, {"scalars_size": 33})) == 33
    assert (
        recorded_scalars_size(checkpoint({"A": {"scalars_size": 1}, "B": {"scalars_size": 2}}))
        is None
    )
    assert (
        recorded_scalars_size(checkpoint({"T": {"scalars_size": True}}, {"scalars_size": -1}))
        is None
    )
    assert recorded_scalars_size({}) is None
