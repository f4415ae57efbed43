"""The legoml-track command: ls, show, compare, plot (a real PNG), ckpt, and its errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from legoml.track import run, save_checkpoint
from legoml.track.cli import main


def _make_runs(root: Path) -> tuple[Path, Path, Path]:
    with run("alpha", root=root, config={"optim": {"lr": 0.1}, "epochs": 2, "seed": 0}) as a:
        for step in range(1, 21):
            a.log_scalars({"train/loss": 2.0 / step, "val/accuracy": step / 20}, step, step // 10)
        a.set_final_metrics({"test/accuracy": 0.9812, "test/loss": 0.061})
    with run("beta", root=root, config={"optim": {"lr": 0.01}, "epochs": 2, "seed": 0}) as b:
        for step in range(1, 31):
            b.log_scalars({"train/loss": 3.0 / step}, step, step // 10)
        b.set_final_metrics({"test/accuracy": 0.95})
    with pytest.raises(RuntimeError), run("gamma", root=root, config={"extra": True}) as c:
        raise RuntimeError("out of memory")
    return a.dir, b.dir, c.dir


def _run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()  # drop the runs' own log lines printed while making them
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_ls_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b, c = _make_runs(tmp_path / "runs")
    code, out, err = _run_cli(capsys, "ls", str(tmp_path / "runs"))
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["RUN", "STATUS", "START", "DURATION", "FINAL", "METRICS"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {a.name, b.name, c.name}
    assert re.search(r"completed\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+\d", rows[a.name])
    assert rows[a.name].endswith("test/accuracy=0.9812 test/loss=0.061")
    assert rows[b.name].endswith("test/accuracy=0.95")
    assert " failed " in rows[c.name] and rows[c.name].endswith("-")


def test_ls_empty_and_missing_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert (
        _run_cli(capsys, "ls", str(tmp_path / "empty"))[1]
        == f"no runs under {tmp_path / 'empty'}\n"
    )
    code, out, err = _run_cli(capsys, "ls", str(tmp_path / "nope"))
    assert code == 1 and out == ""
    assert err.startswith("legoml-track: error: runs root not found") and err.count("\n") == 1


def test_ls_survives_a_damaged_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, _, _ = _make_runs(tmp_path / "runs")
    (a / "meta.json").write_text("{torn")
    code, out, _ = _run_cli(capsys, "ls", str(tmp_path / "runs"))
    assert code == 0 and f"{a.name}  unreadable" in out


def test_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, _, c = _make_runs(tmp_path / "runs")
    code, out, _ = _run_cli(capsys, "show", str(a))
    assert code == 0
    assert re.search(r"^status\s+completed$", out, re.MULTILINE)
    assert "  optim.lr = 0.1\n" in out and "  epochs = 2\n" in out
    assert "  test/accuracy = 0.9812\n" in out
    assert re.search(r"^train/loss\s+20\s+20\s+0\.1$", out, re.MULTILINE)
    # a run can also be named by a unique part of its directory name under --root
    code, out, _ = _run_cli(capsys, "show", "gamma", "--root", str(tmp_path / "runs"))
    assert code == 0 and re.search(r"^error\s+RuntimeError: out of memory$", out, re.MULTILINE)
    assert c.name in out


def test_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b, c = _make_runs(tmp_path / "runs")
    code, out, _ = _run_cli(capsys, "compare", str(a), str(b))
    assert code == 0
    sections = out.split("\n\n")
    assert sections[0].splitlines()[0] == "config differences (1 key)"
    assert sections[0].splitlines()[1].split() == ["KEY", a.name, b.name]
    assert sections[0].splitlines()[2].split() == ["optim.lr", "0.1", "0.01"]
    metrics = sections[1].splitlines()
    assert metrics[0] == "final metrics"
    assert metrics[2].split() == ["test/accuracy", "0.9812", "0.95"]
    assert metrics[3].split() == ["test/loss", "0.061", "-"]

    code, out, _ = _run_cli(capsys, "compare", str(a), str(c))
    diff_rows = {
        line.split()[0]: line.split()[1:] for line in out.split("\n\n")[0].splitlines()[2:]
    }
    assert diff_rows == {
        "epochs": ["2", "-"],
        "extra": ["-", "true"],
        "optim.lr": ["0.1", "-"],
        "seed": ["0", "-"],
    }
    code, out, _ = _run_cli(capsys, "compare", "--all", str(a), str(b))
    assert out.startswith("config\n") and "epochs" in out.split("\n\n")[0]


def test_compare_needs_two_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, _, _ = _make_runs(tmp_path / "runs")
    code, _, err = _run_cli(capsys, "compare", str(a))
    assert code == 1 and "at least two runs" in err


def test_plot_writes_a_real_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = pytest.importorskip("matplotlib.image")
    a, b, _ = _make_runs(tmp_path / "runs")
    out_path = tmp_path / "plots" / "curves.png"
    code, out, err = _run_cli(capsys, "plot", str(a), str(b), "--out", str(out_path))
    assert (code, err) == (0, "") and out == f"wrote {out_path}\n"
    pixels = image.imread(out_path)
    height, width = pixels.shape[:2]
    assert width >= 1000 and height >= 300  # two panels side by side
    assert pixels.std() > 0.01  # not blank
    assert len({tuple(p) for p in pixels.reshape(-1, pixels.shape[-1])[::7]}) > 20

    single = tmp_path / "one.png"
    code, _, _ = _run_cli(capsys, "plot", str(a), "--metric", "train/loss", "--out", str(single))
    assert code == 0
    one = image.imread(single)
    assert one.shape[1] < width and one.std() > 0.01
    assert not list(tmp_path.glob("plots/.*"))  # written atomically, no temp left


def test_plot_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _, c = _make_runs(tmp_path / "runs")
    code, _, err = _run_cli(
        capsys, "plot", str(a), "--metric", "nope", "--out", str(tmp_path / "x.png")
    )
    assert code == 1 and "'nope' was not logged; available: train/loss, val/accuracy" in err
    code, _, err = _run_cli(capsys, "plot", str(c), "--out", str(tmp_path / "x.png"))
    assert code == 1 and "no scalars logged" in err
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    code, _, err = _run_cli(capsys, "plot", str(a), "--out", str(tmp_path / "x.png"))
    assert code == 1 and "pip install 'legoml-track[plot]'" in err
    assert not (tmp_path / "x.png").exists()


def test_ckpt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "step-00000012.pt"
    save_checkpoint(
        path,
        {
            "epoch": 2,
            "global_step": 12,
            "metrics": {"val/accuracy": 0.5},
            "context": {"model": torch.nn.Linear(2, 2).state_dict()},
        },
    )
    code, out, _ = _run_cli(capsys, "ckpt", str(path))
    assert code == 0
    assert re.search(r"^global_step\s+12$", out, re.MULTILINE)
    assert re.search(r"^metrics\s+val/accuracy=0\.5$", out, re.MULTILINE)
    (tmp_path / "bad.pt").write_bytes(path.read_bytes()[:100])  # a torn copy
    code, _, err = _run_cli(capsys, "ckpt", str(tmp_path / "bad.pt"))
    assert code == 1 and "corrupt or truncated" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["show", "does-not-exist"], 1, "run not found: does-not-exist"),
        (["frobnicate"], 2, "invalid choice"),
        (["plot"], 2, "the following arguments are required: RUN"),
        ([], 2, "the following arguments are required"),
    ],
)
def test_errors_are_one_line_without_traceback(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "legoml.track", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == code
    assert message in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_console_script_is_installed(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("legoml-track")
    if not script.exists():
        pytest.skip("legoml-track console script not installed in this environment")
    _make_runs(tmp_path / "runs")
    done = subprocess.run([str(script), "ls"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("RUN ")
