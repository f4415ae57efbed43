"""CheckpointCallback(keep_best=K): the K best checkpoints, their ranking and resume."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from structlog.testing import capture_logs

from legoml.core import CheckpointCallback, Context, Engine, Events
from legoml.core.callbacks import atomic_torch_save
from legoml.core.errors import CallbackError

Scores = Mapping[int, float]


def scored_engine(scores: Scores, *callbacks: Any) -> Engine:
    """Two steps per epoch; ``val/acc`` of epoch e is ``scores[e]``."""
    engine = Engine(
        lambda e, b, c: {"loss": torch.tensor(0.0)}, Context(torch.nn.Linear(1, 1)), callbacks
    )
    engine.add_event_handler(
        Events.EPOCH_END, lambda e, c: e.state.metrics.update({"val/acc": scores[e.state.epoch]})
    )
    return engine


def best_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("best"))


def name(step: int, value: float) -> str:
    return f"best-step-{step:08d}-val_acc-{value:.6g}.pt"


@pytest.mark.parametrize(
    ("mode", "kept"),
    [("max", [(10, 0.9), (4, 0.7), (6, 0.5)]), ("min", [(2, 0.1), (8, 0.2), (6, 0.5)])],
)
def test_keeps_the_k_best_named_by_step_and_value(
    tmp_path: Path, mode: str, kept: list[tuple[int, float]]
) -> None:
    scores = {1: 0.1, 2: 0.7, 3: 0.5, 4: 0.2, 5: 0.9}
    cb = CheckpointCallback(
        tmp_path, every_n_epochs=None, best_metric="val/acc", mode=mode, keep_best=3  # type: ignore[arg-type]
    )
    scored_engine(scores, cb).loop([0, 1], max_epochs=5)
    assert [(entry.step, entry.value) for entry in cb.best] == kept
    assert cb.best_files == [tmp_path / name(step, value) for step, value in kept]
    assert best_names(tmp_path) == sorted(name(step, value) for step, value in kept)
    assert (cb.best_score, cb.best_step) == (kept[0][1], kept[0][0])
    for step, value in kept:
        ckpt = torch.load(tmp_path / name(step, value), weights_only=True)
        assert ckpt["global_step"] == step and ckpt["metrics"]["val/acc"] == value
        # the file's own ranking already lists it
        ranking = ckpt["engine"]["callbacks"]["CheckpointCallback"]["best"]
        assert {"step": step, "value": value, "file": name(step, value)} in ranking


def test_ties_keep_the_earlier_step_and_non_finite_never_enters(tmp_path: Path) -> None:
    scores = {1: 0.5, 2: float("nan"), 3: 0.5, 4: float("inf"), 5: 0.5, 6: 0.6}
    cb = CheckpointCallback(tmp_path, every_n_epochs=None, best_metric="val/acc", keep_best=2)
    with capture_logs() as logs:
        scored_engine(scores, cb).loop([0, 1], max_epochs=6)
    assert [(entry.step, entry.value) for entry in cb.best] == [(12, 0.6), (2, 0.5)]
    assert best_names(tmp_path) == sorted([name(12, 0.6), name(2, 0.5)])
    assert [log["value"] for log in logs if log["event"] == "best_metric_not_finite"][1] == float(
        "inf"
    )
    # keep_best=1: a NaN first value does not become best.pt either
    single = CheckpointCallback(tmp_path / "one", every_n_epochs=None, best_metric="val/acc")
    scored_engine({1: float("nan"), 2: 0.3, 3: 0.3}, single).loop([0, 1], max_epochs=3)
    assert single.best_score == 0.3 and single.best_step == 4
    assert best_names(tmp_path / "one") == ["best.pt"]


def test_the_evicted_file_is_deleted_only_after_the_new_one_is_written(tmp_path: Path) -> None:
    events: list[tuple[str, list[str]]] = []

    def saver(path: Path, state: Mapping[str, Any]) -> None:
        events.append((path.name, best_names(tmp_path)))  # what exists while writing
        atomic_torch_save(path, state)

    cb = CheckpointCallback(
        tmp_path, saver, every_n_epochs=1, keep_last=1, best_metric="val/acc", keep_best=1 + 1
    )
    scored_engine({1: 0.1, 2: 0.2, 3: 0.3}, cb).loop([0, 1], max_epochs=3)
    written = [entry for entry in events if entry[0].startswith("best")]
    assert written[-1] == (name(6, 0.3), sorted([name(2, 0.1), name(4, 0.2)]))
    # the best file goes first, so a periodic checkpoint never lists a best file not yet written
    assert [entry[0] for entry in events][-2:] == [name(6, 0.3), "step-00000006.pt"]
    assert best_names(tmp_path) == sorted([name(4, 0.2), name(6, 0.3)])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"keep_best": 0}, r"keep_best=\.\.\.\) must be an int >= 1, got 0"),
        ({"keep_best": -2}, "keep_best"),
        ({"keep_best": True}, "keep_best"),
        ({"keep_best": 2.0}, "keep_best"),
        ({"keep_best": "3"}, "keep_best"),
        ({"keep_best": 3}, r"keep_best=3\) ranks by a metric: set best_metric"),
    ],
)
def test_bad_keep_best_is_one_clear_error(
    tmp_path: Path, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(CallbackError, match=match) as info:
        CheckpointCallback(tmp_path, **kwargs)
    assert "\n" not in str(info.value)


SCORES = {1: 0.3, 2: 0.6, 3: 0.2, 4: 0.8, 5: 0.4, 6: 0.7}


def run_to(folder: Path, scores: Scores, stop_at: int | None, keep_best: int = 2) -> Engine:
    cb = CheckpointCallback(
        folder, every_n_steps=1, every_n_epochs=None, keep_last=None, best_metric="val/acc",
        keep_best=keep_best,
    )
    engine = scored_engine(scores, cb)
    if stop_at is not None:
        engine.add_event_handler(Events.STEP_END(once=stop_at), lambda e, c: e.terminate())
    engine.loop([0, 1], max_epochs=6)
    return engine


def resume(folder: Path, from_step: int, scores: Scores, keep_best: int = 2) -> CheckpointCallback:
    ckpt = torch.load(folder / f"step-{from_step:08d}.pt", weights_only=True)
    cb = CheckpointCallback(
        folder, every_n_steps=1, every_n_epochs=None, keep_last=None, best_metric="val/acc",
        keep_best=keep_best,
    )
    engine = scored_engine(scores, cb)
    engine.load_state_dict(ckpt["engine"])
    engine.loop([0, 1])
    return cb


@pytest.mark.parametrize("from_step", [3, 4, 7, 9])
def test_a_killed_run_resumed_keeps_the_same_files_as_an_unbroken_one(
    tmp_path: Path, from_step: int
) -> None:
    unbroken = run_to(tmp_path / "full", SCORES, None).callbacks[0]
    assert isinstance(unbroken, CheckpointCallback)
    # the killed run went on to step 11, writing best files after the checkpoint we resume from
    run_to(tmp_path / "cut", SCORES, stop_at=11)
    resumed = resume(tmp_path / "cut", from_step, SCORES)
    assert resumed.best == unbroken.best
    assert best_names(tmp_path / "cut") == best_names(tmp_path / "full")


def test_stale_files_of_the_dead_run_are_removed_on_resume(tmp_path: Path) -> None:
    folder = tmp_path / "cut"
    run_to(folder, SCORES, stop_at=11)  # best so far: steps 8 (0.8) and 4 (0.6)
    assert best_names(folder) == sorted([name(8, 0.8), name(4, 0.6)])
    # resumed from step 5, the run now measures other values (e.g. non-deterministic kernels)
    other = {**SCORES, 3: 0.1, 4: 0.1, 5: 0.1, 6: 0.1}
    with capture_logs() as logs:
        resumed = resume(folder, 5, other)
    events = {log["event"]: log for log in logs}
    # written after step 5 by the dead run, which also evicted step 2's file at step 8
    assert events["best_checkpoints_stale_removed"]["files"] == [name(8, 0.8)]
    assert events["best_checkpoints_missing"]["files"] == [name(2, 0.3)]
    assert [(e.step, e.value) for e in resumed.best] == [(4, 0.6), (2, 0.3)]
    assert best_names(folder) == [name(4, 0.6)]


def test_a_file_left_by_a_crash_between_write_and_delete_is_removed(tmp_path: Path) -> None:
    folder = tmp_path / "cut"
    run_to(folder, SCORES, stop_at=9)  # at step 8: 0.8 entered, step 2 (0.3) evicted
    leftover = folder / name(2, 0.3)
    atomic_torch_save(leftover, {"global_step": 2})  # as if the process died before deleting it
    resumed = resume(folder, 9, SCORES)
    assert not leftover.exists()
    assert [(e.step, e.value) for e in resumed.best] == [(8, 0.8), (12, 0.7)]
    assert best_names(folder) == sorted([name(8, 0.8), name(12, 0.7)])


def test_a_listed_file_that_is_gone_stays_ranked_with_a_warning(tmp_path: Path) -> None:
    folder = tmp_path / "cut"
    run_to(folder, SCORES, stop_at=9)
    (folder / name(4, 0.6)).unlink()
    with capture_logs() as logs:
        resumed = resume(folder, 9, {**SCORES, 5: 0.5, 6: 0.5})
    assert any(log["event"] == "best_checkpoints_missing" for log in logs)
    # 0.5 does not beat the missing 0.6: the ranking is the one an unbroken run has
    assert [(e.step, e.value) for e in resumed.best] == [(8, 0.8), (4, 0.6)]


def test_keep_best_one_resume_replaces_a_stale_best_pt(tmp_path: Path) -> None:
    folder = tmp_path / "cut"
    run_to(folder, SCORES, stop_at=11, keep_best=1)  # best.pt now holds step 8
    assert torch.load(folder / "best.pt", weights_only=True)["global_step"] == 8
    other = {**SCORES, 4: 0.5, 6: 0.5}
    resumed = resume(folder, 5, other, keep_best=1)  # ranking at step 5: step 4 (0.6)
    assert [(e.step, e.value, e.file) for e in resumed.best] == [(4, 0.6, "best.pt")]
    assert not (folder / "best.pt").exists()  # the dead run's step-8 file was not this run's
    # when nothing diverges, best.pt is rewritten at the same step as in the unbroken run
    again = resume(folder, 5, SCORES, keep_best=1)
    assert [(e.step, e.value) for e in again.best] == [(8, 0.8)]
    assert torch.load(folder / "best.pt", weights_only=True)["global_step"] == 8


def test_state_written_before_keep_best_still_loads(tmp_path: Path) -> None:
    cb = CheckpointCallback(tmp_path, every_n_epochs=None, best_metric="val/acc")
    cb.load_state_dict({"saved": [], "best_score": 0.4, "best_step": 6})
    assert [(e.step, e.value, e.file) for e in cb.best] == [(6, 0.4, "best.pt")]
    shrunk = CheckpointCallback(tmp_path, every_n_epochs=None, best_metric="val/acc", keep_best=2)
    shrunk.load_state_dict(
        {"best": [{"step": s, "value": v, "file": name(s, v)} for s, v in [(20, 0.9), (40, 0.8), (60, 0.7)]]}
    )
    for s, v in [(20, 0.9), (40, 0.8), (60, 0.7)]:
        atomic_torch_save(tmp_path / name(s, v), {"global_step": s})
    scored_engine({1: 0.1}, shrunk).loop([0, 1])  # keep_best went from 3 to 2: drop the third
    assert best_names(tmp_path) == sorted([name(20, 0.9), name(40, 0.8)])
