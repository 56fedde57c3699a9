"""The Predictor: every kind of input, the checkpoint's normalisation, bad inputs, batching,
and accuracy on synthetic user-made digits (photos, drawings, scans)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mnist_classifier.errors import CheckpointError, ConfigError, ImageError
from mnist_classifier.inference.predictor import Prediction, Predictor, load_predictor
from mnist_classifier.models.checkpoint import (
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)


def predict_log_probs(
    model, images, mean: float, std: float, temperature: float = 1.0
) -> torch.Tensor:
    """The normalisation, temperature and softmax written out by hand, independent of the
    package's code."""
    x = (images.to(torch.float32).unsqueeze(1) / 255.0 - mean) / std
    with torch.inference_mode():
        return torch.log_softmax(model(x).float() / temperature, dim=1)


def stored_temperature(ckpt: dict) -> float:
    """The calibration temperature training stored in the checkpoint."""
    return float(ckpt["calibration"]["temperature"])


@pytest.fixture(scope="module")
def predictor(trained_run: Path) -> Predictor:
    return load_predictor(trained_run, backend="torch", device="cpu")


@pytest.fixture(scope="module")
def reference(trained_run: Path, mnist):
    """What the training code computes for the first 100 test images: (images, probabilities)."""
    ckpt = load_checkpoint(trained_run / "checkpoints" / "best.pt")
    model = model_from_checkpoint(ckpt)
    norm = ckpt["normalization"]
    images = mnist.test_images[:100]
    t = stored_temperature(ckpt)
    probs = predict_log_probs(model, images, norm["mean"], norm["std"], t).exp().numpy()
    return images.numpy(), probs


def save_png(path: Path, image: np.ndarray) -> Path:
    Image.fromarray(image).save(path)
    return path


def test_info_comes_from_the_checkpoint(predictor: Predictor, trained_run: Path) -> None:
    ckpt = load_checkpoint(trained_run / "checkpoints" / "best.pt")
    info = predictor.info()
    assert info["model"] == "cnn-small" == predictor.model_name
    assert info["backend"] == "torch"
    assert info["parameters"] == 29178
    assert info["normalization"] == {
        "mean": ckpt["normalization"]["mean"],
        "std": ckpt["normalization"]["std"],
    }
    assert info["metrics"]["test_accuracy"] == ckpt["metrics"]["test"]["accuracy"] > 0.9
    assert info["package_version"] == ckpt["package_version"]
    assert info["class_names"] == [str(d) for d in range(10)]
    assert predictor.checkpoint_path.endswith("best.pt")


def test_predict_mnist_matches_the_training_code(predictor: Predictor, reference) -> None:
    images, expected = reference
    got = predictor.predict_mnist(images)
    assert got.shape == (100, 10)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)
    # batching does not change anything
    np.testing.assert_allclose(predictor.predict_mnist(images, batch_size=7), got, atol=1e-6)


def test_predict_mnist_rejects_wrong_arrays(predictor: Predictor) -> None:
    with pytest.raises(ImageError, match=r"uint8 images of shape \(N, 28, 28\)"):
        predictor.predict_mnist(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ImageError):
        predictor.predict_mnist(np.zeros((2, 32, 32), np.uint8))
    assert predictor.predict_mnist(np.zeros((0, 28, 28), np.uint8)).shape == (0, 10)


def test_normalisation_is_taken_from_the_checkpoint(
    trained_run: Path, tmp_path: Path, reference
) -> None:
    """A checkpoint with other mean/std gives the predictions those values imply."""
    ckpt = load_checkpoint(trained_run / "checkpoints" / "best.pt")
    ckpt.pop("path")
    ckpt["normalization"] = {"mean": 0.5, "std": 0.25}
    path = save_checkpoint(tmp_path / "other.pt", ckpt)
    other = load_predictor(path, device="cpu")
    assert (other.mean, other.std) == (0.5, 0.25)
    images, usual = reference
    model = model_from_checkpoint(ckpt)
    t = stored_temperature(ckpt)
    expected = predict_log_probs(model, torch.from_numpy(images), 0.5, 0.25, t).exp().numpy()
    got = other.predict_mnist(images)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.abs(got - usual).max() > 1e-2  # the normalisation really changed the result


def test_every_kind_of_input(predictor: Predictor, reference, tmp_path: Path) -> None:
    images, expected = reference
    digit0 = int(expected[0].argmax())
    png = save_png(tmp_path / "d0.png", images[0])
    inputs = [
        str(png),
        png,
        Image.open(png),
        Image.fromarray(images[0]),
        png.read_bytes(),
        io.BytesIO(png.read_bytes()),
        images[0],
        torch.from_numpy(images[0]),
        torch.from_numpy(images[0]).float() / 255.0,
        torch.from_numpy(images[0])[None],
    ]
    results = predictor.predict(inputs)
    assert len(results) == len(inputs)
    for p in results:
        assert p.error is None, p.error
        assert p.digit == digit0
        assert p.image is not None and p.image.shape == (28, 28) and p.image.dtype == np.uint8
        np.testing.assert_array_equal(p.image, images[0])  # MNIST-style: used as it is
        np.testing.assert_allclose(p.probabilities, expected[0], atol=1e-5)
    names = [p.name for p in results]
    assert names[:2] == [str(png), str(png)]
    assert names[2] == str(png)  # a PIL image opened from a file keeps its file name
    assert names[3:] == [
        "<image 3>",
        "<bytes 4>",
        "<file 5>",
        "<array 6>",
        "<tensor 7>",
        "<tensor 8>",
        "<tensor 9>",
    ]


def test_batches_of_images_in_one_array_or_tensor(predictor: Predictor, reference) -> None:
    images, expected = reference
    for batch in (images[:5], torch.from_numpy(images[:5]), torch.from_numpy(images[:5])[:, None]):
        results = predictor.predict(batch)
        assert [p.digit for p in results] == list(expected[:5].argmax(1))
        np.testing.assert_allclose([p.probabilities for p in results], expected[:5], atol=1e-5)
    names = [p.name for p in predictor.predict([images[:2], images[2]])]
    assert names == ["<array 0>", "<array 1>", "<array 2>"]


def test_mnist_pngs_are_classified_like_the_tensors(
    predictor: Predictor, reference, tmp_path: Path
) -> None:
    images, expected = reference
    paths = [save_png(tmp_path / f"{i:03d}.png", im) for i, im in enumerate(images)]
    results = predictor.predict(paths)
    assert [p.digit for p in results] == [int(d) for d in expected.argmax(1)]
    np.testing.assert_allclose([p.probabilities for p in results], expected, atol=1e-5)


def test_other_images_go_through_preprocessing(predictor: Predictor, reference) -> None:
    images, expected = reference
    # Dark ink on light paper, 28x28: not MNIST-style, so it is inverted and re-centred.
    dark_on_light = 255 - images[:20]
    results = predictor.predict(list(dark_on_light))
    for p, original in zip(results, images[:20], strict=True):
        assert p.error is None
        assert p.image is not None
        assert p.image[0].max() < 60 and p.image.max() > 200  # white ink on black again
        assert not np.array_equal(p.image, 255 - original)
    agree = np.mean([p.digit == d for p, d in zip(results, expected[:20].argmax(1), strict=True)])
    assert agree >= 0.85
    # A large drawing: scaled down to the MNIST box.
    big = np.kron(images[0], np.ones((10, 10), np.uint8))  # (280, 280)
    (p,) = predictor.predict(big)
    assert p.digit == int(expected[0].argmax())


def make_bad_files(folder: Path, good: np.ndarray) -> dict[str, str]:
    """File name -> the error text it must produce."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.png").write_text("this is not an image\n")
    buffer = io.BytesIO()
    Image.fromarray(np.kron(good, np.ones((8, 8), np.uint8))).save(buffer, format="PNG")
    data = buffer.getvalue()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    (folder / "empty.png").write_bytes(b"")
    Image.new("L", (200, 150), 255).save(folder / "blank.png")
    Image.new("1", (8000, 6000), 1).save(folder / "huge.png")
    return {
        "notes.png": "not an image",
        "truncated.png": "truncated",
        "empty.png": "empty file",
        "blank.png": "no digit found",
        "huge.png": "too many pixels",
    }


def test_bad_inputs_give_errors_and_the_others_still_go_through(
    predictor: Predictor, reference, tmp_path: Path
) -> None:
    images, expected = reference
    bad = make_bad_files(tmp_path / "bad", images[0])
    good = [save_png(tmp_path / f"good{i}.png", images[i]) for i in range(3)]
    inputs: list[object] = [good[0]]
    for name in bad:
        inputs.append(tmp_path / "bad" / name)
    inputs += [
        good[1],
        tmp_path / "missing.png",
        tmp_path / "bad",
        np.zeros((28, 28), np.uint8),
        object(),
        good[2],
    ]
    results = predictor.predict(inputs, batch_size=4)
    assert len(results) == len(inputs)
    by_name = {Path(p.name).name: p for p in results}
    for name, text in bad.items():
        p = by_name[name]
        assert p.digit is None and p.probabilities == [] and p.image is None
        assert p.confidence == 0.0 and p.top_k(3) == []
        assert p.error is not None and text in p.error and name in p.error
        assert "\n" not in p.error
    assert "no such file" in (by_name["missing.png"].error or "")
    assert "directory" in (by_name["bad"].error or "")
    assert "no digit found" in (results[-3].error or "")  # an all-black 28x28 array
    assert "cannot read an image from a object" in (results[-2].error or "")
    for i, p in zip((0, 1, 2), (results[0], by_name["good1.png"], results[-1]), strict=True):
        assert p.error is None
        assert p.digit == int(expected[i].argmax())


@pytest.mark.parametrize("error", [ValueError("bad huffman table"), OSError("broken data")])
def test_an_unforeseen_decoder_error_fails_only_its_input(
    predictor: Predictor, reference, tmp_path: Path, monkeypatch, error: Exception
) -> None:
    from mnist_classifier.inference import image_io

    images, expected = reference
    paths = [save_png(tmp_path / f"{name}.png", images[i]) for i, name in enumerate("abc")]
    decode = image_io._decode

    def flaky(fp, label: str, *rest):
        if label.endswith("b.png"):
            raise error
        return decode(fp, label, *rest)

    monkeypatch.setattr(image_io, "_decode", flaky)
    a, b, c = predictor.predict(paths)
    assert b.error == f"{paths[1]}: cannot be processed ({type(error).__name__}: {error})"
    assert b.digit is None and b.image is None
    assert (a.error, c.error) == (None, None)
    assert [a.digit, c.digit] == [int(expected[0].argmax()), int(expected[2].argmax())]


def test_a_preprocessed_input_keeps_where_its_digit_was_found(
    predictor: Predictor, reference
) -> None:
    from mnist_classifier.inference.preprocess import preprocess

    page = np.full((240, 320), 230, np.uint8)
    page[60:180, 150:170] = 20  # a dark '1' on light paper
    (p,) = predictor.predict(page)
    assert p.box == preprocess(page).box
    (q,) = predictor.predict(reference[0][0])
    assert q.box is None  # an MNIST-style 28x28 is used as it is: nothing was cut out


def test_min_confidence_makes_unsure(predictor: Predictor, reference) -> None:
    images, _ = reference
    plain = predictor.predict(images[:40])
    confidences = sorted(p.confidence for p in plain)
    threshold = (confidences[10] + confidences[11]) / 2
    assert confidences[10] < threshold < confidences[11]
    gated = predictor.predict(images[:40], min_confidence=threshold)
    for p, q in zip(plain, gated, strict=True):
        assert q.confidence == p.confidence and q.error is None
        assert q.digit == (p.digit if p.confidence >= threshold else None)
    assert sum(q.digit is None for q in gated) == 11
    with pytest.raises(ConfigError, match="min_confidence"):
        predictor.predict(images[:1], min_confidence=1.5)


def test_top_k_and_to_dict() -> None:
    probs = [0.05, 0.6, 0.0, 0.3, 0.05, 0.0, 0.0, 0.0, 0.0, 0.0]
    p = Prediction("x", 1, 0.6, probs, np.zeros((28, 28), np.uint8))
    assert p.top_k(3) == [(1, 0.6), (3, 0.3), (0, 0.05)]  # ties: the smaller digit first
    assert len(p.top_k(10)) == 10 and p.top_k(0) == []
    assert p.to_dict() == {
        "name": "x",
        "digit": 1,
        "confidence": 0.6,
        "probabilities": probs,
        "error": None,
    }


def test_loading_errors_are_one_line(trained_run: Path, tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"^unknown backend 'tensorflow'; choose one of: auto, torch, onnx$"
    ):
        load_predictor(trained_run, backend="tensorflow")
    with pytest.raises(CheckpointError, match=r"run folder has no checkpoints/best\.pt"):
        load_predictor(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(ConfigError, match="backend 'onnx'"):
        load_predictor(tmp_path / "model.onnx", backend="torch")
    with pytest.raises(ConfigError, match="device"):
        load_predictor(trained_run, device="tpu")


# ---------------------------------------------------------------------------- user-made digits


def plain_resize(image: Image.Image) -> np.ndarray:
    """The naive way: greyscale and squash to 28x28 (no inversion, cropping or centring)."""
    return np.asarray(image.convert("L").resize((28, 28), Image.Resampling.BILINEAR), np.uint8)


@pytest.mark.slow
def test_accuracy_on_user_made_digits(predictor: Predictor) -> None:
    """Synthetic photos, drawings and scans of digits (tests/handwriting.py), every variant.

    Preprocessing must make them readable: far more accurate than squashing the
    image to 28x28, which is what a model trained on MNIST gets without it.
    """
    import handwriting  # tests/handwriting.py

    images, labels, variants = [], [], []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        for variant in handwriting.VARIANTS:
            for digit in range(10):
                images.append(handwriting.make_user_image(digit, variant, rng))
                labels.append(digit)
                variants.append(variant)
    labels_a, variants_a = np.array(labels), np.array(variants)
    results = predictor.predict(images)
    assert all(p.error is None for p in results), [p.error for p in results if p.error]
    correct = np.array([p.digit for p in results]) == labels_a
    accuracy = float(correct.mean())
    plain = predictor.predict_mnist(np.stack([plain_resize(im) for im in images]))
    plain_correct = plain.argmax(1) == labels_a
    plain_accuracy = float(plain_correct.mean())
    print(f"\nuser-made digits, {len(images)} images: preprocessed / plain resize")
    for variant in handwriting.VARIANTS:
        mask = variants_a == variant
        print(
            f"  {variant:<16} {100 * correct[mask].mean():6.2f}%  {100 * plain_correct[mask].mean():6.2f}%"
        )
    print(f"  {'all':<16} {100 * accuracy:6.2f}%  {100 * plain_accuracy:6.2f}%")
    assert accuracy >= 0.85
    assert accuracy >= plain_accuracy + 0.5
