"""The README's first example and every docstring example of legoml.core run as written."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "packages" / "core" / "README.md"
MODULES = [
    "legoml.core._callback_base",
    "legoml.core.atomic",
    "legoml.core.callbacks.checkpoint",
    "legoml.core.callbacks.early_stopping",
    "legoml.core.callbacks.ema",
    "legoml.core.callbacks.evaluation",
    "legoml.core.callbacks.log",
    "legoml.core.callbacks.lr_scheduler",
    "legoml.core.callbacks.metrics",
    "legoml.core.callbacks.nonfinite",
    "legoml.core.callbacks.progress",
    "legoml.core.callbacks.timer",
    "legoml.core.context",
    "legoml.core.device",
    "legoml.core.values",
    "legoml.core.distributed",
    "legoml.core.engine",
    "legoml.core.events",
    "legoml.core.reconstruction_steps",
    "legoml.core.seeding",
    "legoml.core.state",
    "legoml.core.step_output",
    "legoml.core.steps",
]


def test_readme_first_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert block is not None
    monkeypatch.chdir(tmp_path)
    exec(compile(block.group(1), str(README), "exec"), {"__name__": "__readme__"})


def test_readme_reconstruction_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    [block] = [b for b in blocks if "make_reconstruction_train_step" in b]
    exec(compile(block, str(README), "exec"), {"__name__": "__readme__"})


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_every_module_declares_all() -> None:
    root = README.parent / "src" / "legoml" / "core"
    for path in root.rglob("*.py"):
        assert "__all__" in path.read_text(), path
    assert not (root.parent / "__init__.py").exists()  # legoml stays a namespace package
