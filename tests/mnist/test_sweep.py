"""``legoml-mnist sweep`` on a real MNIST subset: concurrent workers, pruning, kill and resume,
and search spaces refused before any trial runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest

from legoml.nn import TinyCNNNode
from legoml_mnist.cli import main
from legoml_mnist.sweep import parse_search_space, trial_run_dirs
from legoml_mnist.trainer import TrainerNode

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--limit-train", "384", "--limit-test", "128", "--device", "cpu", "--epochs", "1"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("LEGOML_DATA_DIR", str(ROOT / "data"))
    env["LEGOML_LOG_LEVEL"] = "warning"
    return env


def _command(space: Path, runs: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "legoml_mnist", "sweep", str(space), "--runs-root", str(runs),
            *SMALL, *extra]


def _sweep(space: Path, runs: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_command(space, runs, *extra), env=_env(), capture_output=True, text=True,
                          timeout=300, check=False)


def _space(tmp_path: Path, data: dict[str, Any], name: str = "space.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _study(runs: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{runs / (name + '.db')}")


def _finished(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    return [t for t in trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]


LR_DROPOUT = {"optimizer.lr": {"low": 1e-3, "high": 1e-2, "log": True},
              "model.dropout": {"choices": [0, 0.1]}}


def test_two_workers_finish_exactly_n_trials(tmp_path: Path) -> None:
    space = _space(tmp_path, {**LR_DROPOUT, "n_trials": 3}, "duo.json")
    runs = tmp_path / "runs"
    done = _sweep(space, runs, "--workers", "2", "--heartbeat", "2", "--sampler-seed", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    trials = _study(runs, "duo").get_trials()
    finished = _finished(trials)
    assert len(finished) == 3
    assert len({t.number for t in finished}) == 3
    assert len({json.dumps(t.params, sort_keys=True) for t in finished}) == 3  # distinct params
    for trial in finished:
        run_dir = Path(trial.user_attrs["run_dir"])
        meta = json.loads((run_dir / "meta.json").read_text())
        config = json.loads((run_dir / "config.json").read_text())
        assert meta["name"] == f"duo-trial-{trial.number:04d}"
        assert meta["status"] == "completed"
        assert meta["final_metrics"]["test/accuracy"] == pytest.approx(trial.value)
        assert config["optimizer"]["lr"] == pytest.approx(trial.params["optimizer.lr"])
        assert config["model"]["dropout"] == trial.params["model.dropout"]
        assert config["threads"] == max(1, len(os.sched_getaffinity(0)) // 2)  # cores split over 2
    trial_dirs = [p for p in runs.iterdir() if p.is_dir()]
    assert len(trial_dirs) == len([t for t in trials if "run_name" in t.user_attrs])
    lines = done.stdout.strip().splitlines()
    best = max(finished, key=lambda t: t.value or 0.0)
    assert lines[0].startswith("study duo: 3 of 3 trials finished")
    assert f"best trial {best.number}: test/accuracy {best.value:.4f}" in done.stdout
    assert lines[-1] == f"run directory: {best.user_attrs['run_dir']}"


def test_a_lagging_trial_is_pruned_and_its_run_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in _env().items():
        monkeypatch.setenv(key, value)
    runs = tmp_path / "runs"
    runs.mkdir()
    space = _space(tmp_path, {"optimizer.lr": {"low": 1e-7, "high": 1e-2, "log": True}}, "prune.json")
    study = optuna.create_study(study_name="prune", storage=f"sqlite:///{runs / 'prune.db'}",
                                direction="maximize")
    study.enqueue_trial({"optimizer.lr": 6e-3})
    study.enqueue_trial({"optimizer.lr": 1e-7})  # learns nothing: far below trial 0 at epoch 1
    code = main(["sweep", str(space), "--runs-root", str(runs), *SMALL, "--n-trials", "2",
                 "--pruner-startup-trials", "1", "--set", "loader.batch_size=32", "--epochs", "2"])
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    first, second = _study(runs, "prune").get_trials()
    assert first.state == optuna.trial.TrialState.COMPLETE
    assert second.state == optuna.trial.TrialState.PRUNED
    assert list(second.intermediate_values) == [1]  # stopped at the first epoch of two
    assert second.intermediate_values[1] < first.intermediate_values[1]
    run_dir = Path(second.user_attrs["run_dir"])
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["status"] == "failed"
    assert "pruned by the sweep" in meta["error"] and "not an error" in meta["error"]
    record = json.loads((run_dir / "artifacts" / "sweep_trial.json").read_text())
    assert record["state"] == "PRUNED" and record["trial"] == 1
    assert "(1 complete, 1 pruned, 0 failed)" in out


# Loaded by every Python process of the sweep (PYTHONPATH): SIGKILLs the whole process group
# right after optimizer step N of a process, a real kill at a known point, whatever the load.
KILL_HOOK = """
import os, signal
if os.environ.get("LEGOML_TEST_KILL_AT_STEP"):
    import torch.optim.optimizer as _optimizer
    _steps = [0]
    def _kill_at(optimizer, args, kwargs):
        _steps[0] += 1
        if _steps[0] == int(os.environ["LEGOML_TEST_KILL_AT_STEP"]):
            os.killpg(0, signal.SIGKILL)
    _optimizer.register_optimizer_step_post_hook(_kill_at)
"""
STEPS_PER_TRIAL = 384 // 32  # SMALL's examples, batch 32, one epoch


def test_a_killed_sweep_resumes_with_the_same_command(tmp_path: Path) -> None:
    space = _space(tmp_path, {**LR_DROPOUT, "n_trials": 2}, "kill.json")
    runs = tmp_path / "runs"
    extra = ("--heartbeat", "1", "--set", "loader.batch_size=32")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILL_HOOK)
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(hook), env.get("PYTHONPATH")) if p)
    env["LEGOML_TEST_KILL_AT_STEP"] = str(STEPS_PER_TRIAL + 5)  # mid-way through trial 1
    dead = subprocess.run(_command(space, runs, *extra), env=env, start_new_session=True,
                          capture_output=True, text=True, timeout=300, check=False)
    assert dead.returncode == -signal.SIGKILL, dead.stderr[-3000:]
    trials = _study(runs, "kill").get_trials()
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    assert len(complete) == 1 and len(running) == 1, [t.state for t in trials]
    before = {t.number: (t.value or 0.0, t.user_attrs["run_dir"]) for t in complete}
    killed = running[0].number
    assert trial_run_dirs(runs, f"kill-trial-{killed:04d}"), "the killed trial had a run directory"

    done = _sweep(space, runs, *extra)
    assert done.returncode == 0, done.stderr[-3000:]
    by_number = {t.number: t for t in _study(runs, "kill").get_trials()}
    assert len(_finished(list(by_number.values()))) == 2
    for number, (value, run_dir) in before.items():
        assert by_number[number].state == optuna.trial.TrialState.COMPLETE
        assert by_number[number].value == value and by_number[number].user_attrs["run_dir"] == run_dir
        assert json.loads((Path(run_dir) / "meta.json").read_text())["status"] == "completed"
    assert by_number[killed].state == optuna.trial.TrialState.FAIL
    retry = [t for t in by_number.values() if t.system_attrs.get("failed_trial") == killed]
    assert len(retry) == 1 and retry[0].params == by_number[killed].params
    (dead_dir,) = trial_run_dirs(runs, f"kill-trial-{killed:04d}")
    meta = json.loads((dead_dir / "meta.json").read_text())
    assert meta["status"] == "failed" and "SweepWorkerLost" in meta["error"]


BAD_SPACES = [
    ({"optimizer.lrr": {"low": 1e-3, "high": 1e-2}}, "optimizer.lrr: unknown field of AdamWNode (did you mean 'lr'?)"),
    ({"loader.batch_size": {"low": 16.5, "high": 64}}, "loader.batch_size: expected int"),
    ({"model.dropout": {"choices": ["a", 0.1]}}, "model.dropout: expected float"),
    ({"model.dropout": {"choices": []}}, "model.dropout: choices is empty"),
    ({"optimizer.lr": {"low": 1e-2, "high": 1e-3}}, "optimizer.lr: low 0.01 is above high 0.001"),
    ({"optimizer.lr": {"low": 0, "high": 1e-3, "log": True}}, "optimizer.lr: a log range needs low > 0"),
    ({"epochs": {"lo": 1, "high": 2}}, "epochs: unknown key 'lo' (did you mean 'low'?)"),
    ({"run_name": {"choices": ["x"]}}, "run_name: set by the sweep"),
    ({"epochs": {"low": 1, "high": 2}, "objective": "test/acc"}, "objective 'test/acc' is not a metric this experiment reports (did you mean 'test/accuracy'?)"),
    ({}, "no parameters to search"),
]


@pytest.mark.parametrize(("data", "message"), BAD_SPACES)
def test_bad_search_spaces_fail_in_one_line_before_any_trial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: dict[str, Any], message: str
) -> None:
    space = _space(tmp_path, data)
    runs = tmp_path / "runs"
    assert main(["sweep", str(space), "--runs-root", str(runs), *SMALL]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err
    assert not runs.exists()  # no study database, no run directory


def test_bad_files_and_flags_fail_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    cases = [
        (["sweep", str(tmp_path / "missing.json")], "does not exist"),
        (["sweep", str(_space(tmp_path, {"epochs": {"low": 1, "high": 2}})), "--workers", "0"], "--workers must be"),
        (["sweep", str(_space(tmp_path, {"epochs": {"low": 1, "high": 2}})), "--study", "a b"], "study name 'a b'"),
        (["sweep", str(_space(tmp_path, {"epochs": {"low": 1, "high": 2}})), "--storage", "nodb://x"], "cannot open the study storage"),
    ]
    (tmp_path / "torn.yaml").write_text("epochs: {low: 1, high: [")
    cases.append((["sweep", str(tmp_path / "torn.yaml")], "not valid YAML"))
    for argv, message in cases:
        assert main([*argv, "--runs-root", str(runs), *SMALL]) == 1, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err


def test_yaml_and_nested_spaces_parse_to_the_same_params(tmp_path: Path) -> None:
    from legoml_mnist.sweep import load_search_space

    (tmp_path / "s.yml").write_text(
        "space:\n  optimizer.lr: {low: 0.001, high: 0.01, log: true}\n"
        "  model.channels: {choices: [[8, 16], [16, 32]]}\nn_trials: 5\ndirection: maximize\n"
    )
    space = load_search_space(tmp_path / "s.yml", TrainerNode())
    flat = parse_search_space(
        {"optimizer.lr": {"low": 0.001, "high": 0.01, "log": True},
         "model.channels": {"choices": [[8, 16], [16, 32]]}, "n_trials": 5, "direction": "maximize"},
        TrainerNode(),
    )
    assert space == flat and space.n_trials == 5 and space.direction == "maximize"
    lr, channels = space.params
    assert (lr.kind, lr.log, channels.kind, channels.as_json) == ("float", True, "choice", True)
    study = optuna.create_study()
    values = space.sample(study.ask())
    assert values["model.channels"] in ([8, 16], [16, 32])
    model = space.apply(TrainerNode(), values).model
    assert isinstance(model, TinyCNNNode) and model.channels == tuple(values["model.channels"])


def test_cli_import_leaves_optuna_out_and_missing_optuna_is_one_line(tmp_path: Path) -> None:
    space = _space(tmp_path, {"epochs": {"low": 1, "high": 2}})
    code = (
        "import sys; import legoml_mnist.cli as cli; assert 'optuna' not in sys.modules, 'optuna loaded';"
        "sys.modules['optuna'] = None;"
        f"raise SystemExit(cli.main(['sweep', {str(space)!r}, '--runs-root', {str(tmp_path / 'runs')!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 1, done.stderr
    assert done.stderr == "error: legoml-mnist sweep needs Optuna: pip install 'legoml-mnist[sweep]'\n"
