"""``legoml-mnist predict``: classify image files with a trained classification checkpoint.

Any PNG or JPEG (any size; grayscale, RGB, RGBA, palette, 16-bit) becomes the model's input
the way the training data looked:

1. decoded by ``torchvision.io`` to the model's channels (luma for 1-channel models);
   transparent pixels are laid over white paper (a palette PNG's transparency is ignored);
2. ``invert``: MNIST digits are light on a dark ground. ``auto`` inverts an image whose
   border (the outer 5%) is mostly light, i.e. a dark digit on white paper; ``yes``/``no``
   force it;
3. ``fit``: ``mnist`` crops to the ink, scales it (aspect ratio kept) into the 20×20 box of
   a 28×28 frame and centres it by its centre of mass, as MNIST was made; ``plain`` resizes
   the whole image to 28×28; ``auto`` (default) takes an image already of the model's size
   as it is and uses ``mnist`` for any other size;
4. normalized with the statistics the run was trained with (its saved config).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog
import torch
from torch import nn
from torch.nn import functional as F

from legoml.track import load_checkpoint
from legoml_mnist._files import read_small_file
from legoml_mnist.builders import build_model
from legoml_mnist.errors import AppError
from legoml_mnist.evaluator import find_checkpoint
from legoml_mnist.tasks import ImageClassificationNode
from legoml_mnist.upgrade import trainer_from_config

__all__ = [
    "Classifier",
    "Prediction",
    "decode_image_file",
    "fit_image",
    "load_classifier",
    "predict_command",
    "predict_files",
    "prepare_image",
]

log = structlog.get_logger(__name__)

Invert = Literal["auto", "yes", "no"]
Fit = Literal["auto", "mnist", "plain"]
MAX_IMAGE_BYTES = 64 << 20  # a digit picture is KBs; this stops a mistaken path early
BATCH = 256  # images per forward pass
_BORDER = 0.05  # share of the shorter side that counts as the border for ``invert=auto``
_BOX = 20 / 28  # MNIST: the digit's longer side fills 20 of the 28 pixels
_PNG = b"\x89PNG\r\n\x1a\n"
_TORCH_PREFIX = re.compile(r"^[\w()]+, \S+:\d+, ")  # "decode_png, /src/decode_png.cpp:79, "


@dataclass(frozen=True)
class Classifier:
    """A trained classifier and what its input must look like."""

    model: nn.Module
    checkpoint: Path
    classes: tuple[str, ...]
    image_shape: tuple[int, int, int]  # channels, height, width
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` (N×C×H×W floats in [0, 1]) scaled as in training."""
        channels = self.image_shape[0]
        mean = torch.tensor(self.mean, dtype=images.dtype).expand(channels).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=images.dtype).expand(channels).view(1, -1, 1, 1)
        return (images - mean) / std


@dataclass(frozen=True)
class Prediction:
    """The top classes of one image, most likely first: (class index, name, probability)."""

    file: str
    top: tuple[tuple[int, str, float], ...]

    def to_dict(self) -> dict[str, Any]:
        index, name, probability = self.top[0]
        return {
            "file": self.file, "class": index, "name": name, "probability": probability,
            "top": [{"class": i, "name": n, "probability": p} for i, n, p in self.top],
        }

    def text(self) -> str:
        """Tab-separated: file, then class index, name, probability for each top class."""
        return "\t".join([self.file, *(f"{i}\t{n}\t{p:.4f}" for i, n, p in self.top)])


def load_classifier(checkpoint: str | None, runs_root: str) -> Classifier:
    """The classifier of a checkpoint file or run directory (default: the newest run's latest
    checkpoint), in eval mode on the CPU; refuses runs of any other task."""
    path = find_checkpoint(checkpoint, runs_root)
    config = load_checkpoint(path).get("config")
    if not isinstance(config, dict):
        raise AppError(f"{path} holds no experiment config: it was not written by legoml-mnist train")
    trainer = trainer_from_config(config, str(path))
    if not isinstance(trainer.task, ImageClassificationNode):
        task = type(trainer.task).__name__.removesuffix("Node").lower()
        raise AppError(
            f"{path} is a {task} run, not a classification run: predict and export need a "
            "classifier; pass --checkpoint with a run of `legoml-mnist train` (task classification)"
        )
    shape = tuple(trainer.dataset.image_shape)
    mean, std = trainer.loader.collator.scaling(trainer.task.scaling(trainer.dataset))
    for name, values in (("mean", mean), ("std", std)):
        if len(values) not in (1, shape[0]):
            raise AppError(f"{path}: the collator's {name} has {len(values)} values for "
                           f"{shape[0]}-channel images; fix loader.collator.{name} in its config")
    model = build_model(trainer.model, path, device=torch.device("cpu"))
    model.eval()
    return Classifier(model, path, tuple(trainer.dataset.classes), (shape[0], shape[1], shape[2]),
                      tuple(mean), tuple(std))


def decode_image_file(path: Path, channels: int) -> torch.Tensor:
    """The picture in ``path`` as ``channels``×H×W floats in [0, 1] (1: luma, 3: RGB);
    alpha is laid over white. Every problem is an ``AppError`` naming the file."""
    from torchvision.io import ImageReadMode, decode_image

    if channels not in (1, 3):
        raise AppError(f"predict reads 1- or 3-channel images; this model takes {channels} channels")
    if path.is_dir():
        raise AppError(f"{path} is a directory: pass image files (e.g. {path}/*.png)")
    data = read_small_file(
        path,
        MAX_IMAGE_BYTES,
        str(path),
        missing="does not exist: check the image path",
        too_large=f"is larger than {MAX_IMAGE_BYTES >> 20} MiB: not a digit picture",
    )
    if not data:
        raise AppError(f"{path} is empty (0 bytes): not an image")
    raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    mode = ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB
    try:
        color = decode_image(raw, mode=mode)
        # libpng drops alpha in GRAY/RGB mode; read it apart (2: gray+alpha, 4: RGBA)
        full = decode_image(raw, mode=ImageReadMode.UNCHANGED) if data[:8] == _PNG else None
    except RuntimeError as err:
        reason = _TORCH_PREFIX.sub("", " ".join(str(err).split())).split(". ")[0][:120]
        raise AppError(f"cannot decode {path}: not a readable PNG or JPEG image ({reason or type(err).__name__})") from None
    image = _unit(color)
    if full is not None and full.shape[0] in (2, 4):
        alpha = _unit(full[-1:])
        image = image * alpha + (1.0 - alpha)
    return image


def _unit(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 or uint16 pixels as floats in [0, 1]."""
    top = 65535.0 if pixels.dtype == torch.uint16 else 255.0
    return pixels.to(torch.float32) / top


def needs_inversion(image: torch.Tensor) -> bool:
    """True for a dark figure on light ground: the image's border is mostly light."""
    gray = image.mean(dim=0)
    height, width = gray.shape
    band = max(1, round(_BORDER * min(height, width)))
    inner = gray[band:height - band, band:width - band]
    border_sum = gray.sum() - inner.sum()
    border_count = gray.numel() - inner.numel()
    return bool(border_sum / max(1, border_count) > 0.5)


def fit_image(image: torch.Tensor, size: tuple[int, int], fit: Fit = "auto") -> torch.Tensor:
    """``image`` (C×h×w, light figure on dark ground) framed to ``size`` (H, W); see the
    module docstring for ``fit``."""
    if fit == "auto":
        fit = "plain" if tuple(image.shape[-2:]) == size else "mnist"
    ink = image.mean(dim=0)
    if fit == "plain" or float(ink.max()) <= 0.0:
        return _resize(image, size)
    rows = torch.nonzero((ink > 0.3 * ink.max()).any(dim=1)).flatten()
    cols = torch.nonzero((ink > 0.3 * ink.max()).any(dim=0)).flatten()
    crop = image[:, int(rows[0]):int(rows[-1]) + 1, int(cols[0]):int(cols[-1]) + 1]
    height, width = size
    scale = min(_BOX * height / crop.shape[1], _BOX * width / crop.shape[2])
    box = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[2] * scale)))
    digit = _resize(crop, box)
    weight = digit.mean(dim=0)
    total = float(weight.sum())
    if total > 0:  # the centre of mass (pixel centres at +0.5) goes to the frame's centre
        centre_y = float((weight.sum(dim=1) * (torch.arange(box[0]) + 0.5)).sum()) / total
        centre_x = float((weight.sum(dim=0) * (torch.arange(box[1]) + 0.5)).sum()) / total
    else:
        centre_y, centre_x = box[0] / 2, box[1] / 2
    top = min(max(0, round(height / 2 - centre_y)), height - box[0])
    left = min(max(0, round(width / 2 - centre_x)), width - box[1])
    frame = torch.zeros((image.shape[0], height, width), dtype=image.dtype)
    frame[:, top:top + box[0], left:left + box[1]] = digit
    return frame


def _resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(image.shape[-2:]) == size:
        return image
    out = F.interpolate(image.unsqueeze(0), size=size, mode="bilinear", antialias=True,
                        align_corners=False)
    return out.squeeze(0).clamp_(0.0, 1.0)


def prepare_image(
    path: Path, image_shape: tuple[int, int, int], invert: Invert = "auto", fit: Fit = "auto"
) -> torch.Tensor:
    """The file as the model's C×H×W input in [0, 1] (before normalization)."""
    image = decode_image_file(path, image_shape[0])
    if invert == "yes" or (invert == "auto" and needs_inversion(image)):
        image = 1.0 - image
    return fit_image(image, (image_shape[1], image_shape[2]), fit)


def predict_files(
    classifier: Classifier,
    files: Sequence[str],
    *,
    top_k: int = 1,
    invert: Invert = "auto",
    fit: Fit = "auto",
    on_error: Callable[[AppError], None] | None = None,
) -> list[Prediction]:
    """Classify ``files`` in order. An unreadable file calls ``on_error`` and is skipped
    (without ``on_error`` its ``AppError`` is raised)."""
    classes = len(classifier.classes)
    if top_k > classes:
        raise AppError(f"--top-k {top_k} is more than the model's {classes} classes: use 1..{classes}")
    ready: list[tuple[str, torch.Tensor]] = []
    for name in files:
        try:
            ready.append((name, prepare_image(Path(name), classifier.image_shape, invert, fit)))
        except AppError as err:
            if on_error is None:
                raise
            on_error(err)
    predictions: list[Prediction] = []
    for start in range(0, len(ready), BATCH):
        chunk = ready[start:start + BATCH]
        batch = classifier.normalize(torch.stack([image for _, image in chunk]))
        with torch.inference_mode():
            logits = classifier.model(batch)
        if logits.ndim != 2 or logits.shape[1] != classes:
            raise AppError(f"{classifier.checkpoint}: the model gives {tuple(logits.shape[1:])} "
                           f"outputs per image for {classes} classes; it is not a classifier")
        probs, indices = torch.softmax(logits.float(), dim=1).topk(top_k, dim=1)
        for (name, _), row_p, row_i in zip(chunk, probs.tolist(), indices.tolist(), strict=True):
            top = tuple((i, classifier.classes[i], p) for i, p in zip(row_i, row_p, strict=True))
            predictions.append(Prediction(name, top))
    log.debug("predicted", checkpoint=str(classifier.checkpoint), images=len(predictions),
              failed=len(files) - len(predictions))
    return predictions


def predict_command(
    args: argparse.Namespace, out: Callable[[str], None], err: Callable[[str], None]
) -> int:
    """``legoml-mnist predict``: one line per image on ``out``, one error line per unreadable
    file on ``err``; 1 when any file failed."""
    classifier = load_classifier(args.checkpoint, args.runs_root)
    failures: list[AppError] = []

    def report(problem: AppError) -> None:
        failures.append(problem)
        err(f"error: {problem}")

    predictions = predict_files(classifier, args.images, top_k=args.top_k, invert=args.invert,
                                fit=args.fit, on_error=report)
    for prediction in predictions:
        out(json.dumps(prediction.to_dict()) if args.json else prediction.text())
    return 1 if failures else 0
