"""The public face: the documented top-level names, deprecated aliases, docs that use them."""

from __future__ import annotations

import ast
import importlib
import re
import warnings
from pathlib import Path
from typing import Any

import pytest

import legoml.core as C

REPO = Path(__file__).resolve().parents[2]

TOP_LEVEL = {
    # the loop and its vocabulary
    "Engine",
    "Events",
    "State",
    "Context",
    "Callback",
    "Priority",
    # what a step returns
    "StepOutput",
    "SupervisedStepOutput",
    "UnsupervisedStepOutput",
    "DictStepOutput",
    # every built-in callback
    "MetricsCallback",
    "EvalOnEpochEndCallback",
    "ProgressBarCallback",
    "LoggingCallback",
    "CheckpointCallback",
    "EarlyStopping",
    "LRSchedulerCallback",
    "NonFiniteLossGuard",
    "TimerCallback",
    "EMACallback",
    # ready-made steps
    "make_supervised_train_step",
    "make_supervised_eval_step",
    "make_reconstruction_train_step",
    "make_reconstruction_eval_step",
    # set-up
    "seed_everything",
    "detect_device",
    # the errors a user catches
    "CoreError",
    "NonFiniteLossError",
    "ResumeError",
}

# old top-level name -> the module it lives in now (same name there)
MOVED = {
    **dict.fromkeys(["AmpSetting", "resolve_amp_dtype"], "legoml.core.steps"),
    **dict.fromkeys(["atomic_torch_save", "checkpoint_name"], "legoml.core.callbacks"),
    "unwrap_model": "legoml.core.context",
    **dict.fromkeys(
        ["cpu_supports_bf16", "keep_freed_memory", "move_to_device"], "legoml.core.device"
    ),
    **dict.fromkeys(
        [
            "DistributedInfo",
            "barrier",
            "destroy_distributed",
            "distributed_session",
            "get_local_rank",
            "get_rank",
            "get_world_size",
            "init_distributed",
            "is_distributed",
            "is_main_process",
            "release_ddp",
            "wrap_ddp",
        ],
        "legoml.core.distributed",
    ),
    "StepFn": "legoml.core.engine",
    **dict.fromkeys(
        ["CallbackError", "DistributedError", "EngineError", "MetricNotFoundError"],
        "legoml.core.errors",
    ),
    **dict.fromkeys(["FilteredEvent", "RemovableHandle"], "legoml.core.events"),
    **dict.fromkeys(
        ["CheckpointSaver", "MetricLike", "ScalarSink", "StatefulLike"], "legoml.core.protocols"
    ),
}

# SPEC.md section 4 and the READMEs import these from legoml.core
SPEC_NAMES = {
    "Engine",
    "Events",
    "Context",
    "Callback",
    "StepOutput",
    "SupervisedStepOutput",
    "UnsupervisedStepOutput",
    "DictStepOutput",
    "MetricsCallback",
    "EvalOnEpochEndCallback",
}


def test_all_is_exactly_the_documented_set_and_loads_without_warnings() -> None:
    assert len(C.__all__) == len(set(C.__all__))
    assert set(C.__all__) == TOP_LEVEL
    assert SPEC_NAMES <= TOP_LEVEL
    assert not set(C.__all__) & set(MOVED)
    assert len(TOP_LEVEL) + len(MOVED) == 60  # the face before the cut: about half stayed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        namespace: dict[str, Any] = {}
        exec("from legoml.core import *", namespace)  # noqa: S102 - fixed text
        assert set(namespace) - {"__builtins__"} == TOP_LEVEL
        assert all(getattr(C, name) is namespace[name] for name in TOP_LEVEL)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_every_moved_name_warns_with_its_new_path_and_is_the_same_object(old: str) -> None:
    where = MOVED[old]
    expected = getattr(importlib.import_module(where), old)
    hint = f"from {where} import {old}"
    with pytest.warns(DeprecationWarning, match=f"legoml.core.{old} is deprecated") as caught:
        assert getattr(C, old) is expected
    assert hint in str(caught[0].message)
    assert caught[0].filename == __file__  # points at the user's line, not at legoml.core
    with pytest.warns(DeprecationWarning, match=hint):
        namespace: dict[str, Any] = {}
        exec(f"from legoml.core import {old}", namespace)  # noqa: S102 - fixed text
    assert namespace[old] is expected


def test_moved_names_are_in_their_modules_all() -> None:
    for old, where in MOVED.items():
        assert old in importlib.import_module(where).__all__, (old, where)


def test_unknown_names_are_still_attribute_errors_without_a_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError, match="'legoml.core' has no attribute 'Trainer'"):
            _ = C.Trainer
        with pytest.raises(ImportError):
            exec("from legoml.core import Nope", {})  # noqa: S102 - fixed text
        assert not hasattr(C, "ReLUNode")


def test_the_callback_module_keeps_its_documented_names_without_warnings() -> None:
    # legoml.core.callback is the seed's import path: base, built-ins and protocols
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from legoml.core import callback

        for name in callback.__all__:
            assert getattr(callback, name) is not None
    assert {"Callback", "MetricsCallback", "EMACallback", "ScalarSink"} <= set(callback.__all__)


def _doc_imports() -> list[tuple[str, int, str]]:
    """(file, line, name) of every ``from legoml.core import name`` in the repo's READMEs."""
    found: list[tuple[str, int, str]] = []
    readmes = [REPO / "README.md", *sorted(REPO.glob("*/README.md")), *REPO.glob("*/*/README.md")]
    for readme in readmes:
        text = readme.read_text()
        for block in re.finditer(r"```python\n(.*?)```", text, re.S):
            line = text[: block.start()].count("\n") + 2  # the block's first line
            for node in ast.walk(ast.parse(block.group(1))):
                if isinstance(node, ast.ImportFrom) and node.module == "legoml.core":
                    for alias in node.names:
                        found.append(
                            (str(readme.relative_to(REPO)), line + node.lineno - 1, alias.name)
                        )
    return found


def test_readme_examples_import_only_top_level_names() -> None:
    imports = _doc_imports()
    assert {name for _, _, name in imports} >= {"Engine", "Context", "MetricsCallback"}
    stale = [entry for entry in imports if entry[2] not in TOP_LEVEL]
    assert stale == []
