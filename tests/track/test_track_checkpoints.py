"""Checkpoints: atomic save under injected faults, safe load, progress order, model fitting."""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch

import legoml.track.checkpoints as ckpt
from legoml.track import run
from legoml.track.checkpoints import (
    CheckpointError,
    checkpoint_info,
    find_latest_checkpoint,
    load_checkpoint,
    load_model_from_checkpoint,
    save_checkpoint,
)


def _state(step: int, epoch: int = 1) -> dict[str, Any]:
    torch.manual_seed(step)
    model = torch.nn.Linear(3, 2)
    return {
        "engine": {"epoch": epoch, "iteration": step},
        "context": {"model": model.state_dict(), "optimizer": {"state": {}, "param_groups": []}},
        "epoch": epoch,
        "global_step": step,
        "metrics": {"val/accuracy": 0.5 + step / 1000},
        "config": {"lr": 0.1, "layers": [8, 4]},
    }


def _temp_files(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.startswith(".")]


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "step-00000007.pt"  # parent folders are created
    state = _state(7)
    state["extra"] = {
        "rng": torch.get_rng_state(),
        "size": torch.Size([2, 3]),
        "dtype": torch.float16,
        "device": torch.device("cpu"),
        "tuple": (1, 2.5, "x", None, True),
        "bytes": b"\x00\x01",
    }
    save_checkpoint(path, state)
    loaded = load_checkpoint(path)
    assert loaded["global_step"] == 7 and loaded["config"] == {"lr": 0.1, "layers": [8, 4]}
    assert torch.equal(loaded["context"]["model"]["weight"], state["context"]["model"]["weight"])
    assert loaded["extra"]["size"] == torch.Size([2, 3])
    assert loaded["extra"]["dtype"] is torch.float16
    assert loaded["extra"]["tuple"] == (1, 2.5, "x", None, True)
    assert _temp_files(path.parent) == []
    plain = path.parent / "plain.txt"
    plain.write_text("x")  # the atomic file gets the mode open() gives, not mkstemp's 0600
    assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def test_save_refuses_what_a_safe_load_could_not_read(tmp_path: Path) -> None:
    class Custom:
        pass

    path = tmp_path / "c.pt"
    with pytest.raises(CheckpointError, match=r"state\['extra'\]\['obj'\] is a .*Custom"):
        save_checkpoint(path, {"extra": {"obj": Custom()}})
    with pytest.raises(CheckpointError, match="must be a mapping"):
        save_checkpoint(path, [1, 2])  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match="is a directory"):
        save_checkpoint(tmp_path, {"a": 1})
    assert not path.exists()


@pytest.mark.parametrize("fault", ["write", "fsync", "replace", "interrupt"])
def test_interrupted_save_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, _state(1))
    before = path.read_bytes()

    def half_written_then_fail(obj: Any, handle: Any) -> None:
        handle.write(b"PK\x03\x04 partial bytes of a zip archive")
        raise (KeyboardInterrupt() if fault == "interrupt" else OSError(28, "No space left"))

    def fail(*args: Any, **kwargs: Any) -> None:
        raise OSError(5, "Input/output error")

    if fault in ("write", "interrupt"):
        monkeypatch.setattr(ckpt.torch, "save", half_written_then_fail)
    elif fault == "fsync":
        monkeypatch.setattr(os, "fsync", fail)
    else:
        monkeypatch.setattr(os, "replace", fail)

    expected: type[BaseException] = KeyboardInterrupt if fault == "interrupt" else CheckpointError
    with pytest.raises(expected):
        save_checkpoint(path, _state(2))
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert load_checkpoint(path)["global_step"] == 1
    assert _temp_files(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


class _RunsACommand:
    """Pickles into a call of os.system (what a malicious checkpoint does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


class _WritesAFile:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("payload", [_RunsACommand, _WritesAFile])
@pytest.mark.parametrize("container", ["torch.save", "raw pickle"])
def test_malicious_pickle_is_refused_and_never_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, payload: type, container: str
) -> None:
    marker = tmp_path / "PWNED"
    evil = {"model": {"weight": torch.zeros(2)}, "trap": payload(marker)}
    path = tmp_path / "evil.pt"
    if container == "torch.save":
        torch.save(evil, path)
    else:
        path.write_bytes(pickle.dumps(evil))
    assert not marker.exists()

    seen: list[Any] = []
    real_load = torch.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(ckpt.torch, "load", spy)
    for action in (load_checkpoint, checkpoint_info):
        with pytest.raises(
            CheckpointError, match="refusing to load .*never loads checkpoints unsafely"
        ):
            action(path)
    with pytest.raises(CheckpointError, match="refusing"):
        load_model_from_checkpoint(torch.nn.Linear(2, 1), path)
    assert find_latest_checkpoint(tmp_path) is None  # skipped, not loaded unsafely
    assert not marker.exists()
    assert seen and all(flag is True for flag in seen)  # never a fallback to unsafe loading


def test_refusal_names_the_offending_global(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"trap": _RunsACommand(tmp_path / "x")}, path)
    with pytest.raises(CheckpointError, match=r"GLOBAL (posix|nt)\.system"):
        load_checkpoint(path)


def test_unreadable_files_give_clear_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    save_checkpoint(good, _state(3))
    data = good.read_bytes()
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "half.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "short.pt").write_bytes(data[:-10])
    (tmp_path / "garbage.pt").write_bytes(b"this is not a checkpoint at all")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    cases = {
        "missing.pt": "not found",
        "empty.pt": r"empty \(0 bytes\)",
        "half.pt": "corrupt or truncated",
        "short.pt": "corrupt or truncated",
        "garbage.pt": "corrupt or truncated",
        "tensor.pt": "holds a Tensor, expected a dict",
    }
    for name, message in cases.items():
        with pytest.raises(CheckpointError, match=message) as caught:
            load_checkpoint(tmp_path / name)
        assert "\n" not in str(caught.value)  # one line
        assert name in str(caught.value)
    with pytest.raises(CheckpointError, match="is a directory.*find_latest_checkpoint"):
        load_checkpoint(tmp_path)


def test_checkpoint_info(tmp_path: Path) -> None:
    path = tmp_path / "step-00000042.pt"
    save_checkpoint(path, _state(42, epoch=3))
    info = checkpoint_info(path)
    assert (info.epoch, info.global_step) == (3, 42)
    assert info.metrics == {"val/accuracy": pytest.approx(0.542)}
    assert info.size_bytes == path.stat().st_size > 0
    assert info.created is not None and info.created.tzinfo is not None
    assert "context" in info.keys

    bare = tmp_path / "bare.pt"
    save_checkpoint(bare, torch.nn.Linear(2, 2).state_dict())
    assert (checkpoint_info(bare).epoch, checkpoint_info(bare).global_step) == (None, None)

    engine_only = tmp_path / "engine.pt"  # progress nested under "engine" only
    save_checkpoint(engine_only, {"engine": {"epoch": 2, "global_step": 9}})
    assert (checkpoint_info(engine_only).epoch, checkpoint_info(engine_only).global_step) == (2, 9)

    legacy = tmp_path / "legacy.pt"  # the old (non-zip) format cannot be memory-mapped
    torch.save({"global_step": 5}, legacy, _use_new_zipfile_serialization=False)
    assert checkpoint_info(legacy).global_step == 5


def _reverse_mtimes(paths: list[Path]) -> None:
    """Give the file furthest into training the OLDEST modification time."""
    for age, path in enumerate(reversed(paths)):
        os.utime(path, (1_000_000 + age, 1_000_000 + age))


def test_find_latest_by_name_ignores_mtime_and_does_not_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = [tmp_path / f"step-{n:08d}.pt" for n in (10, 30, 200)]  # 200 > 30 numerically
    for n, path in zip((10, 30, 200), paths, strict=True):
        save_checkpoint(path, _state(n))
    _reverse_mtimes(paths)
    (tmp_path / ".step-00000999.pt.abc.tmp").write_bytes(b"a temp file of a crashed save")
    (tmp_path / "notes.txt").write_text("not a checkpoint")

    def no_loading(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a progress-encoding name needs no load")

    monkeypatch.setattr(ckpt, "_torch_load", no_loading)
    assert find_latest_checkpoint(tmp_path) == tmp_path / "step-00000200.pt"


def test_find_latest_by_content_ignores_mtime(tmp_path: Path) -> None:
    names = {"a.pt": (1, 5), "b.pt": (2, 50), "c.pt": (2, 40), "d.pt": (1, 8)}
    for name, (epoch, step) in names.items():
        save_checkpoint(tmp_path / name, _state(step, epoch))
    _reverse_mtimes([tmp_path / n for n in ("a.pt", "d.pt", "c.pt", "b.pt")])
    assert find_latest_checkpoint(tmp_path) == tmp_path / "b.pt"


def test_find_latest_mixed_names_ties_and_damage(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "step-00000100.pt", _state(100))
    save_checkpoint(tmp_path / "best.pt", _state(100))  # same progress: the step file wins
    assert find_latest_checkpoint(tmp_path) == tmp_path / "step-00000100.pt"
    save_checkpoint(tmp_path / "best.pt", _state(150))
    assert find_latest_checkpoint(tmp_path) == tmp_path / "best.pt"
    good = (tmp_path / "step-00000100.pt").read_bytes()
    (tmp_path / "step-00000300.pt").write_bytes(good[: len(good) // 2])  # torn copy
    (tmp_path / "step-00000400.pt").write_bytes(b"")
    assert find_latest_checkpoint(tmp_path) == tmp_path / "best.pt"


def test_find_latest_edge_cases(tmp_path: Path) -> None:
    assert find_latest_checkpoint(tmp_path / "missing") is None
    assert find_latest_checkpoint(tmp_path) is None
    (tmp_path / "file.pt").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="not a directory"):
        find_latest_checkpoint(tmp_path / "file.pt")
    with run(root=tmp_path / "runs") as r:
        save_checkpoint(r.checkpoints_dir / "step-00000003.pt", _state(3))
    assert find_latest_checkpoint(r.dir) == r.checkpoints_dir / "step-00000003.pt"


class _Net(torch.nn.Module):
    def __init__(self, hidden: int = 4) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(3, hidden)
        self.fc2 = torch.nn.Linear(hidden, 2)
        self.register_buffer("scale", torch.ones(1))


@pytest.mark.parametrize("layout", ["core", "model", "bare", "ddp", "state_dict"])
def test_load_model_from_every_layout(tmp_path: Path, layout: str) -> None:
    torch.manual_seed(0)
    source = _Net()
    weights = source.state_dict()
    state: Any = {
        "core": {"context": {"model": weights}, "global_step": 1},
        "model": {"model": weights},
        "bare": weights,
        "ddp": {"context": {"model": OrderedDict((f"module.{k}", v) for k, v in weights.items())}},
        "state_dict": {"state_dict": weights, "epoch": 2},
    }[layout]
    path = tmp_path / "m.pt"
    save_checkpoint(path, state)
    target = _Net()
    returned = load_model_from_checkpoint(target, path)
    assert isinstance(returned, dict)
    for key, value in weights.items():
        assert torch.equal(target.state_dict()[key], value)


def test_load_model_explicit_key(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    save_checkpoint(path, {"ema": {"model": _Net().state_dict()}, "model": {"x": 1}})
    load_model_from_checkpoint(_Net(), path, key="ema.model")
    with pytest.raises(
        CheckpointError, match="nothing under 'ema.nope'.*top-level keys: ema, model"
    ):
        load_model_from_checkpoint(_Net(), path, key="ema.nope")
    with pytest.raises(CheckpointError, match="holds no model state_dict"):
        save_checkpoint(path, {"global_step": 3})
        load_model_from_checkpoint(_Net(), path)


def test_load_model_reports_shape_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    save_checkpoint(path, {"context": {"model": _Net(hidden=8).state_dict()}})
    target = _Net(hidden=4)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointError) as caught:
        load_model_from_checkpoint(target, path)
    message = str(caught.value)
    assert "does not fit _Net" in message and "\n" not in message
    assert "fc1.weight checkpoint (8, 3) vs model (4, 3)" in message
    assert "fc2.weight checkpoint (2, 8) vs model (2, 4)" in message
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_model_from_checkpoint(target, path, strict=False)  # shapes can never load
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_load_model_reports_missing_and_unexpected_keys(tmp_path: Path) -> None:
    weights = _Net().state_dict()
    weights["extra.weight"] = torch.zeros(1)
    del weights["fc2.bias"]
    path = tmp_path / "m.pt"
    save_checkpoint(path, {"model": weights})
    with pytest.raises(CheckpointError) as caught:
        load_model_from_checkpoint(_Net(), path)
    message = str(caught.value)
    assert "missing keys: fc2.bias" in message
    assert "unexpected keys: extra.weight" in message
    assert "strict=False" in message
    target = _Net()
    load_model_from_checkpoint(target, path, strict=False)
    assert torch.equal(target.fc1.weight, weights["fc1.weight"])


def test_load_model_lists_at_most_a_few_keys(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    save_checkpoint(path, {"model": {f"layer{i}.weight": torch.zeros(1) for i in range(12)}})
    with pytest.raises(CheckpointError, match=r"\(\+7 more\)"):
        load_model_from_checkpoint(_Net(), path)
