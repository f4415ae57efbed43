"""``legoml-mnist export``: ONNX (checked by onnx and run by onnxruntime) and torch.export
files that give the trained classifier's outputs on real MNIST test images."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
import torch
from test_predict import DATA_DIR, direct_forward, train_classifier, trained_model
from torch import nn

from legoml.data import MNIST
from legoml.track import save_checkpoint
from legoml_mnist import MNISTNode, recipe
from legoml_mnist.cli import main
from legoml_mnist.export import export_classifier
from legoml_mnist.predict import load_classifier

pytestmark = pytest.mark.integration

COUNT = 256


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_classifier(tmp_path_factory.mktemp("export") / "runs")


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return MNISTNode(root=str(DATA_DIR), limit_test=COUNT).load("test").images


@pytest.fixture(scope="module")
def eager(run_dir: Path) -> nn.Module:
    return trained_model(run_dir)


def reference(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The eager model's logits and probabilities on these uint8 images (same batch)."""
    logits = direct_forward(model, images)
    return logits, torch.softmax(logits, dim=1)


@pytest.fixture(autouse=True)
def quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEGOML_LOG_LEVEL", "warning")


def export(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], list[str]]:
    try:
        code = main(["export", *args])
    except SystemExit as stop:  # argparse refuses a bad flag with exit code 2
        code = int(stop.code or 0)
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err.splitlines()


def max_gap(got: list[torch.Tensor], want: tuple[torch.Tensor, torch.Tensor]) -> float:
    return max(float((g - w).abs().max()) for g, w in zip(got, want, strict=True))


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_onnx_with_a_dynamic_batch_matches_torch(
    run_dir: Path, images: torch.Tensor, eager: nn.Module,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = export(capsys, "--format", "onnx", "--checkpoint", str(run_dir))
    assert code == 0, err
    path = Path(out[-1])
    assert path == run_dir / "artifacts" / "model.onnx"  # the run's default place
    assert leftovers(path.parent) == []
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    (inp,) = proto.graph.input
    assert inp.name == "images" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 28, 28]
    assert [o.name for o in proto.graph.output] == ["logits", "probabilities"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["legoml.classes"]) == list(MNIST.classes)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = images.unsqueeze(1).numpy()
    for size in (1, 64):
        for start in range(0, COUNT, size):
            got = session.run(None, {"images": batch[start:start + size]})
            want = reference(eager, images[start:start + size])
            assert max_gap([torch.from_numpy(g) for g in got], want) <= 1e-5


def test_onnx_with_a_fixed_batch_refuses_other_sizes(
    run_dir: Path, images: torch.Tensor, eager: nn.Module,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    target = tmp_path / "fixed.onnx"
    code, out, _ = export(capsys, "--format", "onnx", "--checkpoint", str(run_dir),
                          "--output", str(target), "--batch", "64")
    assert code == 0 and out[-1] == str(target)
    dims = onnx.load(str(target)).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 64
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": images[:64].unsqueeze(1).numpy()})
    assert max_gap([torch.from_numpy(g) for g in got], reference(eager, images[:64])) <= 1e-5
    with pytest.raises(Exception, match="images"):
        session.run(None, {"images": images[:1].unsqueeze(1).numpy()})


def test_torch_export_reloads_and_matches(
    run_dir: Path, images: torch.Tensor, eager: nn.Module,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = export(capsys, "--format", "torch.export", "--checkpoint", str(run_dir),
                          "--output", str(tmp_path))  # a folder: model.pt2 inside
    assert code == 0
    path = Path(out[-1])
    assert path == tmp_path / "model.pt2" and leftovers(tmp_path) == []
    extra = {"legoml.json": ""}
    program = torch.export.load(str(path), extra_files=extra)
    assert json.loads(json.loads(extra["legoml.json"])["legoml.classes"]) == list(MNIST.classes)
    module = program.module()  # ~0.1 s a call on CPU whatever the batch: few batch-1 calls
    batch = images.unsqueeze(1)
    for size, count in ((1, 8), (64, COUNT)):
        for start in range(0, count, size):
            with torch.inference_mode():
                got = module(batch[start:start + size])
            assert max_gap(list(got), reference(eager, images[start:start + size])) <= 1e-6


def test_a_failed_write_keeps_the_previous_file(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = tmp_path / "model.pt2"
    target.write_bytes(b"previous model")

    def crash(program: object, handle: object, **kwargs: object) -> None:
        handle.write(b"half a file")  # type: ignore[attr-defined]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch.export, "save", crash)
    with pytest.raises(OSError, match="No space"):
        export_classifier(load_classifier(str(run_dir), "runs"), "torch.export", target)
    assert target.read_bytes() == b"previous model"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--format", "tflite"], 2, "invalid choice: 'tflite'"),
        (["--format", "onnx", "--batch", "abc"], 2, "use 'dynamic' or a batch size"),
        (["--format", "onnx", "--batch", "0"], 2, "must be 1 or more"),
        (["--format", "onnx", "--checkpoint", "{tmp}/missing.pt"], 1, "does not exist"),
        (["--format", "onnx", "--runs-root", "{tmp}/no-runs"], 1, "no checkpoint found"),
        (["--format", "torch.export", "--checkpoint", "{run}", "--output", "{tmp}/no/m.pt2"],
         1, "folder {tmp}/no does not exist"),
    ],
)
def test_bad_requests_get_one_error_line_and_write_nothing(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    args: list[str], code: int, message: str,
) -> None:
    filled = [a.format(tmp=tmp_path, run=run_dir) for a in args]
    result, out, err = export(capsys, *filled)
    assert result == code and out == []
    assert len(err) == 1 and err[0].startswith("error: ")
    assert message.format(tmp=tmp_path) in err[0]
    assert list(tmp_path.iterdir()) == []


def test_a_reconstruction_run_cannot_be_exported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    node = recipe("mnist", "reconstruction")
    checkpoint = tmp_path / "ae.pt"
    save_checkpoint(checkpoint, {"context": {"model": node.model.build().state_dict()},
                                 "config": node.to_dict()})
    code, out, err = export(capsys, "--format", "torch.export", "--checkpoint", str(checkpoint))
    assert code == 1 and out == [] and len(err) == 1 and "not a classification run" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ae.pt"]


def test_a_missing_onnx_extra_names_the_pip_extra(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript now fails
    code, out, err = export(capsys, "--format", "onnx", "--checkpoint", str(run_dir),
                            "--output", str(tmp_path / "m.onnx"))
    assert code == 1 and out == [] and len(err) == 1
    assert "onnxscript" in err[0] and "pip install 'legoml-mnist[export]'" in err[0]
    assert not os.listdir(tmp_path)
