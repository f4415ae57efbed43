"""``legoml-mnist export``: a trained classifier as one self-contained ONNX or ``.pt2`` file.

The exported module takes **uint8** images N×C×H×W (0-255, light figure on dark ground, the
dataset's own format: a decoded MNIST image goes in as it is) and returns two tensors,
``logits`` and ``probabilities`` (softmax), both N×classes. The run's normalization lives
inside the file, so a client only decodes and resizes.

ONNX goes through ``torch.onnx.export(dynamo=True)`` (the torch.export-based exporter, the
default since torch 2.9; the TorchScript one is deprecated and warns that it will be
removed), then ``onnx.checker`` and an onnxruntime run checked against torch. Every file is
written beside its target and renamed over it, so a crash never leaves half a file.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import structlog
import torch
from torch import nn

from legoml_mnist.errors import AppError
from legoml_mnist.predict import Classifier, load_classifier

__all__ = ["FORMATS", "ExportedClassifier", "default_output", "export_classifier", "export_command"]

log = structlog.get_logger(__name__)

Format = Literal["onnx", "torch.export"]
FORMATS: tuple[Format, ...] = ("onnx", "torch.export")
SUFFIX = {"onnx": ".onnx", "torch.export": ".pt2"}
ONNX_TOLERANCE = 1e-4  # onnxruntime vs torch on the self-check (float32 kernels differ ~1e-6)
_EXTRA = "pip install 'legoml-mnist[export]'"


class ExportedClassifier(nn.Module):
    """uint8 images N×C×H×W → (logits, probabilities), with the run's normalization inside."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, classifier: Classifier) -> None:
        super().__init__()
        channels = classifier.image_shape[0]
        self.model = classifier.model
        mean = torch.tensor(classifier.mean, dtype=torch.float32).expand(channels)
        std = torch.tensor(classifier.std, dtype=torch.float32).expand(channels)
        self.register_buffer("mean", mean.reshape(1, -1, 1, 1).clone())
        self.register_buffer("std", std.reshape(1, -1, 1, 1).clone())

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (images.to(torch.float32) / 255.0 - self.mean) / self.std
        logits = self.model(x)
        return logits, torch.softmax(logits, dim=1)


def default_output(checkpoint: Path, fmt: Format) -> Path:
    """``RUN/artifacts/model.onnx`` (or ``.pt2``) for a checkpoint inside a run directory,
    else the checkpoint's name with the format's suffix beside it."""
    if checkpoint.parent.name == "checkpoints":
        return checkpoint.parent.parent / "artifacts" / f"model{SUFFIX[fmt]}"
    return checkpoint.with_suffix(SUFFIX[fmt])


def _target(output: str | None, checkpoint: Path, fmt: Format) -> Path:
    if output is None:
        path = default_output(checkpoint, fmt)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
    path = Path(output)
    if path.is_dir():
        return path / f"model{SUFFIX[fmt]}"
    if not path.parent.is_dir():
        raise AppError(f"cannot write {path}: folder {path.parent} does not exist; create it "
                       "or pick another --output")
    return path


def _metadata(classifier: Classifier, batch: int | None) -> dict[str, str]:
    """What a client needs to feed the file, stored inside it."""
    channels, height, width = classifier.image_shape
    return {
        "legoml.classes": json.dumps(list(classifier.classes)),
        "legoml.input": f"uint8 N×{channels}×{height}×{width}, 0-255, light figure on dark ground",
        "legoml.outputs": "logits, probabilities",
        "legoml.mean": json.dumps(list(classifier.mean)),
        "legoml.std": json.dumps(list(classifier.std)),
        "legoml.batch": "dynamic" if batch is None else str(batch),
        "legoml.checkpoint": str(classifier.checkpoint),
    }


@contextlib.contextmanager
def _temporary_beside(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target``; renamed over it (after fsync) when the block ends
    normally, removed otherwise."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        mask = os.umask(0o022)  # mkstemp gives 0o600; a model file is as readable as open() makes it
        os.umask(mask)
        tmp.chmod(0o666 & ~mask)
        yield tmp
        with tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _example(classifier: Classifier, batch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (batch, *classifier.image_shape), dtype=torch.uint8,
                         generator=generator)


def _dynamic(batch: int | None) -> dict[str, Any] | None:
    return None if batch is not None else {"images": {0: torch.export.Dim("batch", min=1)}}


def _import_extra(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise AppError(f"export --format onnx needs {name}, which is not installed: {_EXTRA}") from None


def _export_onnx(wrapper: ExportedClassifier, classifier: Classifier, tmp: Path,
                 batch: int | None) -> None:
    onnx = _import_extra("onnx")
    _import_extra("onnxscript")  # the dynamo exporter translates through it
    ort = _import_extra("onnxruntime")
    example = _example(classifier, batch or 2)  # 2: a batch of 1 would be specialized
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress
            program = torch.onnx.export(
                wrapper, (example,), dynamo=True, input_names=["images"],
                output_names=["logits", "probabilities"], dynamic_shapes=_dynamic(batch),
                verbose=False,
            )
        assert program is not None
        program.save(tmp, external_data=False)
    except (RuntimeError, TypeError, ValueError, AssertionError) as err:
        raise AppError(f"the ONNX exporter failed ({_first_line(err)}); "
                       "try --format torch.export") from None
    model = onnx.load(str(tmp))
    for key, value in _metadata(classifier, batch).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as err:
        raise AppError(f"the exported ONNX model is invalid ({_first_line(err)}); "
                       "try --format torch.export") from None
    onnx.save(model, str(tmp))
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    for size in (batch,) if batch is not None else (1, 3):
        images = _example(classifier, size)
        with torch.inference_mode():
            expected = wrapper(images)
        got = session.run(None, {"images": images.numpy()})
        gap = max(float((torch.from_numpy(g) - e).abs().max()) for g, e in zip(got, expected, strict=True))
        if gap > ONNX_TOLERANCE:
            raise AppError(f"the ONNX model differs from torch by {gap:.2g} (over "
                           f"{ONNX_TOLERANCE:g}); try --format torch.export")


def _export_program(wrapper: ExportedClassifier, classifier: Classifier, tmp: Path,
                    batch: int | None) -> None:
    example = _example(classifier, batch or 2)
    try:
        program = torch.export.export(wrapper, (example,), dynamic_shapes=_dynamic(batch),
                                      strict=False)
    except (RuntimeError, TypeError, ValueError) as err:
        raise AppError(f"torch.export failed ({_first_line(err)}); try --format onnx") from None
    extra = {"legoml.json": json.dumps(_metadata(classifier, batch))}
    with tmp.open("wb") as handle:
        torch.export.save(program, handle, extra_files=extra)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def export_classifier(
    classifier: Classifier, fmt: Format, output: Path, batch: int | None = None
) -> Path:
    """Write ``classifier`` to ``output`` as ``fmt``; ``batch`` fixes the batch size (``None``:
    dynamic). Returns ``output``."""
    if fmt not in FORMATS:
        raise AppError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    if batch is not None and batch < 1:
        raise AppError(f"--batch {batch}: use a positive batch size or 'dynamic'")
    wrapper = ExportedClassifier(classifier).eval()
    writer: Callable[[ExportedClassifier, Classifier, Path, int | None], None] = (
        _export_onnx if fmt == "onnx" else _export_program)
    with _temporary_beside(output) as tmp:
        writer(wrapper, classifier, tmp, batch)
    log.info("exported", format=fmt, checkpoint=str(classifier.checkpoint), output=str(output),
             batch=batch or "dynamic")
    return output


def export_command(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """``legoml-mnist export``: a summary line, then the written file's path as the last line."""
    fmt: Format = args.format
    if fmt == "onnx":  # fail on a missing extra before loading anything
        for name in ("onnx", "onnxscript", "onnxruntime"):
            _import_extra(name)
    classifier = load_classifier(args.checkpoint, args.runs_root)
    target = _target(args.output, classifier.checkpoint, fmt)
    path = export_classifier(classifier, fmt, target, args.batch)
    channels, height, width = classifier.image_shape
    batch = "N (dynamic)" if args.batch is None else str(args.batch)
    out(f"exported {classifier.checkpoint} as {fmt}: input images uint8 "
        f"{batch}×{channels}×{height}×{width}, outputs logits and probabilities over "
        f"{len(classifier.classes)} classes")
    out(str(path))
    return 0
