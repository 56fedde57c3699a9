import pytest
import torch

import mnist_classifier
from mnist_classifier.errors import CheckpointError
from mnist_classifier.models import create_model
from mnist_classifier.models.checkpoint import (
    build_checkpoint,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)


def _checkpoint(tmp_path, name="mlp-128"):
    model = create_model(name)
    ckpt = build_checkpoint(
        model, model_name=name, model_kwargs={}, mean=0.1307, std=0.3081, config={"model": name}
    )
    return save_checkpoint(tmp_path / "model.pt", ckpt), model


def test_round_trip_with_weights_only_load(tmp_path):
    path, model = _checkpoint(tmp_path)
    raw = torch.load(path, weights_only=True)
    assert raw["model"] == {"name": "mlp-128", "kwargs": {}}
    rebuilt = model_from_checkpoint(load_checkpoint(path))
    x = torch.randn(3, 1, 28, 28)
    assert torch.allclose(rebuilt(x), model.eval()(x))
    assert not list(tmp_path.glob(".*tmp")), "no temporary file is left behind"


def test_truncated_checkpoint_is_refused(tmp_path):
    path, _ = _checkpoint(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.pt: not a readable checkpoint"):
        load_checkpoint(path)


def test_empty_and_foreign_files_are_refused(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pt: .*empty"):
        load_checkpoint(empty)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match=r"notes\.pt: not a readable checkpoint"):
        load_checkpoint(text)
    bare = tmp_path / "bare.pt"
    torch.save(create_model("mlp-128").state_dict(), bare)  # a bare state_dict
    with pytest.raises(CheckpointError, match=r"bare\.pt: not an mnist-classifier checkpoint"):
        load_checkpoint(bare)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_weights_that_do_not_fit_the_declared_model(tmp_path):
    model = create_model("mlp-128")
    ckpt = build_checkpoint(
        model, model_name="mlp-128-64", model_kwargs={}, mean=0.1, std=0.3, config={}
    )
    path = save_checkpoint(tmp_path / "wrong.pt", ckpt)
    with pytest.raises(CheckpointError, match=r"wrong\.pt: weights do not fit the declared model"):
        model_from_checkpoint(load_checkpoint(path))


def test_unknown_declared_model(tmp_path):
    model = create_model("mlp-128")
    ckpt = build_checkpoint(model, model_name="resnet9", model_kwargs={}, mean=0, std=1, config={})
    path = save_checkpoint(tmp_path / "odd.pt", ckpt)
    with pytest.raises(CheckpointError, match=r"odd\.pt: declares a model that cannot be built"):
        model_from_checkpoint(load_checkpoint(path))


def test_evaluate_refuses_a_corrupt_checkpoint_in_one_line(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError) as info:
        mnist_classifier.evaluate(bad)
    assert "\n" not in str(info.value) and "bad.pt" in str(info.value)


# --------------------------------------------------------------------- every field checked


def _valid(name="mlp-128"):
    return build_checkpoint(
        create_model(name), model_name=name, model_kwargs={}, mean=0.1307, std=0.3081,
        config={"model": name}, metrics=None,
    )  # fmt: skip


def _set(ckpt, dotted, value):
    *parents, last = dotted.split(".")
    target = ckpt
    for key in parents:
        target = target[key]
    target[last] = value


MALFORMED = {
    "std zero": ("normalization.std", 0.0, "std must be a positive"),
    "std negative": ("normalization.std", -1.0, "std must be a positive"),
    "std nan": ("normalization.std", float("nan"), "std must be a positive"),
    "std a string": ("normalization.std", "0.3", "std must be a positive"),
    "mean missing": ("normalization.mean", None, "mean must be a finite"),
    "normalization None": ("normalization", None, "'normalization' must be a dict"),
    "model a string": ("model", "mlp-128", "'model' must be a dict"),
    "model name an int": ("model.name", 3, "model name must be a non-empty string"),
    "kwargs a list": ("model.kwargs", [1, 2], "model kwargs must be a dict"),
    "kwargs bad value": ("model.kwargs", {"hidden": "wide"}, "cannot be built"),
    "state_dict a list": ("state_dict", [1, 2], "'state_dict' must be a non-empty dict"),
    "state_dict empty": ("state_dict", {}, "'state_dict' must be a non-empty dict"),
    "state_dict value not a tensor": ("state_dict", {"w": 1.0}, "not a named tensor"),
    "format_version a string": ("format_version", "1", "format_version must be a whole number"),
    "format_version zero": ("format_version", 0, "format_version must be a whole number"),
    "format_version newer": ("format_version", 99, "newer than this package"),
    "class_names short": ("class_names", ["0", "1"], "class_names must be a list"),
    "config a list": ("config", [1], "'config' must be a dict"),
    "config tta a tensor": ("config.tta", torch.zeros(0), "config tta must be true or false"),
    "metrics a string": ("metrics", "great", "'metrics' must be a dict"),
    "package_version an int": ("package_version", 3, "package_version must be a string"),
}


@pytest.mark.parametrize("field,value,message", MALFORMED.values(), ids=list(MALFORMED))
def test_a_malformed_field_is_one_line(tmp_path, field, value, message):
    from mnist_classifier.models.deployed import deployed_from_checkpoint

    ckpt = _valid()
    _set(ckpt, field, value)
    path = save_checkpoint(tmp_path / "odd.pt", ckpt)
    with pytest.raises(CheckpointError, match=message) as info:
        deployed_from_checkpoint(load_checkpoint(path))
    assert "\n" not in str(info.value) and "odd.pt" in str(info.value)


def test_declared_arguments_are_checked_before_anything_is_allocated(tmp_path, monkeypatch):
    # A width of 2**16 would need about 150 GB of weights: refused from the meta build.
    ckpt = _valid("cnn-small")
    ckpt["model"]["kwargs"] = {"width": 2**16}
    path = save_checkpoint(tmp_path / "wide.pt", ckpt)
    with pytest.raises(CheckpointError, match=r"wide\.pt: weights do not fit .*wrong shape"):
        model_from_checkpoint(load_checkpoint(path))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused_at_load_time(tmp_path, bad):
    ckpt = _valid()
    first = next(iter(ckpt["state_dict"]))
    ckpt["state_dict"][first][0, 0] = bad
    path = save_checkpoint(tmp_path / "nan.pt", ckpt)
    with pytest.raises(CheckpointError, match=rf"nan\.pt: weight '{first}' holds NaN or infinite"):
        load_checkpoint(path)
    from mnist_classifier.inference.predictor import load_predictor

    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_predictor(path)


def test_predict_refuses_a_nan_checkpoint_in_one_line(tmp_path, capsys):
    from mnist_classifier.cli import main

    ckpt = _valid()
    for tensor in ckpt["state_dict"].values():
        tensor.fill_(float("nan"))
    path = save_checkpoint(tmp_path / "nan.pt", ckpt)
    image = tmp_path / "seven.png"
    from PIL import Image, ImageDraw

    picture = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(picture).line([(8, 6), (20, 6), (12, 22)], fill=255, width=3)
    picture.save(image)
    assert main(["predict", str(path), str(image)]) == 1
    out, err = capsys.readouterr()
    assert "nan%" not in out and "unsure" not in out
    assert err.count("\n") == 1 and "NaN or infinite" in err


def test_saving_on_a_full_disk_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
    import errno
    import os

    from mnist_classifier.errors import DiskFullError

    path = save_checkpoint(tmp_path / "model.pt", _valid())
    before = path.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DiskFullError, match=r"model\.pt: cannot be written, no space left"):
        save_checkpoint(path, _valid("mlp-128-64"))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"], "no temporary file left"
