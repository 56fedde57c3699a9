"""The ensemble model: one module whose softmax is its members' mean probabilities, trained
in one run, saved in one checkpoint and exported to one ONNX file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mnist_classifier
from mnist_classifier.errors import ConfigError
from mnist_classifier.inference.onnx import export_onnx
from mnist_classifier.inference.predictor import load_predictor
from mnist_classifier.models.checkpoint import build_checkpoint, load_checkpoint, save_checkpoint
from mnist_classifier.models.deployed import deployed_from_checkpoint
from mnist_classifier.models.registry import create_model


def member_mean_probabilities(model, x: torch.Tensor) -> torch.Tensor:
    return torch.stack([F.softmax(m(x), dim=1) for m in model.members]).mean(0)


def test_softmax_of_the_output_is_the_members_mean_probabilities():
    torch.manual_seed(0)
    model = create_model("ensemble", model="cnn-small", members=3).eval()
    x = torch.randn(6, 1, 28, 28)
    with torch.no_grad():
        probs = F.softmax(model(x), dim=1)
        expected = member_mean_probabilities(model, x)
    assert torch.allclose(probs, expected, atol=1e-6)
    # The members differ (each has its own initialisation), so the average is not one of them.
    with torch.no_grad():
        first = F.softmax(model.members[0](x), dim=1)
    assert not torch.allclose(probs, first, atol=1e-3)


def test_training_output_is_the_mean_of_member_log_probabilities():
    torch.manual_seed(0)
    model = create_model("ensemble", members=2).train()
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    out = model(x)
    member_losses = [F.cross_entropy(m(x), y) for m in model.members]
    # mean member loss >= ensemble loss, and the gap is the (non-negative) agreement term
    loss = F.cross_entropy(out, y)
    assert loss.item() <= torch.stack(member_losses).mean().item() + 1e-6
    loss.backward()
    assert all(p.grad is not None for m in model.members for p in m.parameters())


def test_bad_ensemble_arguments_are_one_line_errors():
    with pytest.raises(ConfigError, match="other than 'ensemble'"):
        create_model("ensemble", model="ensemble")
    with pytest.raises(ConfigError, match="members must be a positive whole number"):
        create_model("ensemble", members=0)
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        create_model("ensemble", model="nope")


def test_one_checkpoint_and_one_onnx_file_match_pytorch(tmp_path: Path, mnist):
    torch.manual_seed(1)
    kwargs = {"model": "cnn-tiny", "members": 2, "width": 8}
    net = create_model("ensemble", **kwargs)
    ckpt = build_checkpoint(
        net, model_name="ensemble", model_kwargs=kwargs, mean=0.13, std=0.31, config={"tta": True}
    )
    path = save_checkpoint(tmp_path / "ensemble.pt", ckpt)
    deployed = deployed_from_checkpoint(load_checkpoint(path))
    images = mnist.test_images[:50].numpy()  # uint8 (50, 28, 28)
    with torch.inference_mode():
        torch_probs = deployed(torch.from_numpy(images.astype(np.float32)[:, None])).numpy()
    assert np.allclose(torch_probs.sum(1), 1.0, atol=1e-5)
    out = export_onnx(path, tmp_path / "ensemble.onnx")
    onnx_probs = load_predictor(out, backend="onnx").predict_mnist(images)
    assert np.allclose(onnx_probs, torch_probs, atol=1e-5)


def test_an_ensemble_trains_in_one_run(small_mnist, tmp_path: Path):
    run = mnist_classifier.train(
        out=tmp_path / "run", dataset=small_mnist, model="ensemble", epochs=1,
        model_kwargs={"model": "cnn-tiny", "members": 2, "width": 8}, batch_size=64,
        limit_train=640, schedule="onecycle", lr=1e-2, log=None, threads=2,
    )  # fmt: skip
    assert run.metrics["test"]["accuracy"] > 0.3  # chance is 0.1
    ckpt = load_checkpoint(run.best_checkpoint)
    assert ckpt["model"]["name"] == "ensemble"
    assert ckpt["model"]["kwargs"]["members"] == 2
