"""Calibration: the expected calibration error, temperature scaling, the temperature in the
checkpoint, the deployed model and the ONNX export, training's calibrated metrics, the
reliability diagram, and calibrating an existing run post hoc."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mnist_classifier.cli import main
from mnist_classifier.errors import CheckpointError
from mnist_classifier.evaluation.calibration import (
    N_BINS,
    calibrate_checkpoint,
    expected_calibration_error,
    fit_temperature,
    probabilities_at,
    reliability_bins,
    temperature_nll,
)
from mnist_classifier.models.checkpoint import (
    build_checkpoint,
    checkpoint_temperature,
    load_checkpoint,
    save_checkpoint,
    set_calibration,
)
from mnist_classifier.models.deployed import DeployedModel, deployed_from_checkpoint
from mnist_classifier.models.registry import create_model


def _probs_with_confidence(conf: float, predicted: int) -> list[float]:
    rest = (1.0 - conf) / 9.0
    row = [rest] * 10
    row[predicted] = conf
    return row


# ------------------------------------------------------------------------------ ECE


def test_ece_of_constructed_predictions() -> None:
    # 4 at confidence 0.95, all right (gap 0.05); 6 at 0.55, 3 right (gap 0.05).
    probs = [_probs_with_confidence(0.95, 1)] * 4 + [_probs_with_confidence(0.55, 2)] * 6
    labels = [1] * 4 + [2, 2, 2, 0, 0, 0]
    assert expected_calibration_error(probs, labels) == pytest.approx(0.05, abs=1e-12)
    # The same 6, all wrong: (4 * 0.05 + 6 * 0.55) / 10.
    wrong = [1] * 4 + [0] * 6
    assert expected_calibration_error(probs, wrong) == pytest.approx(0.35, abs=1e-12)
    # Right as often as it is sure: 10 at 0.8, 8 right.
    fair = [_probs_with_confidence(0.8, 3)] * 10
    assert expected_calibration_error(fair, [3] * 8 + [0] * 2) == pytest.approx(0.0, abs=1e-12)
    assert expected_calibration_error(np.zeros((0, 10)), []) == 0.0


def test_ece_averages_per_bin_not_per_prediction() -> None:
    # Two confidences in one bin (0.9333, 1]: their mean confidence 0.97 against accuracy 0.5.
    probs = [_probs_with_confidence(0.94, 0), _probs_with_confidence(1.0, 0)]
    assert expected_calibration_error(probs, [0, 1]) == pytest.approx(0.47, abs=1e-12)


def test_reliability_bins_are_equal_width_with_right_closed_edges() -> None:
    edges = np.linspace(0.0, 1.0, 16)
    confidences = [0.1, edges[2], edges[2] + 1e-9, 0.5, 1.0]
    bins = reliability_bins([_probs_with_confidence(c, 0) for c in confidences], [0, 0, 0, 0, 1])
    assert len(bins["count"]) == N_BINS == 15
    assert sum(bins["count"]) == 5
    assert bins["count"][1] == 2  # 0.1 and 2/15 in (1/15, 2/15]
    assert bins["count"][2] == 1  # just above 2/15
    assert bins["count"][7] == 1  # 0.5 in (7/15, 8/15]
    assert bins["count"][14] == 1  # 1.0 in the last bin
    assert bins["confidence"][14] == pytest.approx(1.0) and bins["accuracy"][14] == 0.0
    assert bins["accuracy"][7] == 1.0
    assert bins["count"][3] == 0 and bins["accuracy"][3] == 0.0  # empty bins report 0


# ----------------------------------------------------------------- temperature scaling


def _overconfident(seed: int = 0, n: int = 4000, scale: float = 5.0):
    """Logits whose labels are drawn from softmax(z), returned as scale * z: over-confident."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 10, generator=gen) * 1.5
    labels = torch.multinomial(F.softmax(z, dim=1), 1, generator=gen).squeeze(1)
    return z * scale, labels


def test_fitted_temperature_undoes_overconfidence_and_lowers_nll() -> None:
    logits, labels = _overconfident()
    t = fit_temperature(logits, labels)
    assert 4.0 < t < 6.0
    assert temperature_nll(logits, labels, t) < 0.8 * temperature_nll(logits, labels, 1.0)
    before = probabilities_at(logits, 1.0).numpy()
    after = probabilities_at(logits, t).numpy()
    assert expected_calibration_error(after, labels.numpy()) < 0.5 * expected_calibration_error(
        before, labels.numpy()
    )
    assert np.array_equal(before.argmax(1), after.argmax(1))  # answers unchanged


def test_fitted_temperature_of_a_calibrated_model_stays_near_one() -> None:
    logits, labels = _overconfident(seed=1, scale=1.0)
    assert 0.85 < fit_temperature(logits, labels) < 1.15


def test_fit_on_log_probabilities_equals_fit_on_logits() -> None:
    logits, labels = _overconfident(seed=2)
    assert fit_temperature(F.log_softmax(logits, 1), labels) == pytest.approx(
        fit_temperature(logits, labels), rel=1e-6
    )


def _deployed(temperature: float = 1.0, tta: bool = False) -> DeployedModel:
    torch.manual_seed(0)
    net = create_model("cnn-tiny").eval()
    return DeployedModel(net, 0.13, 0.31, tta=tta, temperature=temperature).eval()


def _pixels(mnist, n: int = 32) -> torch.Tensor:
    return mnist.test_images[:n].to(torch.float32).unsqueeze(1)


def test_temperature_one_is_the_identity(mnist) -> None:
    model, pixels = _deployed(1.0), _pixels(mnist)
    with torch.inference_mode():
        plain = F.softmax(model.net(model._normalise(pixels)).float(), dim=1)
        assert torch.equal(model(pixels), plain)


@pytest.mark.parametrize("tta", [False, True])
def test_temperature_divides_the_logits_of_every_view(mnist, tta: bool) -> None:
    model, pixels = _deployed(2.5, tta=tta), _pixels(mnist)
    with torch.inference_mode():
        views = model.view_logits(pixels)
        assert views.shape == (5 if tta else 1, len(pixels), 10)
        expected = probabilities_at(views, 2.5)
        torch.testing.assert_close(model(pixels), expected, atol=1e-6, rtol=0)
        cold = _deployed(1.0, tta=tta)(pixels)
        assert torch.equal(model(pixels).argmax(1), cold.argmax(1))  # argmax unchanged
        assert not torch.allclose(model(pixels), cold, atol=1e-3)
        torch.testing.assert_close(
            model.log_probabilities(pixels).exp(), model(pixels), atol=1e-6, rtol=0
        )


# ------------------------------------------------------------------------- checkpoint


def _checkpoint() -> dict:
    torch.manual_seed(0)
    return build_checkpoint(
        create_model("cnn-tiny"),
        model_name="cnn-tiny",
        model_kwargs={},
        mean=0.13,
        std=0.31,
        config={"seed": 0},
    )


def test_a_checkpoint_without_calibration_means_temperature_one(tmp_path: Path) -> None:
    ckpt = _checkpoint()
    assert "calibration" not in ckpt  # what every checkpoint before calibration looks like
    path = save_checkpoint(tmp_path / "old.pt", ckpt)
    loaded = load_checkpoint(path)
    assert checkpoint_temperature(loaded) == 1.0
    assert float(deployed_from_checkpoint(loaded).temperature) == 1.0


def test_the_temperature_travels_in_the_checkpoint_loadable_weights_only(tmp_path: Path) -> None:
    ckpt = set_calibration(_checkpoint(), 1.75, fitted_on="validation", val_nll=0.1)
    path = save_checkpoint(tmp_path / "calibrated.pt", ckpt)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["calibration"] == {"temperature": 1.75, "fitted_on": "validation", "val_nll": 0.1}
    assert float(deployed_from_checkpoint(load_checkpoint(path)).temperature) == 1.75


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), "2", True])
def test_a_bad_temperature_is_refused_in_one_line(tmp_path: Path, bad: object) -> None:
    ckpt = _checkpoint()
    ckpt["calibration"] = {"temperature": bad}
    path = save_checkpoint(tmp_path / "bad.pt", ckpt)
    with pytest.raises(CheckpointError, match="calibration temperature") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    with pytest.raises(CheckpointError):
        set_calibration(_checkpoint(), -1.0)


# --------------------------------------------------------------------------- ONNX


def test_onnx_export_holds_the_temperature(tmp_path: Path, mnist) -> None:
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    from mnist_classifier.inference.onnx import export_onnx, read_metadata

    ckpt = set_calibration(_checkpoint(), 3.0)
    path = save_checkpoint(tmp_path / "hot.pt", ckpt)
    out = export_onnx(path, tmp_path / "hot.onnx")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = read_metadata(session.get_modelmeta().custom_metadata_map, str(out))
    assert meta["temperature"] == 3.0
    pixels = mnist.test_images[:100].numpy().astype(np.float32)[:, None]
    got = session.run(None, {session.get_inputs()[0].name: pixels})[0]
    deployed = deployed_from_checkpoint(load_checkpoint(path))
    with torch.inference_mode():
        expected = deployed(torch.from_numpy(pixels)).numpy()
        deployed.set_temperature(1.0)
        uncalibrated = deployed(torch.from_numpy(pixels)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert np.abs(got - uncalibrated).max() > 1e-3  # the temperature is in the graph


# ------------------------------------------------------------------ training, post hoc


@pytest.fixture(scope="module")
def tiny_data(mnist):
    return dataclasses.replace(
        mnist,
        train_images=mnist.train_images[:2500],
        train_labels=mnist.train_labels[:2500],
        test_images=mnist.test_images[:800],
        test_labels=mnist.test_labels[:800],
    )


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory, tiny_data) -> tuple[Path, list[str]]:
    import mnist_classifier

    lines: list[str] = []
    out = tmp_path_factory.mktemp("calibrated") / "run"
    mnist_classifier.train(
        out=out, model="mlp", epochs=1, threads=1, log=lines.append, dataset=tiny_data
    )
    return out, lines


def test_training_stores_the_temperature_and_the_ece(calibrated_run) -> None:
    run, lines = calibrated_run
    metrics = json.loads((run / "metrics.json").read_text())
    t = metrics["temperature"]
    assert t > 0 and math.isfinite(t)
    for split in ("test", "val"):
        block = metrics[split]
        assert 0.0 <= block["ece"] <= 1.0 and 0.0 <= block["ece_uncalibrated"] <= 1.0
        assert "loss_uncalibrated" in block
    # Fitted on validation: its NLL cannot be worse than at T = 1.
    assert metrics["val"]["loss"] <= metrics["val"]["loss_uncalibrated"] + 1e-9
    assert metrics["calibration"]["fitted_on"] == "validation"
    ckpt = load_checkpoint(run / "checkpoints" / "best.pt")
    assert ckpt["calibration"]["temperature"] == t
    assert ckpt["metrics"]["test"]["ece"] == metrics["test"]["ece"]
    summary = [line for line in lines if line.startswith("calibration: temperature")]
    assert len(summary) == 1 and "test" in summary[0] and "->" in summary[0]
    # The stored predictions are the calibrated probabilities and give the same accuracy.
    with np.load(run / "predictions.npz") as npz:
        probs, labels = npz["probs"], npz["labels"]
    assert (probs.argmax(1) == labels).mean() == pytest.approx(metrics["test"]["accuracy"])
    assert expected_calibration_error(probs, labels) == pytest.approx(
        metrics["test"]["ece"], abs=1e-6
    )


def test_report_has_the_reliability_diagram_next_to_the_mistakes(calibrated_run) -> None:
    from mnist_classifier.evaluation.report import write_report

    run, _ = calibrated_run
    page = write_report(run).read_text()
    assert (run / "plots" / "reliability.png").is_file()
    assert page.index("confident_mistakes") < page.index("Calibration (test)")
    assert "ECE, before -&gt; after" in page or "ECE, before -> after" in page


def test_calibrating_post_hoc_finds_training_temperature_on_validation_only(
    calibrated_run, tiny_data, tmp_path: Path
) -> None:
    import shutil

    run, _ = calibrated_run
    copy = tmp_path / "old-run"
    shutil.copytree(run, copy)
    trained = json.loads((run / "metrics.json").read_text())
    # Made as an old run: no temperature in the checkpoint.
    best = copy / "checkpoints" / "best.pt"
    ckpt = load_checkpoint(best)
    ckpt.pop("calibration")
    ckpt.pop("path")
    save_checkpoint(best, ckpt)
    # A different test set changes the reported ECE, never the temperature.
    noisy = dataclasses.replace(
        tiny_data, test_images=torch.flip(tiny_data.test_images, dims=[1]).contiguous()
    )
    result = calibrate_checkpoint(copy, dataset=noisy, device="cpu")
    assert result.temperature == pytest.approx(trained["temperature"], rel=1e-3)
    assert load_checkpoint(best)["calibration"]["temperature"] == result.temperature
    metrics = json.loads((copy / "metrics.json").read_text())
    assert metrics["temperature"] == result.temperature
    assert metrics["val"]["ece"] == pytest.approx(trained["val"]["ece"], abs=1e-4)
    assert metrics["val"]["accuracy"] == trained["val"]["accuracy"]
    assert "reliability" in metrics["calibration"]
    assert (copy / "checkpoints" / "best.pt") in result.written
    # Calibrating again gives the same temperature (it is refitted from T = 1).
    again = calibrate_checkpoint(copy, dataset=noisy, device="cpu")
    assert again.temperature == pytest.approx(result.temperature, rel=1e-9)


def test_cli_calibrate_prints_one_summary_line(calibrated_run, tmp_path: Path, capsys) -> None:
    import shutil

    run, _ = calibrated_run
    ckpt = load_checkpoint(run / "checkpoints" / "best.pt")
    ckpt.pop("path")
    lone = save_checkpoint(tmp_path / "lone.pt", ckpt)  # a checkpoint outside any run folder
    # The run was trained on an in-memory subset, so the shipped MNIST's seeded split is not
    # its validation split (calibrate_checkpoint takes dataset= for such runs); this only
    # checks the command's plumbing and output.
    assert main(["calibrate", str(lone), "--device", "cpu", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["written"] == [str(lone)] and shown["temperature"] > 0
    assert set(shown["test"]) == {"ece", "ece_uncalibrated", "loss"}
    assert main(["calibrate", str(tmp_path / "missing.pt")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.pt" in err
    shutil.rmtree(tmp_path)
