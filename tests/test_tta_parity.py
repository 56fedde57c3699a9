"""With test-time augmentation on, the run's metrics, ``evaluate`` and ``predict`` agree.

They all score through the deployed model; this proves it on a real run: the
test-set probabilities stored by training are the ones ``predict`` gives for the
same images (through the API and through the CLI's CSV), and the stored accuracy
is the accuracy of those predictions.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mnist_classifier
from mnist_classifier.cli import main
from mnist_classifier.inference.predictor import load_predictor
from mnist_classifier.run_folder import RunFolder, read_metrics, read_predictions


@pytest.fixture(scope="module")
def tta_run(tmp_path_factory, small_mnist) -> Path:
    out = tmp_path_factory.mktemp("tta") / "run"
    run = mnist_classifier.train(
        out=out, dataset=small_mnist, model="cnn-tiny", epochs=1, tta=True, threads=2, log=None
    )
    assert run.config.tta
    return run.path


def test_metrics_and_predictor_agree_with_tta(tta_run: Path, small_mnist) -> None:
    probs, labels = read_predictions(tta_run)
    metrics = read_metrics(tta_run)
    images = small_mnist.test_images.numpy()
    predictor = load_predictor(tta_run, backend="torch", device="cpu")
    got = predictor.predict_mnist(images)
    np.testing.assert_allclose(got, probs, atol=1e-5)
    accuracy = float((got.argmax(1) == labels).mean())
    assert accuracy == pytest.approx(metrics["test"]["accuracy"], abs=1e-12)

    # TTA really is on: the plain network gives other probabilities.
    untouched = load_predictor(tta_run, backend="torch", device="cpu")
    untouched.model.tta = False  # type: ignore[attr-defined]
    plain = untouched.predict_mnist(images)
    assert np.abs(plain - probs).max() > 1e-3


def test_evaluate_agrees_with_metrics_with_tta(tta_run: Path, small_mnist, monkeypatch) -> None:
    monkeypatch.setattr(
        "mnist_classifier.evaluation.scoring.load_dataset", lambda data_dir=None: small_mnist
    )
    result = mnist_classifier.evaluate(tta_run)
    test = read_metrics(tta_run)["test"]
    assert result["accuracy"] == pytest.approx(test["accuracy"], abs=1e-12)
    assert result["loss"] == pytest.approx(test["loss"], rel=1e-5)
    assert result["confusion_matrix"] == test["confusion_matrix"]


def test_predict_csv_agrees_with_stored_predictions(
    tta_run: Path, small_mnist, tmp_path: Path
) -> None:
    probs, _ = read_predictions(tta_run)
    folder = tmp_path / "digits"
    folder.mkdir()
    chosen = [0, 1, 2, 3, 7, 11]
    for index in chosen:
        Image.fromarray(small_mnist.test_images[index].numpy()).save(folder / f"{index:04d}.png")
    out_csv = tmp_path / "out.csv"
    assert main(["predict", str(RunFolder(tta_run).best), str(folder), "--csv", str(out_csv)]) == 0
    rows = list(csv.DictReader(out_csv.open(newline="")))
    assert [Path(r["file"]).stem for r in rows] == [f"{i:04d}" for i in chosen]
    for row, index in zip(rows, chosen, strict=True):
        row_probs = np.array([float(row[f"p{d}"]) for d in range(10)])
        np.testing.assert_allclose(row_probs, probs[index], atol=1e-4)
        assert int(row["digit"]) == int(probs[index].argmax())
