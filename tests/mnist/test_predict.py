"""``legoml-mnist predict`` on image files written from real MNIST test images: any size and
mode, inversion, framing, JSON, and one error line per bad file."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F
from torchvision.io import write_jpeg, write_png

from legoml.data import FASHION_MNIST, MNIST
from legoml.nn import ConvAutoencoderNode
from legoml.track import load_checkpoint, save_checkpoint
from legoml_mnist import MNISTNode, recipe
from legoml_mnist.builders import build_model
from legoml_mnist.cli import main
from legoml_mnist.predict import fit_image, needs_inversion, prepare_image
from legoml_mnist.upgrade import trainer_from_config

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("LEGOML_DATA_DIR") or ROOT / "data")
COUNT = 64  # test images written as files


def train_classifier(root: Path) -> Path:
    """A small real-MNIST classifier (~95% test accuracy); returns its run directory."""
    node = recipe().fork(
        dataset=MNISTNode(root=str(DATA_DIR), limit_train=4096, limit_test=512),
        epochs=1.0, runs_root=str(root), progress=False, device="cpu", seed=1,
    )
    result = node.build().train()
    assert result.run_dir is not None
    return result.run_dir


def trained_model(run_dir: Path) -> nn.Module:
    """The run's latest model, built straight from its checkpoint, in eval mode."""
    path = sorted((run_dir / "checkpoints").glob("step-*.pt"))[-1]
    trainer = trainer_from_config(load_checkpoint(path)["config"], str(path))
    return build_model(trainer.model, path).eval()


def direct_forward(run_dir: Path | nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Logits of the run's model on uint8 N×28×28 images, scaled by hand (MNIST's statistics)."""
    model = trained_model(run_dir) if isinstance(run_dir, Path) else run_dir
    x = (images.unsqueeze(1).float() / 255.0 - MNIST.mean[0]) / MNIST.std[0]
    with torch.inference_mode():
        logits: torch.Tensor = model(x)
    return logits


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_classifier(tmp_path_factory.mktemp("predict") / "runs")


@pytest.fixture(scope="module")
def test_images() -> tuple[torch.Tensor, torch.Tensor]:
    split = MNISTNode(root=str(DATA_DIR), limit_test=COUNT).load("test")
    return split.images, split.labels


@pytest.fixture(autouse=True)
def quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEGOML_LOG_LEVEL", "warning")


def predict(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], list[str]]:
    code = main(["predict", *args])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err.splitlines()


def predicted_classes(lines: list[str]) -> list[int]:
    return [json.loads(line)["class"] for line in lines]


def write_pngs(folder: Path, images: torch.Tensor) -> list[str]:
    folder.mkdir(exist_ok=True)
    files = []
    for i, image in enumerate(images):
        write_png(image.unsqueeze(0).clone(), str(folder / f"{i:03d}.png"))
        files.append(str(folder / f"{i:03d}.png"))
    return files


def test_lossless_28x28_pngs_match_the_models_own_forward_pass(
    run_dir: Path, test_images: tuple[torch.Tensor, torch.Tensor], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    images, labels = test_images
    files = write_pngs(tmp_path / "png", images)
    code, out, err = predict(capsys, *files, "--checkpoint", str(run_dir), "--json")
    assert code == 0 and err == []
    records = [json.loads(line) for line in out]
    assert [r["file"] for r in records] == files
    probabilities = torch.softmax(direct_forward(run_dir, images), dim=1)
    assert predicted_classes(out) == probabilities.argmax(dim=1).tolist()
    for record, row in zip(records, probabilities, strict=True):
        assert record["name"] == MNIST.classes[record["class"]]
        assert record["probability"] == pytest.approx(float(row.max()), abs=1e-5)
        assert record["top"] == [{k: record[k] for k in ("class", "name", "probability")}]
    accuracy = (torch.tensor(predicted_classes(out)) == labels).float().mean()
    assert accuracy >= 0.85


@pytest.mark.parametrize("fit", ["auto", "plain"])
@pytest.mark.parametrize("kind", ["png", "jpg"])
def test_upscaled_inverted_rgb_images_mostly_agree(
    run_dir: Path, test_images: tuple[torch.Tensor, torch.Tensor], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], kind: str, fit: str,
) -> None:
    images, labels = test_images
    big = F.interpolate(images.unsqueeze(1).float(), size=(64, 80), mode="bilinear")
    paper = (255.0 - big).round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1)
    files = []
    for i, image in enumerate(paper):
        path = str(tmp_path / f"{i:03d}.{kind}")
        (write_png if kind == "png" else write_jpeg)(image.contiguous(), path)
        files.append(path)
    code, out, _ = predict(capsys, *files, "--checkpoint", str(run_dir), "--json", "--fit", fit)
    assert code == 0 and len(out) == COUNT
    classes = torch.tensor(predicted_classes(out))
    direct = direct_forward(run_dir, images).argmax(dim=1)
    assert (classes == direct).float().mean() >= 0.8
    assert (classes == labels).float().mean() >= 0.75
    _, wrong, _ = predict(capsys, *files[:16], "--checkpoint", str(run_dir), "--json",
                          "--fit", fit, "--invert", "no")  # white paper read as ink
    assert (torch.tensor(predicted_classes(wrong)) == labels[:16]).float().mean() < 0.5


def test_every_png_mode_gives_the_same_input(
    run_dir: Path, test_images: tuple[torch.Tensor, torch.Tensor], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    images, _ = test_images
    ink = images[:8].numpy()
    files: dict[str, list[str]] = {m: [] for m in ("L", "P", "RGBA", "LA", "I16", "RGB")}
    gray_ramp = [v for i in range(256) for v in (i, i, i)]
    for i, digit in enumerate(ink):
        black = np.zeros_like(digit)
        pictures = {
            "L": Image.fromarray(digit, mode="L"),
            "RGB": Image.fromarray(np.stack([digit] * 3, axis=-1), mode="RGB"),
            # black strokes whose opacity is the ink, on a transparent ground
            "RGBA": Image.fromarray(np.stack([black, black, black, digit], axis=-1), mode="RGBA"),
            "LA": Image.fromarray(np.stack([black, digit], axis=-1), mode="LA"),
            "I16": Image.fromarray(digit.astype(np.uint16) * 257),
        }
        palette = Image.fromarray(digit, mode="P")
        palette.putpalette(gray_ramp)
        pictures["P"] = palette
        for mode, picture in pictures.items():
            path = tmp_path / f"{mode}-{i}.png"
            picture.save(path)
            files[mode].append(str(path))
    expected = direct_forward(run_dir, images[:8]).argmax(dim=1).tolist()
    reference = prepare_image(Path(files["L"][0]), (1, 28, 28))
    assert torch.equal(reference[0], images[0].float() / 255.0)
    for mode, paths in files.items():
        assert torch.allclose(prepare_image(Path(paths[0]), (1, 28, 28)), reference, atol=1e-6), mode
        code, out, err = predict(capsys, *paths, "--checkpoint", str(run_dir), "--json")
        assert code == 0 and err == [], mode
        assert predicted_classes(out) == expected, mode


def test_text_output_and_top_k(
    run_dir: Path, test_images: tuple[torch.Tensor, torch.Tensor], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    files = write_pngs(tmp_path / "png", test_images[0][:3])
    code, out, _ = predict(capsys, *files, "--checkpoint", str(run_dir), "--top-k", "3")
    assert code == 0 and len(out) == 3
    _, records, _ = predict(capsys, *files, "--checkpoint", str(run_dir), "--json", "--top-k", "3")
    for line, record in zip(out, map(json.loads, records), strict=True):
        columns = line.split("\t")
        assert len(columns) == 1 + 3 * 3 and columns[0] == record["file"]
        top = record["top"]
        assert [int(c) for c in columns[1::3]] == [t["class"] for t in top]
        assert columns[2::3] == [t["name"] for t in top]
        probabilities = [float(c) for c in columns[3::3]]
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0001
        assert len({t["class"] for t in top}) == 3
    code, _, err = predict(capsys, files[0], "--checkpoint", str(run_dir), "--top-k", "11")
    assert code == 1 and len(err) == 1 and "--top-k 11" in err[0] and "10 classes" in err[0]


def test_default_checkpoint_is_the_latest_run(
    run_dir: Path, test_images: tuple[torch.Tensor, torch.Tensor], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    files = write_pngs(tmp_path / "png", test_images[0][:4])
    code, out, _ = predict(capsys, *files, "--runs-root", str(run_dir.parent), "--json")
    assert code == 0
    _, explicit, _ = predict(capsys, *files, "--checkpoint", str(run_dir), "--json")
    assert out == explicit
    code, _, err = predict(capsys, *files, "--runs-root", str(tmp_path / "none"))
    assert code == 1 and len(err) == 1 and "no checkpoint found" in err[0]


def test_bad_files_get_one_error_line_each_and_the_good_ones_still_print(
    run_dir: Path, test_images: tuple[torch.Tensor, torch.Tensor], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    good = write_pngs(tmp_path / "png", test_images[0][:2])
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all" * 20)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(Path(good[0]).read_bytes()[:60])
    broken_jpeg = tmp_path / "broken.jpg"
    write_jpeg(test_images[0][:1].expand(3, -1, -1).contiguous(), str(broken_jpeg))
    broken_jpeg.write_bytes(broken_jpeg.read_bytes()[:200])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    bad = [str(tmp_path / "missing.png"), str(tmp_path), str(junk), str(truncated),
           str(broken_jpeg), str(empty)]
    code, out, err = predict(capsys, good[0], *bad, good[1], "--checkpoint", str(run_dir))
    assert code == 1
    assert [line.split("\t")[0] for line in out] == good
    assert len(err) == len(bad)
    for line, path in zip(err, bad, strict=True):
        assert line.startswith("error: ") and path in line
    assert "does not exist" in err[0] and "is a directory" in err[1] and "empty" in err[5]
    assert all("cannot decode" in line for line in err[2:5])
    assert "Traceback" not in "\n".join(err)


def test_a_reconstruction_run_is_refused_in_one_line(
    tmp_path: Path, test_images: tuple[torch.Tensor, torch.Tensor],
    capsys: pytest.CaptureFixture[str],
) -> None:
    node = recipe("mnist", "reconstruction")
    assert isinstance(node.model, ConvAutoencoderNode)
    checkpoint = tmp_path / "autoencoder" / "checkpoints" / "step-00000001.pt"
    save_checkpoint(checkpoint, {"context": {"model": node.model.build().state_dict()},
                                 "global_step": 1, "config": node.to_dict()})
    files = write_pngs(tmp_path / "png", test_images[0][:1])
    code, out, err = predict(capsys, *files, "--checkpoint", str(checkpoint))
    assert code == 1 and out == [] and len(err) == 1
    assert "reconstruction run" in err[0] and "classification" in err[0]


def test_a_fashion_mnist_run_names_the_clothes(
    run_dir: Path, tmp_path: Path, test_images: tuple[torch.Tensor, torch.Tensor],
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = sorted((run_dir / "checkpoints").glob("step-*.pt"))[-1]
    state = load_checkpoint(source)
    state["config"]["dataset"] = {"type": "legoml_mnist.FashionMNIST", "root": str(DATA_DIR)}
    checkpoint = tmp_path / "fashion.pt"
    save_checkpoint(checkpoint, state)
    files = write_pngs(tmp_path / "png", test_images[0][:4])
    code, out, _ = predict(capsys, *files, "--checkpoint", str(checkpoint), "--json")
    assert code == 0
    for record in map(json.loads, out):
        assert record["name"] == FASHION_MNIST.classes[record["class"]]


def test_inversion_follows_the_border() -> None:
    paper = torch.ones(1, 40, 30)
    paper[:, 10:30, 12:18] = 0.0  # a dark stroke on white
    assert needs_inversion(paper)
    assert not needs_inversion(1.0 - paper)
    assert not needs_inversion(torch.zeros(3, 5, 5))


def test_mnist_fit_scales_the_ink_into_20_pixels_and_centres_its_mass() -> None:
    canvas = torch.zeros(1, 300, 200)
    canvas[:, 40:240, 20:70] = 1.0  # a 200×50 bar near the top left
    framed = fit_image(canvas, (28, 28), "mnist")
    rows = torch.nonzero(framed[0].sum(dim=1) > 0.5).flatten()
    cols = torch.nonzero(framed[0].sum(dim=0) > 0.5).flatten()
    assert int(rows[-1] - rows[0]) + 1 == 20 and int(cols[-1] - cols[0]) + 1 == 5
    mass = framed[0] / framed[0].sum()
    centre_y = float((mass.sum(dim=1) * (torch.arange(28) + 0.5)).sum())
    centre_x = float((mass.sum(dim=0) * (torch.arange(28) + 0.5)).sum())
    assert abs(centre_y - 14) <= 0.5 and abs(centre_x - 14) <= 0.5
    assert torch.equal(fit_image(framed, (28, 28)), framed)  # auto: the model's size stays
    assert fit_image(canvas, (28, 28), "plain").shape == (1, 28, 28)
    assert torch.equal(fit_image(torch.zeros(1, 50, 50), (28, 28)), torch.zeros(1, 28, 28))


def test_importing_the_cli_loads_neither_torchvision_io_nor_onnx() -> None:
    import subprocess

    code = ("import sys, legoml_mnist.cli; "
            "print(sorted(m for m in sys.modules if m.startswith(('torchvision', 'onnx', "
            "'legoml_mnist.predict', 'legoml_mnist.export'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=120)
    assert result.stdout.strip() == "[]"
