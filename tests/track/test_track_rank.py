"""Ranking runs by a final metric: ``legoml-track ls --sort`` and ``compare --match --sort``."""

from __future__ import annotations

from pathlib import Path

import pytest

from legoml.track import run
from legoml.track.cli import main


def _runs(root: Path) -> dict[str, Path]:
    made = {}
    for name, lr, metrics in [
        ("s-trial-0000", 0.1, {"test/accuracy": 0.91, "test/loss": 0.30}),
        ("s-trial-0001", 0.01, {"test/accuracy": 0.97, "test/loss": 0.12}),
        ("s-trial-0002", 0.001, {"test/accuracy": 0.94, "test/loss": 0.20}),
        ("other", 0.5, {"test/accuracy": 0.99}),
    ]:
        with run(name, root=root, config={"optimizer": {"lr": lr}}) as r:
            r.set_final_metrics(metrics)
        made[name] = r.dir
    with pytest.raises(RuntimeError), run("s-trial-0003", root=root, config={"optimizer": {"lr": 9.0}}) as r:
        raise RuntimeError("pruned by the sweep")
    made["s-trial-0003"] = r.dir
    return made


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _names(out: str, column: int = 1) -> list[str]:
    return [line.split()[column] for line in out.splitlines()[1:]]


def test_ls_sort_ranks_best_first_and_runs_without_the_metric_last(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    made = _runs(tmp_path)
    code, out, err = _cli(capsys, "ls", str(tmp_path), "--match", "s-trial", "--sort", "test/accuracy",
                          "--config", "optimizer.lr")
    assert code == 0 and err == ""
    header, *rows = out.splitlines()
    assert header.split()[:5] == ["RANK", "RUN", "STATUS", "TEST/ACCURACY", "OPTIMIZER.LR"]
    order = ["s-trial-0001", "s-trial-0002", "s-trial-0000", "s-trial-0003"]
    assert _names(out) == [made[n].name for n in order]  # "other" filtered out
    assert [r.split()[0] for r in rows] == ["1", "2", "3", "-"]
    assert rows[0].split()[3:5] == ["0.97", "0.01"] and rows[3].split()[2:4] == ["failed", "-"]


def test_losses_rank_lowest_first_unless_told(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    made = _runs(tmp_path)
    _, out, _ = _cli(capsys, "ls", str(tmp_path), "--match", "s-trial", "--sort", "test/loss")
    assert _names(out)[:3] == [made[n].name for n in ("s-trial-0001", "s-trial-0002", "s-trial-0000")]
    _, out, _ = _cli(capsys, "ls", str(tmp_path), "--match", "s-trial", "--sort", "test/loss", "--desc")
    assert _names(out)[:3] == [made[n].name for n in ("s-trial-0000", "s-trial-0002", "s-trial-0001")]
    _, out, _ = _cli(capsys, "ls", str(tmp_path), "--sort", "test/accuracy", "--asc")
    assert _names(out)[0] == made["s-trial-0000"].name


def test_compare_match_sort_orders_the_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    made = _runs(tmp_path)
    code, out, _ = _cli(capsys, "compare", "--root", str(tmp_path), "--match", "s-trial",
                        "--sort", "test/accuracy")
    assert code == 0
    header = out.splitlines()[1].split()
    assert header[1:] == [made[n].name for n in ("s-trial-0001", "s-trial-0002", "s-trial-0000", "s-trial-0003")]
    assert "optimizer.lr" in out


def test_ranking_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _runs(tmp_path)
    for args, message in [
        (["ls", str(tmp_path), "--sort", "test/acc"], "(did you mean 'test/accuracy'?)"),
        (["ls", str(tmp_path), "--config", "optimizer.lrr"], "(did you mean 'optimizer.lr'?)"),
        (["compare", "--root", str(tmp_path), "--match", "nothing-like-this"], "compare needs at least two runs"),
    ]:
        code, out, err = _cli(capsys, *args)
        assert code == 1 and out == "", args
        assert err.startswith("legoml-track: error: ") and err.count("\n") == 1 and message in err, err
    with pytest.raises(SystemExit) as exit_info:
        main(["ls", str(tmp_path), "--sort", "test/accuracy", "--asc", "--desc"])
    assert exit_info.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    _, out, _ = _cli(capsys, "ls", str(tmp_path), "--match", "zzz")
    assert out == f"no runs under {tmp_path} matching 'zzz'\n"
