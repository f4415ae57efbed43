"""The dependency rules of SPEC section 1 hold, and the check really catches a violation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITE_PACKAGES = next(p for p in sys.path if p.endswith("site-packages"))
SOURCE_TREES = [ROOT / "packages" / p / "src" for p in ("core", "nn", "data", "metrics", "track")]
SOURCE_TREES.append(ROOT / "apps" / "mnist" / "src")


def _lint_imports(sources: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run import-linter over the installed sources, or over a copy of them only.

    For a copy, ``-S`` keeps the editable installs' ``.pth`` files from adding the real
    sources beside it, so the namespace package ``legoml`` is made of the copy alone.
    """
    argv = ["lint-imports", "--config", str(ROOT / "pyproject.toml"), "--no-cache"]
    prelude = "import sys\n"
    if sources is not None:
        prelude += f"sys.path[:0] = [{str(sources)!r}, {SITE_PACKAGES!r}]\n"
    code = prelude + f"sys.argv = {argv!r}\nfrom importlinter.cli import lint_imports_command\n"
    code += "sys.exit(lint_imports_command())\n"
    flags = ["-S"] if sources is not None else []
    return subprocess.run(
        [sys.executable, *flags, "-c", code],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        check=False,
    )


def test_contracts_are_kept() -> None:
    result = _lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _copy_sources(target: Path) -> None:
    for tree in SOURCE_TREES:
        shutil.copytree(tree, target, dirs_exist_ok=True)


def test_a_forbidden_import_breaks_the_contract(tmp_path: Path) -> None:
    _copy_sources(tmp_path)
    init = tmp_path / "legoml" / "nn" / "__init__.py"
    init.write_text(init.read_text() + "\nimport legoml.track  # injected violation\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "legoml-nn imports no other legoml package" in result.stdout
    assert "BROKEN" in result.stdout


def test_a_cycle_through_core_breaks_the_layers(tmp_path: Path) -> None:
    _copy_sources(tmp_path)
    init = tmp_path / "legoml" / "core" / "__init__.py"
    init.write_text(init.read_text() + "\nimport legoml_mnist  # injected cycle\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "acyclic" in result.stdout
