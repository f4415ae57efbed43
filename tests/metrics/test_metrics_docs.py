"""The README's first example and the docstring examples run as written."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "packages" / "metrics" / "README.md"
MODULES = [
    "legoml.metrics.classification",
    "legoml.metrics.collection",
    "legoml.metrics.functional",
    "legoml.metrics.loss",
    "legoml.metrics.regression",
    "legoml.metrics.report",
]


def test_readme_first_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert block is not None
    exec(compile(block.group(1), str(README), "exec"), {"__name__": "__readme__"})
    printed = capsys.readouterr().out
    assert "'accuracy': 0.75" in printed and "weighted avg" in printed


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
