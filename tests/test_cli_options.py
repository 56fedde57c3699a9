"""Shared CLI options: choices come from the library, one meaning per flag, one exit code
for a missing optional extra."""

from __future__ import annotations

import builtins
from pathlib import Path

import pytest

from mnist_classifier.cli import build_parser, main
from mnist_classifier.config import AUGMENTS, OPTIMIZERS, SCHEDULES
from mnist_classifier.inference.onnx import FORMATS
from mnist_classifier.inference.predictor import BACKENDS
from mnist_classifier.runtime import DEVICE_CHOICES
from mnist_classifier.training.recipes import RECIPES


def _choices(command: str, flag: str) -> tuple[str, ...] | None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]  # type: ignore[index]
    action = next(a for a in sub._actions if flag in a.option_strings)
    return tuple(action.choices) if action.choices is not None else None


@pytest.mark.parametrize(
    ("command", "flag", "expected"),
    [
        ("train", "--optimizer", OPTIMIZERS),
        ("train", "--schedule", SCHEDULES),
        ("train", "--augment", AUGMENTS),
        ("train", "--recipe", tuple(RECIPES)),
        ("predict", "--backend", BACKENDS),
        ("serve", "--backend", BACKENDS),
        ("export", "--format", FORMATS),
    ],
)
def test_enumerations_take_their_choices_from_the_library(command, flag, expected) -> None:
    assert _choices(command, flag) == tuple(expected)


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "serve"])
def test_device_and_threads_mean_the_same_everywhere(command, capsys) -> None:
    args = [command] if command == "train" else [command, "somewhere"]
    assert main([*args, "--device", "gpu"]) == 2
    err = capsys.readouterr().err
    assert "device 'gpu' is not one of " + ", ".join(DEVICE_CHOICES) in err
    assert main([*args, "--threads", "0"]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err


@pytest.fixture
def without_onnxruntime(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, globals=None, locals=None, fromlist=(), level=0):
        top = name.split(".")[0]
        if level == 0 and top in ("onnx", "onnxruntime"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, globals, locals, fromlist, level)

    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_a_missing_onnx_extra_exits_1_with_one_line_in_every_command(
    trained_run: Path, tmp_path: Path, without_onnxruntime, capsys
) -> None:
    digit = Path(__file__).parent / "data" / "three.png"
    image = digit if digit.exists() else tmp_path / "blank.png"
    if not digit.exists():
        from PIL import Image

        Image.new("L", (28, 28), 0).save(image)
    onnx_file = tmp_path / "given.onnx"
    onnx_file.write_bytes(b"not read: onnxruntime is missing first")
    runs = [  # writing ONNX needs the export extra, running a .onnx file the onnx extra
        (["export", str(trained_run), "--out", str(tmp_path / "m.onnx")], "export"),
        (["predict", str(trained_run), str(image), "--backend", "onnx"], "export"),
        (["predict", str(onnx_file), str(image), "--backend", "onnx"], "onnx"),
    ]
    for argv, extra in runs:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert f"pip install 'mnist-classifier[{extra}]'" in err, err
    assert not (tmp_path / "m.onnx").exists()
