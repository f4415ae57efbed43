"""The README's first example and the docstring examples run as written."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "packages" / "data" / "README.md"
MODULES = [
    "legoml.data.batches",
    "legoml.data.datasets",
    "legoml.data.loader",
    "legoml.data.normalize",
    "legoml.data.splits",
    "legoml.data.transforms",
]


def test_readme_first_example_runs_without_mnist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert block is not None
    monkeypatch.chdir(tmp_path)  # no data/ here: the example must not need MNIST files
    monkeypatch.delenv("LEGOML_MNIST_MIRROR", raising=False)
    monkeypatch.delenv("LEGOML_DATA_DIR", raising=False)
    exec(compile(block.group(1), str(README), "exec"), {"__name__": "__readme__"})


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
