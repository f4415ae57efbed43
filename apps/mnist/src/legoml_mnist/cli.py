"""``legoml-mnist``: train, evaluate and print the config of the MNIST-family experiments.

Every problem the user can fix (bad flag, bad config, missing data or checkpoint) ends the
command with one ``error: ...`` line on stderr and a non-zero exit code, no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import torch

from legoml.core import CoreError
from legoml.data import DataError
from legoml.metrics import MetricError
from legoml.nn import ConfigError, NNError, apply_overrides
from legoml.track import TrackError
from legoml_mnist._files import read_small_file
from legoml_mnist.errors import AppError
from legoml_mnist.evaluator import EvaluatorNode
from legoml_mnist.logs import configure_logging, enable_startup_freeze
from legoml_mnist.recipes import DATASET_NAMES, TASK_NAMES, recipe
from legoml_mnist.trainer import TrainerNode
from legoml_mnist.upgrade import trainer_from_config

__all__ = ["build_parser", "load_config", "main"]

USER_ERRORS = (AppError, NNError, ConfigError, DataError, MetricError, TrackError, CoreError)
MAX_CONFIG_BYTES = 1 << 20  # a full config is ~2 KB; anything near this is not a config


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments in one line (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see legoml-mnist {self.prog.split()[-1]} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="legoml-mnist", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser("train", help="train an experiment (default: the MNIST classifier)")
    train.add_argument("--config", type=Path, help="JSON config (as printed by `legoml-mnist config`)")
    _add_recipe_flags(train)
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field, e.g. --set optimizer.lr=0.002 (repeatable)")
    train.add_argument("--epochs", type=float, help="epochs to train (fractions allowed)")
    train.add_argument("--seed", type=int)
    train.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    train.add_argument("--runs-root", help="folder that holds run directories (default runs)")
    train.add_argument("--limit-train", type=int, metavar="N", help="train on the first N examples")
    train.add_argument("--limit-test", type=int, metavar="N", help="test on the first N examples")
    train.add_argument("--checkpoint-every-steps", type=int, metavar="N")
    train.add_argument("--resume", metavar="RUN_DIR_OR_CHECKPOINT",
                       help="continue a run in its own directory")
    train.add_argument("--distributed", action="store_true",
                       help="data parallel over the ranks started by torchrun")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.add_argument("--mlflow", nargs="?", const=True, default=False, metavar="URI",
                       help="mirror the run to MLflow (default sqlite:///RUNS_ROOT/mlflow.db; "
                            "pip install 'legoml-track[mlflow]')")

    ev = commands.add_parser("eval", help="evaluate a checkpoint on the test set")
    ev.add_argument("--checkpoint", help="checkpoint file or run directory (default: latest)")
    ev.add_argument("--runs-root", default="runs")
    ev.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
    ev.add_argument("--limit-test", type=int, metavar="N")

    config = commands.add_parser("config", help="print a recipe's training config as JSON")
    _add_recipe_flags(config)
    _add_predict_and_export(commands)
    _add_sweep(commands)
    return parser


def _add_predict_and_export(commands: argparse._SubParsersAction[_Parser]) -> None:
    """``predict`` and ``export``: their modules load only when they run (start-up time)."""
    pr = commands.add_parser("predict", help="classify PNG/JPEG files with a trained classifier")
    pr.add_argument("images", nargs="+", metavar="IMAGE", help="PNG or JPEG files, any size and mode")
    pr.add_argument("--checkpoint", metavar="RUN_DIR_OR_CHECKPOINT",
                    help="checkpoint file or run directory (default: latest)")
    pr.add_argument("--runs-root", default="runs")
    pr.add_argument("--top-k", type=_positive, default=1, metavar="K", help="print the K likeliest classes")
    pr.add_argument("--json", action="store_true", help="one JSON object per line")
    pr.add_argument("--invert", choices=["auto", "yes", "no"], default="auto",
                    help="make dark-on-light images light-on-dark like MNIST (auto: from the border)")
    pr.add_argument("--fit", choices=["auto", "mnist", "plain"], default="auto",
                    help="mnist: ink scaled into 20x20 and centred in 28x28; plain: resize; "
                         "auto: as is at the model's size, else mnist")

    ex = commands.add_parser("export", help="write a classifier as ONNX or torch.export (.pt2)")
    ex.add_argument("--format", choices=["onnx", "torch.export"], required=True)
    ex.add_argument("--checkpoint", metavar="RUN_DIR_OR_CHECKPOINT",
                    help="checkpoint file or run directory (default: latest)")
    ex.add_argument("--runs-root", default="runs")
    ex.add_argument("--output", metavar="PATH", help="file or folder (default: RUN/artifacts/model.onnx|.pt2)")
    ex.add_argument("--batch", type=_batch, default=None, metavar="dynamic|N",
                    help="batch dimension of the exported model (default dynamic)")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be 1 or more")
    return value


def _batch(text: str) -> int | None:
    if text == "dynamic":
        return None
    if not text.strip().lstrip("+").isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: use 'dynamic' or a batch size such as 64")
    return _positive(text)


def _add_sweep(commands: argparse._SubParsersAction[_Parser]) -> None:
    """``sweep``: its module (and Optuna) load only when it runs."""
    sw = commands.add_parser("sweep", help="search config fields with Optuna (pip install 'legoml-mnist[sweep]')")
    sw.add_argument("space", type=Path, metavar="SPACE",
                    help='JSON/YAML file: {"optimizer.lr": {"low": 1e-3, "high": 1e-2, "log": true}, ...}')
    sw.add_argument("--config", type=Path, help="base JSON config (default: the recipe)")
    _add_recipe_flags(sw)
    sw.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a field of the base config (repeatable)")
    sw.add_argument("--epochs", type=float)
    sw.add_argument("--seed", type=int)
    sw.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    sw.add_argument("--runs-root", help="folder of the trial runs and the default study database (runs)")
    sw.add_argument("--limit-train", type=int, metavar="N")
    sw.add_argument("--limit-test", type=int, metavar="N")
    sw.add_argument("--study", help="study name (default: the space file's name)")
    sw.add_argument("--storage", metavar="URL", help="SQLAlchemy URL (default sqlite:///RUNS_ROOT/STUDY.db)")
    sw.add_argument("--n-trials", type=int, metavar="N", help="finished trials to reach (default: the file's, else 20)")
    sw.add_argument("--objective", metavar="METRIC", help="final metric to optimize (default test/accuracy)")
    sw.add_argument("--direction", choices=["maximize", "minimize"])
    sw.add_argument("--workers", type=int, default=1, metavar="N", help="local worker processes (default 1)")
    sw.add_argument("--pruner", choices=["median", "none"], default="median")
    sw.add_argument("--pruner-startup-trials", type=int, default=5, metavar="N",
                    help="finished trials before pruning starts (default 5)")
    sw.add_argument("--pruner-warmup-epochs", type=int, default=0, metavar="N",
                    help="epochs of each trial never pruned (default 0)")
    sw.add_argument("--heartbeat", type=int, default=10, metavar="SECONDS",
                    help="a trial silent for 3 heartbeats is failed and retried (default 10)")
    sw.add_argument("--max-retry", type=int, default=2, metavar="N", help="retries of a dead worker's trial")
    sw.add_argument("--sampler-seed", type=int, metavar="S", help="seed of the TPE sampler (worker k: S + k)")
    sw.set_defaults(checkpoint_every_steps=None, no_progress=True)


def _add_recipe_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=DATASET_NAMES,
                        help="start from the recipe tuned for this dataset (default mnist)")
    parser.add_argument("--task", choices=TASK_NAMES,
                        help="start from the recipe for this task (default classification)")


def _recipe(args: argparse.Namespace) -> TrainerNode:
    return recipe(args.dataset or "mnist", args.task or "classification")


def load_config(path: Path | None, default: TrainerNode | None = None) -> TrainerNode:
    """The training config from a JSON file (validated; older layouts upgraded), or
    ``default`` (the MNIST classifier recipe)."""
    if path is None:
        return default if default is not None else recipe()
    raw = read_small_file(
        path, MAX_CONFIG_BYTES, f"config file {path}",
        missing=f"does not exist: write one with `legoml-mnist config > {path}`",
        too_large=f"is larger than {MAX_CONFIG_BYTES // 1024} KiB; a config is a few KB of JSON: "
                  "check the path (see `legoml-mnist config`)",
    )
    text = raw.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ConfigError(f"{path}: not valid JSON: {err}") from None
    except RecursionError:
        raise ConfigError(f"{path}: JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config is a JSON object with a 'type' key (see `legoml-mnist config`)")
    return trainer_from_config(data, str(path))


def _train_node(args: argparse.Namespace) -> TrainerNode:
    if args.config is not None and (args.dataset or args.task):
        raise AppError("--dataset/--task pick a recipe; with --config the file says both")
    node = load_config(args.config, _recipe(args))
    flags = {
        "epochs": args.epochs,
        "seed": args.seed,
        "device": args.device,
        "runs_root": args.runs_root,
        "dataset.limit_train": args.limit_train,
        "dataset.limit_test": args.limit_test,
        "checkpoint_every_steps": args.checkpoint_every_steps,
    }
    changes = {key: value for key, value in flags.items() if value is not None}
    if args.no_progress:
        changes["progress"] = False
    node = node.fork(**changes) if changes else node
    return apply_overrides(node, args.overrides)


# Messages torch gives when a tensor's shape does not fit a layer (conv, linear, norm, view).
_SHAPE_MISMATCH = (
    "to have", "channels", "shapes cannot be multiplied", "size mismatch", "must match the size",
    "output size is too small", "kernel size can't be greater", "input size", "invalid shape",
    "expected input", "expected 4d", "expected 3d", "normalized_shape", "shape '",
)


def _is_shape_mismatch(err: RuntimeError) -> bool:
    text = str(err).lower()
    return not isinstance(err, USER_ERRORS) and any(m in text for m in _SHAPE_MISMATCH)


def _misfit(node: TrainerNode, err: RuntimeError) -> AppError:
    """The one-line error for a model whose input shape does not fit the data."""
    wanted = ", ".join(
        f"model.{name}={getattr(node.model, name)!r}"
        for name in ("in_channels", "input_size")
        if hasattr(node.model, name)
    )
    try:
        shape = f" of shape {tuple(node.dataset.image_shape)} (channels, height, width)"
    except (AttributeError, NotImplementedError, *USER_ERRORS):
        shape = ""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return AppError(
        f"the model does not fit the data: the dataset's images{shape} do not match "
        f"{wanted or 'the model config'}; fix model.in_channels / model.input_size ({first})"
    )


def _check_model_fits(node: TrainerNode) -> None:
    """One forward pass of zeros shaped like the data before any run directory is made."""
    try:
        shape = tuple(node.dataset.image_shape)
    except (AttributeError, NotImplementedError):
        return
    model = node.model.build()
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros((2, *shape)))
    except RuntimeError as err:
        if not _is_shape_mismatch(err):
            raise
        raise _misfit(node, err) from None


def _train(args: argparse.Namespace) -> int:
    enable_startup_freeze()
    node = _train_node(args)
    if args.resume is not None and args.config is None and not args.overrides:
        node = _config_of_run(Path(args.resume), node)
    _check_model_fits(node)
    try:
        if args.distributed:
            from legoml_mnist.distributed import train_distributed

            result = train_distributed(node, resume=args.resume, mlflow=args.mlflow)
        else:
            result = node.build().train(resume=args.resume, mlflow=args.mlflow)
    except RuntimeError as err:  # the first forward pass on real batches
        if not _is_shape_mismatch(err) or not _raised_in_forward(err):
            raise
        raise _misfit(node, err) from None
    if result.report is not None and result.run_dir is not None:
        _out(result.report.text())
        figures = "; ".join(f"{k} {v:.4f}" for k, v in result.final_metrics.items())
        _out(f"trained {result.global_step} steps in {result.train_seconds:.1f} s; {figures}")
        _out(f"run directory: {result.run_dir}")
    return 0


def _raised_in_forward(err: BaseException) -> bool:
    """True when the error was raised inside an ``nn.Module`` call (a model's forward)."""
    frame = err.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code.co_name in ("_call_impl", "_wrapped_call_impl"):
            return True
        frame = frame.tb_next
    return False


def _config_of_run(resume: Path, fallback: TrainerNode) -> TrainerNode:
    """A resumed run keeps its own config (flags given with --resume still apply on top)."""
    folder = resume if resume.is_dir() else resume.parent.parent
    config = folder / "config.json"
    if not config.is_file():
        return fallback
    saved = load_config(config)
    defaults = TrainerNode()
    changed = {
        key: getattr(fallback, key)
        for key in ("epochs", "seed", "device", "runs_root", "checkpoint_every_steps", "progress")
        if getattr(fallback, key) != getattr(defaults, key)
    }
    return saved.fork(**changed) if changed else saved


def _eval(args: argparse.Namespace) -> int:
    node = EvaluatorNode(
        checkpoint=args.checkpoint, runs_root=args.runs_root, device=args.device,
        limit_test=args.limit_test,
    )
    report = node.build().eval()
    _out(report.text())
    _out(f"checkpoint: {report.checkpoint}")
    return 0


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    if not (args.command == "train" and args.distributed):
        return _run(args)
    from legoml_mnist.distributed import exit_process

    try:  # a torchrun rank leaves without interpreter teardown (see exit_process)
        code = _run(args)
    except BaseException:
        traceback.print_exc()
        return exit_process(1)
    return exit_process(code)


def _run(args: argparse.Namespace) -> int:
    try:
        if args.command == "config":
            _out(json.dumps(_recipe(args).to_dict(), indent=2))
            return 0
        if args.command == "eval":
            return _eval(args)
        if args.command == "predict":
            from legoml_mnist.predict import predict_command

            return predict_command(args, _out, _err)
        if args.command == "export":
            from legoml_mnist.export import export_command

            return export_command(args, _out)
        if args.command == "sweep":
            from legoml_mnist.sweep import sweep_command

            return sweep_command(args, _train_node(args), _out)
        return _train(args)
    except USER_ERRORS as err:
        sys.stderr.write(f"error: {err}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted; resume with `legoml-mnist train --resume RUN_DIR`\n")
        return 130
    except OSError as err:
        sys.stderr.write(f"error: {err.strerror or err}: {err.filename or ''}".rstrip(": ") + "\n")
        return 1
    except (OverflowError, MemoryError, ValueError, TypeError, RuntimeError) as err:
        if isinstance(err, ValueError) and "null byte" in str(err):
            sys.stderr.write("error: a path in the config (runs_root, dataset.root...) holds a NUL "
                             "byte; use a plain folder name\n")
            return 1
        if not _too_large(err):
            raise
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        sys.stderr.write(
            f"error: a number in the config is too large for this machine ({first}); "
            "use a smaller value\n"
        )
        return 1


# What torch and the OS say when a config size (channels, shift, threads) cannot be honoured.
_TOO_LARGE = ("overflow", "can't allocate memory", "out of memory", "too large", "cannot allocate")


def _too_large(err: BaseException) -> bool:
    """A number the user set is beyond what torch or this machine can take."""
    if isinstance(err, (OverflowError, MemoryError)):
        return True
    return not isinstance(err, USER_ERRORS) and any(m in str(err).lower() for m in _TOO_LARGE)
