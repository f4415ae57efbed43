"""Configs can only name registered node types: nothing is imported or called from a string."""

from __future__ import annotations

import builtins
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import legoml.nn as L
from legoml.nn.node import node_fields


def _payloads(marker: Path) -> list[dict[str, Any]]:
    touch = f"touch {marker}"
    return [
        {"type": "os.system", "command": touch},
        {"type": "builtins.eval", "source": f"open({str(marker)!r}, 'w')"},
        {"type": "builtins.exec", "args": [f"open({str(marker)!r}, 'w')"]},
        {"type": "subprocess.call", "args": [["touch", str(marker)]], "kwargs": {"shell": False}},
        {"type": "subprocess.Popen", "args": ["touch", str(marker)]},
        {"type": "importlib.import_module", "name": "antigravity"},
        {"type": "antigravity"},
        {"type": "webbrowser.open", "url": "http://example.invalid"},
        {"type": "__import__('os').system('" + touch + "')"},
        {"type": "legoml.nn.TinyCNNNode"},
        {"type": "Node"},
        {"type": "ModuleNode"},
        {"type": ["os", "system"]},
        # Dangerous tags nested anywhere are refused just the same.
        {"type": "TinyCNNNode", "activation": {"type": "os.system", "command": touch}},
        {"type": "EncoderNode", "blocks": [{"type": "subprocess.call", "args": [touch]}]},
        {"type": "SequentialNode", "layers": [{"type": "ReluNode"}, {"type": "builtins.eval"}]},
        # A tag in a field that is not a node is just a wrong value.
        {"type": "ReluNode", "inplace": {"type": "os.system", "command": touch}},
        {"type": "ReluNode", "__class__": "os.system"},
        {"type": "ReluNode", "__reduce__": ["os.system", [touch]]},
    ]


@pytest.fixture
def tripwires(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace the dangerous callables with recorders for the duration of a test.

    Node classes are compiled first: that evaluates their own (source code) annotations once
    per class, which is not something a config can reach.
    """
    for cls in L.registered_nodes().values():
        try:
            node_fields(cls)
        except TypeError:  # deliberately broken classes of other tests
            pass
    calls: list[str] = []

    def record(name: str) -> Any:
        return lambda *a, **k: calls.append(name)

    import importlib
    import subprocess as sp

    monkeypatch.setattr(os, "system", record("os.system"))
    monkeypatch.setattr(builtins, "eval", record("eval"))
    monkeypatch.setattr(builtins, "exec", record("exec"))
    monkeypatch.setattr(importlib, "import_module", record("import_module"))
    monkeypatch.setattr(sp, "call", record("subprocess.call"))
    monkeypatch.setattr(sp, "Popen", record("subprocess.Popen"))
    return calls


@pytest.mark.parametrize("index", range(len(_payloads(Path("x")))))
def test_unregistered_types_are_refused_and_nothing_runs(
    index: int, tmp_path: Path, tripwires: list[str]
) -> None:
    marker = tmp_path / "pwned"
    payload = _payloads(marker)[index]
    modules_before = set(sys.modules)
    try:
        L.Node.from_dict(payload)
    except L.ConfigError as err:
        message = str(err)
    else:
        pytest.fail(f"accepted {payload}")
    assert set(sys.modules) - modules_before == set()
    assert tripwires == [], f"from_dict reached {tripwires}"
    assert not marker.exists()
    assert "\n" not in message
    tags = [payload.get("type")]
    tags += [v.get("type") for v in payload.values() if isinstance(v, dict)]
    tags += [i.get("type") for v in payload.values() if isinstance(v, list) for i in v
             if isinstance(i, dict)]  # fmt: skip
    bad = [t for t in tags if isinstance(t, str) and t not in L.registered_nodes()]
    if bad:
        assert bad[0][:20] in message


def test_unknown_type_message_names_it_and_the_closest_registered() -> None:
    with pytest.raises(L.ConfigError) as info:
        L.Node.from_dict({"type": "TinyCnnNode"})
    assert str(info.value).startswith("type: unknown node type 'TinyCnnNode'")
    assert "did you mean 'TinyCNNNode'" in str(info.value)


def test_json_text_is_refused_the_same_way(tmp_path: Path, tripwires: list[str]) -> None:
    marker = tmp_path / "pwned"
    for payload in _payloads(marker):
        with pytest.raises(L.ConfigError):
            L.Node.from_json(json.dumps(payload))
    assert tripwires == [] and not marker.exists()


_CLEAN_PROCESS = """
import json, sys
import legoml.nn as L
payloads = json.loads(sys.argv[1])
before = set(sys.modules)
refused = []
for payload in payloads:
    try:
        L.Node.from_dict(payload)
        refused.append(False)
    except L.ConfigError:
        refused.append(True)
print(json.dumps({"refused": refused, "new_modules": sorted(set(sys.modules) - before)}))
"""


def test_a_fresh_interpreter_imports_nothing_new_and_runs_nothing(tmp_path: Path) -> None:
    """In a clean process, refusing the payloads imports no module and creates no file."""
    marker = tmp_path / "pwned"
    payloads = _payloads(marker)
    result = subprocess.run(
        [sys.executable, "-c", _CLEAN_PROCESS, json.dumps(payloads)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        timeout=120,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["refused"] == [True] * len(payloads)
    assert report["new_modules"] == []
    assert not marker.exists()
    assert list(tmp_path.iterdir()) == []
