"""ONNX and TorchScript exports: metadata, parity with PyTorch, the ONNX Runtime backend
(without torch), and failures that leave no file behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from mnist_classifier.errors import CheckpointError, ExportError
from mnist_classifier.inference import onnx as onnx_export
from mnist_classifier.inference.onnx import export_onnx, export_torchscript
from mnist_classifier.inference.predictor import load_predictor
from mnist_classifier.models.checkpoint import build_checkpoint, load_checkpoint, save_checkpoint
from mnist_classifier.models.deployed import deployed_from_checkpoint
from mnist_classifier.models.registry import create_model, list_models


@pytest.fixture(scope="module")
def checkpoint(trained_run: Path) -> dict:
    return load_checkpoint(trained_run / "checkpoints" / "best.pt")


@pytest.fixture(scope="module")
def onnx_file(trained_run: Path, tmp_path_factory) -> Path:
    lines: list[str] = []
    out = export_onnx(trained_run, tmp_path_factory.mktemp("onnx") / "model.onnx", log=lines.append)
    assert len(lines) == 1 and "matches PyTorch" in lines[0]
    return out


@pytest.fixture(scope="module")
def pixels(mnist) -> np.ndarray:
    """200 test images as the exports take them: float32 (N, 1, 28, 28) in 0..255."""
    return mnist.test_images[-200:].numpy().astype(np.float32)[:, None]


def torch_probabilities(checkpoint: dict, pixels: np.ndarray) -> np.ndarray:
    model = deployed_from_checkpoint(checkpoint)
    with torch.inference_mode():
        return model(torch.from_numpy(pixels)).numpy()


def test_onnx_metadata_carries_normalisation_and_class_names(
    onnx_file: Path, checkpoint: dict
) -> None:
    model = onnx.load(str(onnx_file))
    onnx.checker.check_model(model)
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["normalization"]) == checkpoint["normalization"]
    assert json.loads(meta["class_names"]) == [str(d) for d in range(10)]
    assert meta["model_name"] == "cnn-small"
    assert meta["parameters"] == "29178"
    assert (
        json.loads(meta["metrics"])["test"]["accuracy"] == checkpoint["metrics"]["test"]["accuracy"]
    )
    assert "0..255" in meta["input"]
    (graph_input,) = model.graph.input
    dims = graph_input.type.tensor_type.shape.dim
    assert graph_input.name == "pixels"
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 28, 28]  # dynamic batch
    assert [o.name for o in model.graph.output] == ["probabilities"]


def test_onnx_runtime_matches_pytorch(onnx_file: Path, checkpoint: dict, pixels) -> None:
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    expected = torch_probabilities(checkpoint, pixels)
    for batch in (pixels, pixels[:1], pixels[:37]):
        got = session.run(None, {"pixels": batch})[0]
        assert got.shape == (len(batch), 10)
        np.testing.assert_allclose(got, expected[: len(batch)], atol=1e-5, rtol=0)


def test_onnx_backend_predicts_like_the_torch_backend(
    onnx_file: Path, trained_run: Path, mnist, tmp_path: Path
) -> None:
    torch_predictor = load_predictor(trained_run, backend="torch", device="cpu")
    onnx_predictor = load_predictor(onnx_file, backend="onnx")
    assert onnx_predictor.backend == "onnx"
    info, reference = onnx_predictor.info(), torch_predictor.info()
    for key in (
        "model",
        "parameters",
        "metrics",
        "normalization",
        "class_names",
        "tta",
        "temperature",
    ):
        assert info[key] == reference[key], key
    images = mnist.test_images[:300].numpy()
    np.testing.assert_allclose(
        onnx_predictor.predict_mnist(images), torch_predictor.predict_mnist(images), atol=1e-5
    )
    # Through preprocessing too: the same 28x28 images, the same probabilities.
    inputs = [255 - images[0], np.kron(images[1], np.ones((9, 9), np.uint8)), images[2]]
    a, b = onnx_predictor.predict(inputs), torch_predictor.predict(inputs)
    for p, q in zip(a, b, strict=True):
        assert p.digit == q.digit
        np.testing.assert_array_equal(p.image, q.image)
        np.testing.assert_allclose(p.probabilities, q.probabilities, atol=1e-5)


def test_onnx_backend_from_a_run_folder_exports_on_the_fly(trained_run: Path, mnist) -> None:
    predictor = load_predictor(trained_run, backend="onnx")
    assert predictor.backend == "onnx"
    assert predictor.checkpoint_path.endswith("best.pt")
    reference = load_predictor(trained_run, backend="torch", device="cpu")
    images = mnist.test_images[:50].numpy()
    np.testing.assert_allclose(
        predictor.predict_mnist(images), reference.predict_mnist(images), atol=1e-5
    )


def test_onnx_backend_does_not_import_torch(onnx_file: Path, tmp_path: Path, mnist) -> None:
    image = tmp_path / "seven.png"
    from PIL import Image

    Image.fromarray(255 - np.kron(mnist.test_images[0].numpy(), np.ones((6, 6), np.uint8))).save(
        image
    )
    script = textwrap.dedent(
        f"""
        import sys
        import mnist_classifier
        predictor = mnist_classifier.load_predictor({str(onnx_file)!r}, backend="onnx")
        (p,) = predictor.predict({str(image)!r})
        assert p.error is None, p.error
        print(p.digit)
        assert "torch" not in sys.modules, "torch was imported"
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(int(mnist.test_labels[0]))


def test_export_failing_the_parity_check_leaves_no_file(
    trained_run: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(onnx_export, "PARITY_TOLERANCE", -1.0)  # nothing can pass
    out = tmp_path / "model.onnx"
    with pytest.raises(ExportError, match=r"disagree.*no file written"):
        export_onnx(trained_run, out)
    with pytest.raises(ExportError, match="disagree"):
        export_torchscript(trained_run, tmp_path / "model.pt")
    assert os.listdir(tmp_path) == []


def test_export_errors(trained_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="is a folder"):
        export_torchscript(trained_run, tmp_path)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        export_onnx(tmp_path / "nothing.pt", tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_export_loads_with_torch_jit(
    trained_run: Path, checkpoint: dict, tmp_path: Path, pixels
) -> None:
    lines: list[str] = []
    out = export_torchscript(trained_run, tmp_path / "model.pt", log=lines.append)
    assert "matches PyTorch" in lines[0]
    extra = {onnx_export.METADATA_FILE: ""}
    loaded = torch.jit.load(str(out), _extra_files=extra)
    meta = json.loads(extra[onnx_export.METADATA_FILE])
    assert json.loads(meta["normalization"]) == checkpoint["normalization"]
    assert meta["model_name"] == "cnn-small"
    expected = torch_probabilities(checkpoint, pixels)
    with torch.inference_mode():
        for batch in (pixels, pixels[:3]):
            got = loaded(torch.from_numpy(batch)).numpy()
            np.testing.assert_allclose(got, expected[: len(batch)], atol=1e-5, rtol=0)


def test_foreign_or_damaged_onnx_files_are_refused(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1, 28, 28])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1, 28, 28])],
    )
    foreign = tmp_path / "foreign.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # old enough for any onnxruntime
    onnx.save(model, foreign)
    with pytest.raises(CheckpointError, match="not an mnist-classifier export"):
        load_predictor(foreign, backend="onnx")
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(CheckpointError, match=r"damaged.onnx: not a readable ONNX model") as info:
        load_predictor(damaged, backend="onnx")
    assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="not found"):
        load_predictor(tmp_path / "missing.onnx", backend="onnx")


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_exports_to_onnx(name: str, tmp_path: Path) -> None:
    """Untrained weights are enough: the export must match PyTorch for every architecture
    (with test-time augmentation switched on for one of them)."""
    tta = name == "cnn-small"
    torch.manual_seed(0)
    ckpt = build_checkpoint(
        create_model(name), model_name=name, model_kwargs={}, mean=0.2, std=0.4, config={"tta": tta}
    )
    path = save_checkpoint(tmp_path / f"{name}.pt", ckpt)
    out = export_onnx(path, tmp_path / f"{name}.onnx")
    predictor = load_predictor(out, backend="onnx")
    assert (predictor.model_name, predictor.mean, predictor.std, predictor.tta) == (
        name,
        0.2,
        0.4,
        tta,
    )
