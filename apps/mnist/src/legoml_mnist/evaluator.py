"""``legoml-mnist eval``: a saved checkpoint evaluated with the task it was trained for."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import structlog

from legoml.nn import Node
from legoml.nn.types import Positive
from legoml.track import checkpoint_info, list_runs, load_checkpoint, resolve_checkpoint
from legoml_mnist.builders import build_model, prepare_process
from legoml_mnist.errors import AppError
from legoml_mnist.evaluation import evaluate_split, publish_report
from legoml_mnist.tasks import EvalReport
from legoml_mnist.upgrade import trainer_from_config

__all__ = [
    "EvalReport",
    "Evaluator",
    "EvaluatorForImageClassificationNode",
    "EvaluatorNode",
    "find_checkpoint",
]

log = structlog.get_logger(__name__)


def find_checkpoint(checkpoint: str | None, runs_root: str) -> Path:
    """A checkpoint file from a file, a run directory, or the newest run under ``runs_root``."""
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.exists():
            raise AppError(f"checkpoint {path} does not exist: pass an existing file or run directory")
        found = resolve_checkpoint(path)
        if found is None:
            raise AppError(f"no checkpoint found in {path}: train first (make train)")
        return found
    if not Path(runs_root).is_dir():
        raise AppError(f"no checkpoint found: {runs_root}/ does not exist; train first (make train) or pass --checkpoint")
    for info in sorted(list_runs(runs_root), key=lambda r: r.dir.name, reverse=True):
        found = resolve_checkpoint(info.dir) if (info.dir / "checkpoints").is_dir() else None
        if found is not None:
            return found
    raise AppError(f"no checkpoint found under {runs_root}/: train first (make train) or pass --checkpoint")


@dataclass(frozen=True)
class EvaluatorNode(Node, tag="legoml_mnist.Evaluator"):
    """Evaluation of a checkpoint on the test split with the task it was trained for.

    ``checkpoint`` is a file or a run directory; ``None`` means the latest checkpoint of
    the newest run under ``runs_root``. Model, dataset, task and loader come from the config
    saved with it; ``limit_test`` evaluates the first N test examples only."""

    checkpoint: str | None = None
    runs_root: str = "runs"
    limit_test: Positive | None = None
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = True
    threads: Positive | None = None
    progress: bool = False

    def build(self) -> Evaluator:
        return Evaluator(self)


@dataclass(frozen=True)
class EvaluatorForImageClassificationNode(
    EvaluatorNode, tag="legoml_mnist.EvaluatorForImageClassification"
):
    """The SPEC's name for the evaluator (it evaluates any task the checkpoint names)."""


class Evaluator:
    """Built by ``EvaluatorNode``: evaluates a saved checkpoint."""

    def __init__(self, node: EvaluatorNode) -> None:
        self.node = node

    def eval(self) -> EvalReport:
        node = self.node
        path = find_checkpoint(node.checkpoint, node.runs_root)
        config = load_checkpoint(path).get("config")
        if not isinstance(config, dict):
            raise AppError(f"{path} holds no experiment config: it was not written by legoml-mnist train")
        trainer = trainer_from_config(config, str(path))
        device, amp = prepare_process(0, node.device, node.precision, node.threads)
        model = build_model(trainer.model, path, device=device, channels_last=node.channels_last)
        dataset = trainer.dataset.fork(limit_test=node.limit_test)
        test = dataset.load("test")
        report = evaluate_split(
            model, test, task=trainer.task, dataset=dataset, loader=trainer.loader,
            device=device, amp=amp, channels_last=node.channels_last, progress=node.progress,
        )
        report.checkpoint = path
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else None
        if run_dir is not None and (run_dir / "meta.json").is_file():
            report.run_dir = run_dir
            publish_report(
                report, model, test, trainer.task, dataset, run_dir / "artifacts", prefix="eval_"
            )
        info = checkpoint_info(path)
        log.info("evaluated", checkpoint=str(path), step=info.global_step, **report.metrics)
        return report
