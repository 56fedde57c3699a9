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
