"""Every import in benchmarks/ is installed by the Makefile, so `make bench` and
`make bench-peers` run on a fresh clone.

`make test` runs in the `.venv` that `make install` builds, so a module that resolves here
resolves for `make bench`. Ignite and Lightning live only in `.venv-peers`: the scripts that
import them may use nothing that venv lacks (torch, legoml-core, legoml-track and their
declared dependencies), and the Makefile must install them there.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
SCRIPTS = sorted(BENCHMARKS.glob("*.py"))
LOCAL = {path.stem for path in SCRIPTS}

# Importable name -> the distribution `.venv-peers` must install for it.
PEER_DISTRIBUTIONS = {"ignite": "pytorch-ignite", "lightning": "lightning",
                      "pytorch_lightning": "lightning"}
# The LegoML packages `.venv-peers` installs (`-e packages/<name>`).
PEER_LEGOML = {"core", "track"}


def _imports(path: Path) -> set[str]:
    """Dotted names of every absolute import in the file, at any depth (lazy ones too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "legoml":
                names.update(f"legoml.{alias.name}" for alias in node.names)
            else:
                names.add(node.module)
    return names


def _closure(path: Path) -> set[str]:
    """The file's imports plus those of the benchmark modules it imports, transitively."""
    seen: set[str] = set()
    pending, names = [path.stem], set()
    while pending:
        stem = pending.pop()
        if stem in seen:
            continue
        seen.add(stem)
        for name in _imports(BENCHMARKS / f"{stem}.py"):
            top = name.split(".")[0]
            if top in LOCAL:
                pending.append(top)
            else:
                names.add(name)
    return names


def _declared_requirements(package: str) -> set[str]:
    requires = importlib.metadata.requires(f"legoml-{package}") or []
    return {re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower()
            for req in requires if "extra ==" not in req}


def _peers_install_line() -> str:
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    lines = [line for line in makefile.splitlines()
             if "$(PEERS_VENV)/bin/python -m pip install" in line and "upgrade pip" not in line]
    assert len(lines) == 1, "the Makefile should install .venv-peers in one pip line"
    return lines[0]


def test_the_benchmarks_folder_is_scanned() -> None:
    assert {"run_all", "bench_engine", "bench_loader", "bench_peers"} <= LOCAL


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_import_resolves_in_the_make_install_venv(script: Path) -> None:
    missing = []
    for name in sorted(_imports(script)):
        top = name.split(".")[0]
        if top in LOCAL or top in PEER_DISTRIBUTIONS:
            continue
        if importlib.util.find_spec(top) is None or (
            name.startswith("legoml.") and importlib.util.find_spec(name) is None
        ):
            missing.append(name)
    assert not missing, (
        f"{script.name} imports {missing}, which `make install` does not install: declare them "
        "as a dependency (or extra) that the Makefile's EDITABLES installs"
    )


def test_peer_frameworks_are_installed_by_the_peers_venv_rule() -> None:
    line = _peers_install_line()
    wanted = {PEER_DISTRIBUTIONS[name.split(".")[0]] for path in SCRIPTS
              for name in _imports(path) if name.split(".")[0] in PEER_DISTRIBUTIONS}
    assert wanted, "no benchmark imports a peer framework: update this test"
    for dist in sorted(wanted):
        assert re.search(rf"(^|\s){re.escape(dist)}(\s|$)", line), f"{dist} missing from: {line}"
    for package in PEER_LEGOML:
        assert f"packages/{package}" in line


@pytest.mark.parametrize(
    "script",
    [p for p in SCRIPTS if any(n.split(".")[0] in PEER_DISTRIBUTIONS for n in _closure(p))],
    ids=lambda p: p.name,
)
def test_peer_scripts_import_only_what_the_peers_venv_has(script: Path) -> None:
    provided = {"torch", *PEER_DISTRIBUTIONS}
    for package in PEER_LEGOML:
        provided |= {req.replace("-", "_") for req in _declared_requirements(package)}
    foreign = []
    for name in sorted(_closure(script)):
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top in provided:
            continue
        if top == "legoml" and name.split(".")[1] in PEER_LEGOML:
            continue
        foreign.append(name)
    assert not foreign, (
        f"{script.name} runs in .venv-peers but imports {foreign}, which that venv does not "
        "install (it has torch, the peers, legoml-core and legoml-track)"
    )


def test_a_missing_module_is_reported(tmp_path: Path) -> None:
    script = tmp_path / "probe.py"
    script.write_text("def f():\n    import surely_not_installed_xyz\nfrom legoml import nope\n")
    names = _imports(script)
    assert names == {"surely_not_installed_xyz", "legoml.nope"}
    assert importlib.util.find_spec("surely_not_installed_xyz") is None
    assert importlib.util.find_spec("legoml.nope") is None
