"""The package stands alone: torch only, public surface declared, docs that run."""

from __future__ import annotations

import ast
import doctest
import importlib
import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import torch

import legoml.nn as L
from legoml.nn import blocks, models

SRC = Path(__file__).resolve().parents[2] / "packages" / "nn" / "src" / "legoml" / "nn"
README = SRC.parents[2] / "README.md"
MODULES = sorted(
    m.name for m in pkgutil.walk_packages(L.__path__, prefix="legoml.nn.") if not m.ispkg
) + ["legoml.nn", "legoml.nn.blocks", "legoml.nn.models"]

_PROBE = """
import json, sys
import torch
before = set(sys.modules)
import legoml.nn
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_importing_legoml_nn_after_torch_pulls_in_only_its_own_modules() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    new = json.loads(result.stdout.strip().splitlines()[-1])
    foreign = [m for m in new if m.split(".")[0] not in sys.stdlib_module_names | {"legoml"}]
    assert foreign == [], f"legoml.nn imported third-party modules: {foreign}"
    others = [m for m in new if m.startswith("legoml.") and not m.startswith("legoml.nn")]
    assert others == [], f"legoml.nn imported other LegoML packages: {others}"
    assert "legoml.nn.node" in new


def test_source_imports_only_stdlib_torch_and_itself() -> None:
    allowed = set(sys.stdlib_module_names) | {"torch", "__future__"}
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for stmt in ast.walk(tree):
            names: list[str] = []
            if isinstance(stmt, ast.Import):
                names = [a.name for a in stmt.names]
            elif isinstance(stmt, ast.ImportFrom):
                assert stmt.level == 0, f"{path}: use absolute imports"
                names = [stmt.module or ""]
            for name in names:
                top = name.split(".")[0]
                ok = top in allowed or name == "legoml.nn" or name.startswith("legoml.nn.")
                assert ok, f"{path.name} imports {name}"


def test_every_module_declares_all_and_the_package_exports_it() -> None:
    for name in MODULES:
        module = importlib.import_module(name)
        assert isinstance(getattr(module, "__all__", None), list), f"{name} has no __all__"
        for public in module.__all__:
            assert hasattr(module, public), f"{name}.__all__ names missing {public}"
    for public in L.__all__:
        assert getattr(L, public) is not None
    nodes = [n for n in L.__all__ if isinstance(getattr(L, n), type) and n.endswith("Node")]
    assert all(issubclass(getattr(L, n), L.Node) for n in nodes)


def test_docstring_examples_run() -> None:
    public = [L, blocks, models]  # examples may use any public node, wherever it lives
    namespace = {name: getattr(m, name) for m in public for name in m.__all__}
    namespace |= {"torch": torch, "nn": torch.nn}
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    attempted = 0
    for name in MODULES:
        module = importlib.import_module(name)
        for test in finder.find(module, globs={**vars(module), **namespace}):
            result = runner.run(test)
            assert result.failed == 0, f"doctest failed in {test.name}"
            attempted += result.attempted
    assert attempted >= 25


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_first_example_runs_in_a_fresh_interpreter(tmp_path: Path) -> None:
    blocks = _python_blocks()
    assert blocks, "README has no python example"
    assert "legoml." in blocks[0]
    imported = set(re.findall(r"^\s*(?:from|import) ([\w.]+)", blocks[0], flags=re.M))
    assert {m.split(".")[0] for m in imported} <= set(sys.stdlib_module_names) | {"torch", "legoml"}
    assert not any(m.startswith("legoml.") and not m.startswith("legoml.nn") for m in imported)
    result = subprocess.run(
        [sys.executable, "-c", blocks[0]],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_readme_other_examples_run() -> None:
    for i, block in enumerate(_python_blocks()[1:], start=1):
        exec(
            compile(block, f"README-block-{i}", "exec", dont_inherit=True), {"__name__": "__main__"}
        )  # noqa: S102
