"""Built wheels keep the namespace intact and work alone with only their declared dependencies.

Run by ``make test-packaging`` after ``make dist``. Each library wheel is installed into its
own folder together with its declared dependencies (torch excepted: it comes from a shared
torch-only environment, ``.venv-pkg``), then the first Python example of its README runs
there with the repository and every other LegoML package out of reach.
"""

from __future__ import annotations

import email.parser
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "dist"
PKG_PYTHON = Path(os.environ.get("LEGOML_PKG_PYTHON", ROOT / ".venv-pkg" / "bin" / "python"))
LIBRARIES = {
    "legoml_core": ROOT / "packages" / "core",
    "legoml_nn": ROOT / "packages" / "nn",
    "legoml_data": ROOT / "packages" / "data",
    "legoml_metrics": ROOT / "packages" / "metrics",
    "legoml_track": ROOT / "packages" / "track",
}
ALL_LEGOML = ["legoml.core", "legoml.nn", "legoml.data", "legoml.metrics", "legoml.track"]
PROVIDED_BY_BASE = {"torch", "torchvision"}


def _wheel(dist_name: str) -> Path:
    found = sorted(DIST.glob(f"{dist_name}-*.whl"))
    assert len(found) == 1, f"expected one {dist_name} wheel in {DIST}, found {found}"
    return found[0]


def _requirements(wheel: Path) -> list[str]:
    """Names of the wheel's unconditional requirements (extras excluded)."""
    with zipfile.ZipFile(wheel) as zf:
        meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.parser.Parser().parsestr(zf.read(meta_name).decode())
    names = []
    for req in meta.get_all("Requires-Dist") or []:
        if "extra ==" in req:
            continue
        names.append(re.split(r"[\s;<>=!~\[(]", req, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def test_six_wheels_and_sdists_are_built() -> None:
    assert len(list(DIST.glob("*.whl"))) == 6
    assert len(list(DIST.glob("*.tar.gz"))) == 6


@pytest.mark.parametrize("wheel", sorted(DIST.glob("*.whl")), ids=lambda p: p.name.split("-")[0])
def test_no_wheel_ships_the_namespace_init(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert "legoml/__init__.py" not in names
    assert any(n.endswith("py.typed") for n in names)


def test_nn_requires_torch_and_nothing_else() -> None:
    assert _requirements(_wheel("legoml_nn")) == ["torch"]


def _readme_example(package_dir: Path) -> str:
    text = (package_dir / "README.md").read_text()
    match = re.search(r"```python\n(.*?)```", text, flags=re.S)
    assert match, f"{package_dir / 'README.md'} has no ```python example"
    return match.group(1)


def _install_alone(dist_name: str, target: Path) -> list[str]:
    """Install the wheel and its declared non-torch dependencies, LegoML ones from dist/."""
    to_install: list[str] = []
    pending = [dist_name]
    seen: set[str] = set()
    third_party: list[str] = []
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        wheel = _wheel(name)
        to_install.append(str(wheel))
        for req in _requirements(wheel):
            if req.startswith("legoml-"):
                pending.append(req.replace("-", "_"))
            elif req not in PROVIDED_BY_BASE:
                third_party.append(req)
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target)]
    subprocess.run([*cmd, *to_install, *third_party], check=True)
    return sorted(seen)


@pytest.mark.parametrize("dist_name", sorted(LIBRARIES))
def test_wheel_alone_runs_its_readme_example(dist_name: str, tmp_path: Path) -> None:
    assert PKG_PYTHON.exists(), f"{PKG_PYTHON} is missing: run `make test-packaging`"
    target = tmp_path / "site"
    installed = _install_alone(dist_name, target)
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(target), "HOME": str(tmp_path)}
    run = dict(cwd=tmp_path, env=env, capture_output=True, text=True, check=False)

    example = _readme_example(LIBRARIES[dist_name])
    result = subprocess.run([str(PKG_PYTHON), "-c", example], **run)  # type: ignore[call-overload]
    assert result.returncode == 0, f"{dist_name} README example failed:\n{result.stderr}"

    own = {n.replace("legoml_", "legoml.") for n in installed}
    probe = "import importlib.util as u, sys\n"
    probe += "".join(f"print({m!r}, u.find_spec({m!r}) is not None)\n" for m in ALL_LEGOML)
    result = subprocess.run([str(PKG_PYTHON), "-c", probe], **run)  # type: ignore[call-overload]
    assert result.returncode == 0, result.stderr
    found = {line.split()[0] for line in result.stdout.splitlines() if line.endswith("True")}
    assert found == own, f"{dist_name}: importable LegoML packages {found}, expected {own}"
