"""The README's python examples run as written (the first with no matplotlib)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "packages" / "track" / "README.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def test_readme_starts_with_a_description() -> None:
    text = README.read_text(encoding="utf-8")
    assert text.startswith("# legoml-track\n\n")
    assert text.index("```python") < text.index("## ")


def test_first_example_runs_without_matplotlib(tmp_path: Path) -> None:
    code = "import sys; sys.modules['matplotlib'] = None\n" + _blocks()[0]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"-demo-[0-9a-f]{6} completed\n10 rows\n", done.stdout)
    assert list(tmp_path.iterdir()) == []  # wrote only into its own temp dir


def test_the_other_examples_run(tmp_path: Path) -> None:
    code = "\n".join(_blocks()[1:])  # one interpreter: torch is imported once
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert done.returncode == 0, done.stderr
