"""The built wheel, and the inference-only install from it in a fresh virtual environment.

The wheel is built from a copy of the source tree (without build isolation: the dev group
brings setuptools), its metadata checked, then installed with ``--no-deps`` into a new venv
(no system site packages) together with ``requirements/inference.txt`` only, as the README's
Install section says. That venv has neither torch nor matplotlib, yet predicts an image from
an ONNX file and serves ``/api/predict`` from it. pip reads from its cache after the first run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PIP_TIMEOUT = 900  # seconds; the first run downloads onnxruntime and FastAPI's dependencies


def clean_env() -> dict[str, str]:
    """The environment without PYTHONPATH, so the venv sees only what is installed in it."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run(argv: list[str], timeout: float = 120, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=clean_env(), **kwargs
    )


@pytest.fixture(scope="module")
def build_output(tmp_path_factory) -> tuple[Path, str]:
    """(the wheel, pip's verbose build log), built from a copy of the source tree."""
    tree = tmp_path_factory.mktemp("tree")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, tree / name)
    shutil.copytree(
        ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    out = tmp_path_factory.mktemp("wheel")
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation"]
    done = run([*pip_wheel, "-w", str(out), str(tree)], timeout=PIP_TIMEOUT)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    (wheel,) = out.glob("mnist_classifier-*.whl")
    return wheel, done.stdout + done.stderr


def test_the_build_has_no_deprecation_warnings(build_output) -> None:
    _, log = build_output
    for marker in ("SetuptoolsDeprecationWarning", "DEPRECATION", "is deprecated"):
        assert marker not in log, [line for line in log.splitlines() if marker in line]


def test_the_wheel_carries_both_licences_and_the_metadata(build_output) -> None:
    wheel, _ = build_output
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = archive.read(metadata_name).decode()
        data_licence = archive.read("mnist_classifier/data/files/LICENSE").decode()
    assert "License-Expression: MIT AND CC-BY-SA-3.0" in metadata
    assert "License-File: LICENSE" in metadata
    assert "License-File: src/mnist_classifier/data/files/LICENSE" in metadata
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "CC BY-SA 3.0" in data_licence and "LeCun" in data_licence and "Cortes" in data_licence
    assert "mnist_classifier/models/files/bundled.pt" in names  # the bundled model
    assert "mnist_classifier/models/files/bundled.onnx" in names
    assert "Requires-Dist: torch>=2.4" in metadata  # the default install trains
    assert "Provides-Extra: dev" not in metadata  # development tools are a dependency group
    for extra in ("serve", "onnx", "export", "all"):
        assert f"Provides-Extra: {extra}" in metadata
    assert re.search(r"^Project-URL: Source, https://", metadata, re.M)
    assert "Classifier: Programming Language :: Python :: 3.11" in metadata
    # The long description keeps its pictures on a package index: absolute URLs only.
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", metadata)
    assert images and all(url.startswith("https://") for url in images)


@pytest.fixture(scope="module")
def slim_venv(build_output, tmp_path_factory) -> Path:
    """A fresh venv with the wheel (no dependencies) and requirements/inference.txt."""
    wheel, _ = build_output
    venv = tmp_path_factory.mktemp("slim") / "venv"
    done = run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    assert done.returncode == 0, done.stderr
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    for args in (
        ["--no-deps", str(wheel)],
        ["-c", str(ROOT / "constraints.txt"), "-r", str(ROOT / "requirements" / "inference.txt")],
    ):
        done = run(pip + args, timeout=PIP_TIMEOUT)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return venv


@pytest.fixture(scope="module")
def onnx_model(trained_run: Path, tmp_path_factory) -> Path:
    from mnist_classifier.inference.onnx import export

    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export(trained_run, out, "onnx", log=lambda _line: None)
    return out


@pytest.fixture(scope="module")
def digit_photo(mnist, tmp_path_factory) -> tuple[Path, int]:
    """A test digit as dark ink on light paper, 168x168: it goes through preprocessing."""
    import numpy as np

    path = tmp_path_factory.mktemp("photo") / "digit.png"
    pixels = 255 - np.kron(mnist.test_images[0].numpy(), np.ones((6, 6), np.uint8))
    Image.fromarray(pixels).save(path)
    return path, int(mnist.test_labels[0])


def test_the_slim_venv_has_neither_torch_nor_matplotlib(slim_venv: Path) -> None:
    probe = (
        "import importlib.util as u; print([m for m in ('torch', 'matplotlib') if u.find_spec(m)])"
    )
    done = run([str(slim_venv / "bin" / "python"), "-c", probe])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_slim_install_predicts_from_an_onnx_file(
    slim_venv: Path, onnx_model: Path, digit_photo
) -> None:
    image, label = digit_photo
    cli = str(slim_venv / "bin" / "mnist-classifier")
    done = run([cli, "predict", str(onnx_model), str(image), "--backend", "onnx", "--json"])
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["error"] is None and record["digit"] == label


def test_the_slim_install_predicts_with_the_bundled_model_given_no_model(
    slim_venv: Path, digit_photo
) -> None:
    image, label = digit_photo
    cli = str(slim_venv / "bin" / "mnist-classifier")
    done = run([cli, "predict", str(image), "--json"])
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["digit"] == label and record["model"].startswith("bundled: ")


def test_the_slim_install_serves_predictions_from_an_onnx_file(
    slim_venv: Path, onnx_model: Path, digit_photo
) -> None:
    image, label = digit_photo
    cli = str(slim_venv / "bin" / "mnist-classifier")
    argv = [cli, "serve", str(onnx_model), "--backend", "onnx", "--port", "0", "--no-access-log"]
    server = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env()
    )
    try:
        url = None
        deadline = time.monotonic() + 120
        assert server.stdout is not None
        while url is None and time.monotonic() < deadline:
            line = server.stdout.readline()
            if not line:
                break
            found = re.search(r"open (http://\S+/)", line)
            url = found.group(1) if found else None
        assert url, f"the server did not start: {server.stderr.read() if server.stderr else ''}"
        request = urllib.request.Request(
            url + "api/predict", data=image.read_bytes(), headers={"Content-Type": "image/png"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        assert answer["digit"] == label, answer
        with urllib.request.urlopen(url + "api/model", timeout=60) as response:
            assert json.loads(response.read())["backend"] == "onnx"
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_the_slim_install_refuses_training_in_one_line(slim_venv: Path) -> None:
    cli = str(slim_venv / "bin" / "mnist-classifier")
    done = run([cli, "train", "--epochs", "1"])
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "needs torch" in done.stderr and "pip install mnist-classifier" in done.stderr
    assert run([cli, "completion", "bash"]).returncode == 0  # the rest of the CLI works
