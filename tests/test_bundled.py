"""The model shipped in the package, and ``--backend auto``.

The bundled files are whatever ``scripts/bundle_model.py`` last wrote: these tests check
their contract (loads with ``weights_only=True``, no training state, ONNX equal to PyTorch,
small, accurate enough), never a particular model's figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from mnist_classifier.bundled import BUNDLED_ONNX, BUNDLED_PT, MAX_BUNDLED_BYTES
from mnist_classifier.cli import main
from mnist_classifier.inference.predictor import OnnxPredictor, TorchPredictor, load_predictor
from serving_helpers import mnist_png, running_server

ROOT = Path(__file__).resolve().parents[1]
CHECK_IMAGES = 1000  # MNIST test digits for the accuracy and parity checks


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def photo(mnist, tmp_path_factory) -> tuple[Path, int]:
    """A test digit as dark ink on light paper, 168x168: it goes through preprocessing."""
    path = tmp_path_factory.mktemp("photo") / "digit.png"
    path.write_bytes(mnist_png(mnist.test_images[0].numpy(), scale=6))
    return path, int(mnist.test_labels[0])


def without_onnxruntime(monkeypatch) -> None:
    """Make ``import onnxruntime`` fail, as where the onnx extra is not installed."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)


# ------------------------------------------------------------------------- the shipped files


def test_the_bundled_checkpoint_loads_with_weights_only_and_holds_no_training_state() -> None:
    ckpt = torch.load(BUNDLED_PT, map_location="cpu", weights_only=True)
    assert ckpt["training"] is None
    assert ckpt["model"]["name"] and ckpt["normalization"]["std"] > 0
    assert isinstance(ckpt["config"], dict) and isinstance(ckpt["metrics"], dict)
    for path in (BUNDLED_PT, BUNDLED_ONNX):
        assert 0 < path.stat().st_size < MAX_BUNDLED_BYTES, path


def test_the_bundled_onnx_matches_the_bundled_checkpoint_and_reads_mnist(mnist) -> None:
    from mnist_classifier.models.checkpoint import load_checkpoint

    images = mnist.test_images[:CHECK_IMAGES].numpy()
    labels = mnist.test_labels[:CHECK_IMAGES].numpy()
    torch_probs = TorchPredictor(load_checkpoint(BUNDLED_PT), "cpu").predict_mnist(images)
    onnx_probs = OnnxPredictor(BUNDLED_ONNX, name="bundled", device="cpu").predict_mnist(images)
    assert float(np.abs(torch_probs - onnx_probs).max()) <= 1e-5
    assert float((torch_probs.argmax(1) == labels).mean()) >= 0.98


def test_the_package_data_lists_the_bundled_files() -> None:
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = data["tool"]["setuptools"]["package-data"]["mnist_classifier"]
    for path in (BUNDLED_PT, BUNDLED_ONNX):
        assert path.relative_to(ROOT / "src" / "mnist_classifier").as_posix() in listed
    tracked = subprocess.run(
        ["git", "ls-files", "--error-unmatch", str(BUNDLED_PT), str(BUNDLED_ONNX)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if tracked.returncode not in (0, 1) or "not a git repository" in tracked.stderr:
        pytest.skip("not a git checkout")
    assert tracked.returncode == 0, tracked.stderr  # committed, not ignored (*.onnx is)


# ------------------------------------------------------------------------- the library


def test_load_predictor_without_a_model_loads_the_bundled_onnx(photo) -> None:
    predictor = load_predictor()
    assert predictor.backend == "onnx" and predictor.checkpoint_path == str(BUNDLED_ONNX)
    assert predictor.label.startswith("bundled: ") and predictor.model_name in predictor.label
    assert predictor.info()["source"] == predictor.label
    path, label = photo
    [result] = predictor.predict(path)
    assert result.ok and result.digit == label


def test_the_bundled_model_runs_with_torch_when_asked_or_without_onnxruntime(
    monkeypatch, photo
) -> None:
    forced = load_predictor(backend="torch")
    assert isinstance(forced, TorchPredictor) and forced.checkpoint_path == str(BUNDLED_PT)
    assert forced.label == load_predictor().label  # the same model, by either file
    without_onnxruntime(monkeypatch)
    fallback = load_predictor()
    assert isinstance(fallback, TorchPredictor) and fallback.label.startswith("bundled: ")
    path, label = photo
    assert fallback.predict(path)[0].digit == label


def test_auto_runs_a_checkpoint_with_onnx_runtime_exported_in_memory(trained_run, mnist) -> None:
    auto = load_predictor(trained_run)
    torch_predictor = load_predictor(trained_run, backend="torch")
    assert isinstance(auto, OnnxPredictor) and isinstance(torch_predictor, TorchPredictor)
    assert auto.model_name == torch_predictor.model_name and auto.recipe == torch_predictor.recipe
    assert auto.label == torch_predictor.label and auto.mean == torch_predictor.mean
    images = mnist.test_images[:200].numpy()
    diff = np.abs(auto.predict_mnist(images) - torch_predictor.predict_mnist(images)).max()
    assert float(diff) <= 1e-5


def test_auto_falls_back_to_torch_without_onnxruntime(trained_run, monkeypatch) -> None:
    without_onnxruntime(monkeypatch)
    notices: list[str] = []
    predictor = load_predictor(trained_run, notice=notices.append)
    assert isinstance(predictor, TorchPredictor) and notices == []  # nothing to say


def test_auto_falls_back_to_torch_with_one_notice_when_the_export_disagrees(
    trained_run, monkeypatch
) -> None:
    import mnist_classifier.inference.onnx as onnx_module

    monkeypatch.setattr(onnx_module, "PARITY_TOLERANCE", -1.0)  # no export can match
    notices: list[str] = []
    predictor = load_predictor(trained_run, notice=notices.append)
    assert isinstance(predictor, TorchPredictor)
    (line,) = notices
    assert "disagree" in line and line.endswith("using the torch backend") and "\n" not in line
    with pytest.warns(UserWarning, match="using the torch backend"):
        load_predictor(trained_run)


def test_explicit_backends_still_decide(trained_run) -> None:
    assert load_predictor(trained_run, backend="torch").backend == "torch"
    assert load_predictor(BUNDLED_ONNX).backend == "onnx"  # auto on a .onnx file
    assert load_predictor(BUNDLED_ONNX, backend="onnx").backend == "onnx"


# ------------------------------------------------------------------------- the command line


def test_predict_without_a_model_reads_with_the_bundled_model(capsys, photo) -> None:
    path, label = photo
    code, out, err = run_cli(capsys, "predict", str(path), "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["digit"] == label and record["model"].startswith("bundled: ")
    code, out, _ = run_cli(capsys, "predict", str(path), str(path))  # two images, no model
    assert code == 0 and len(out.splitlines()) == 2


def test_predict_takes_the_model_first_or_by_flag(capsys, trained_run, photo) -> None:
    path, label = photo
    for argv in ([str(trained_run), str(path)], ["--model", str(trained_run), str(path)]):
        code, out, err = run_cli(capsys, "predict", *argv, "--json", "--backend", "torch")
        assert code == 0, err
        record = json.loads(out)
        assert record["digit"] == label and record["model"].startswith("cnn-small (")


def test_predict_model_arguments_that_go_wrong_are_one_line(capsys, tmp_path, photo) -> None:
    path, _ = photo
    for model in ("missing.pt", str(tmp_path / "no-such-run")):
        code, out, err = run_cli(capsys, "predict", model, str(path))
        assert code == 1 and out == ""
        assert err.strip() == f"mnist-classifier: error: {model}: checkpoint not found"
    code, _, err = run_cli(capsys, "predict", "model.onnx")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "give the images" in err


def test_models_names_the_bundled_model(capsys) -> None:
    code, out, _ = run_cli(capsys, "models", "--json")
    assert code == 0
    marked = [row for row in json.loads(out) if row["bundled"]]
    assert len(marked) == 1 and marked[0]["bundled"].startswith("bundled: ")
    code, out, _ = run_cli(capsys, "models")
    assert out.strip().splitlines()[-1].startswith("used when no model is given: bundled: ")


def test_serve_without_a_model_serves_the_bundled_model(photo) -> None:
    path, label = photo
    with running_server(None, "--no-access-log") as (url, lines):
        with urllib.request.urlopen(url + "api/model", timeout=60) as response:
            info = json.load(response)
        assert info["source"].startswith("bundled: ") and info["backend"] == "onnx"
        request = urllib.request.Request(
            url + "api/predict", data=path.read_bytes(), headers={"Content-Type": "image/png"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            assert json.load(response)["digit"] == label
    assert any(line.startswith("serving bundled: ") for line in lines), lines


def test_serve_refuses_two_models(capsys, trained_run) -> None:
    code, _, err = run_cli(capsys, "serve", str(trained_run), "--model", str(trained_run))
    assert code == 2 and "not both" in err


# ------------------------------------------------------------------------- the bundling script


@pytest.mark.slow
def test_the_bundle_script_strips_training_state_and_writes_both_files(
    trained_run, tmp_path
) -> None:
    from mnist_classifier.models.checkpoint import load_checkpoint, save_checkpoint

    source = load_checkpoint(trained_run / "checkpoints" / "last.pt")
    assert source["training"]  # the resume state the bundle must drop
    source["temperature"] = 1.5  # an inference field the format may carry: kept as it is
    source.pop("path")
    save_checkpoint(tmp_path / "in.pt", source)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bundle_model.py"), str(tmp_path / "in.pt"),
         "--min-accuracy", "0.5", "--check-images", "300", "--out-dir", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    bundled = torch.load(out / BUNDLED_PT.name, map_location="cpu", weights_only=True)
    assert bundled["training"] is None and bundled["temperature"] == 1.5
    assert bundled["config"] == source["config"] and bundled["metrics"] == source["metrics"]
    assert (out / BUNDLED_ONNX.name).stat().st_size < MAX_BUNDLED_BYTES
    assert load_predictor(out / BUNDLED_ONNX.name).backend == "onnx"
    refused = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bundle_model.py"), str(tmp_path / "in.pt"),
         "--min-accuracy", "1.01", "--check-images", "100", "--out-dir", str(tmp_path / "no")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert refused.returncode == 1 and "below" in refused.stderr
    assert not (tmp_path / "no").exists()  # nothing written when a check fails
