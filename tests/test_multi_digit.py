"""Several digits in one image: refused by a single-digit read, read as a number by --multi."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from handwriting import VARIANTS, _photo, make_user_image, render_digit
from mnist_classifier.cli import main
from mnist_classifier.errors import IMAGE_ERROR_REASONS, ImageError, SeveralDigitsError
from mnist_classifier.inference.preprocess import preprocess
from mnist_classifier.inference.segment import split_row


def mnist_row(digits: list[np.ndarray], *, gap: int = 6, scale: int = 4) -> Image.Image:
    """MNIST test digits pasted side by side, dark ink on a white canvas, enlarged ``scale`` x."""
    # MNIST digits sit in 20x20 inside 28x28: cut to the ink so that ``gap`` is the real gap.
    crops = []
    for d in digits:
        a = np.asarray(d, dtype=np.uint8)
        cols = np.flatnonzero(a.max(axis=0) > 0)
        crops.append(a[:, cols[0] : cols[-1] + 1])
    width = sum(c.shape[1] for c in crops) + gap * (len(crops) - 1) + 24
    canvas = np.zeros((44, width), dtype=np.uint8)
    x = 12
    for c in crops:
        canvas[8:36, x : x + c.shape[1]] = np.maximum(canvas[8:36, x : x + c.shape[1]], c)
        x += c.shape[1] + gap
    image = Image.fromarray(255 - canvas)
    return image.resize((width * scale, 44 * scale), Image.Resampling.BICUBIC)


def drawn_row(digits: list[int], rng: np.random.Generator, *, photo: bool = False) -> Image.Image:
    """Hand-drawn digits (PIL pen strokes) side by side on white paper (or a photo of it)."""
    inks = [render_digit(d, rng, int(rng.integers(150, 180)), rng.uniform(12, 18)) for d in digits]
    height = max(i.shape[0] for i in inks)
    gaps = [int(rng.integers(25, 60)) for _ in inks]
    field = np.zeros((height + 160, sum(i.shape[1] for i in inks) + sum(gaps) + 120), np.float32)
    x = 60
    for ink, gap in zip(inks, gaps, strict=True):
        top = 80 + int(rng.integers(-10, 11))
        field[top : top + ink.shape[0], x : x + ink.shape[1]] = ink
        x += ink.shape[1] + gap
    if photo:
        return _photo(field, rng)
    return Image.fromarray(((1.0 - field) * 255 + 0.5).astype(np.uint8))


# ---------------------------------------------------------------------------- refusal


@pytest.mark.parametrize("count", [2, 3, 4, 5])
def test_a_row_of_mnist_digits_is_refused_with_the_count(mnist, count: int) -> None:
    digits = [mnist.test_images[i].numpy() for i in range(10, 10 + count)]
    with pytest.raises(SeveralDigitsError) as caught:
        preprocess(mnist_row(digits), name="zip.png")
    error = caught.value
    assert str(error) == (
        f"zip.png: several digits found ({count} side by side); "
        "use --multi to read them as a number"
    )
    assert error.reason == "several_digits" and isinstance(error, ImageError)
    assert len(error.boxes) == count
    lefts = [b[0] for b in error.boxes]
    assert lefts == sorted(lefts)


@pytest.mark.parametrize("photo", [False, True])
def test_a_drawn_number_is_refused(photo: bool) -> None:
    rng = np.random.default_rng(7)
    image = drawn_row([2, 0, 2, 6], rng, photo=photo)
    with pytest.raises(SeveralDigitsError, match=r"several digits found \(4 side by side\)"):
        preprocess(image, name="year.png")


def test_the_error_pickles_with_its_boxes() -> None:
    error = SeveralDigitsError("a.png: several digits found", boxes=((1, 2, 3, 4),), shape=(5, 6))
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.reason, copy.boxes, copy.shape) == (
        str(error),
        "several_digits",
        ((1, 2, 3, 4),),
        (5, 6),
    )
    assert "several_digits" in IMAGE_ERROR_REASONS


def _canvas() -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("L", (280, 280), 255)
    return image, ImageDraw.Draw(image)


def broken_five() -> Image.Image:
    image, draw = _canvas()
    draw.line([(105, 40), (190, 40)], fill=0, width=16)  # the top bar, not touching the rest
    draw.line([(100, 62), (92, 130)], fill=0, width=16)
    draw.arc((80, 110, 200, 240), -140, 150, fill=0, width=16)
    return image


def open_four() -> Image.Image:
    """A 4 in two strokes whose bar stops short of the upright (two side-by-side parts)."""
    image, draw = _canvas()
    draw.line([(110, 40), (90, 160), (160, 160)], fill=0, width=16)
    draw.line([(178, 40), (178, 240)], fill=0, width=16)
    return image


def serif_one() -> Image.Image:
    image, draw = _canvas()
    draw.line([(140, 40), (138, 240)], fill=0, width=16)
    draw.line([(112, 62), (132, 44)], fill=0, width=12)  # a flag, apart from the upright
    draw.line([(110, 250), (170, 250)], fill=0, width=10)  # a foot, apart too
    return image


def seven_with_bar() -> Image.Image:
    image, draw = _canvas()
    draw.line([(80, 40), (200, 40), (120, 240)], fill=0, width=16)
    draw.line([(110, 140), (185, 140)], fill=0, width=14)
    return image


def noisy_three() -> Image.Image:
    image, draw = _canvas()
    draw.arc((90, 30, 190, 130), -160, 100, fill=0, width=16)
    draw.arc((85, 120, 195, 240), -100, 160, fill=0, width=16)
    for x, y in [(30, 150), (250, 120), (60, 60), (230, 230)]:  # dots of noise
        draw.ellipse((x - 4, y - 4, x + 4, y + 4), fill=0)
    return image


@pytest.mark.parametrize("draw", [broken_five, open_four, serif_one, seven_with_bar, noisy_three])
def test_one_digit_in_several_strokes_is_not_refused(draw) -> None:
    result = preprocess(draw(), name="one.png")
    assert result.image.shape == (28, 28)
    assert len(split_row(_ink_mask(draw()))) == 1  # --multi reads it as one digit too


def _ink_mask(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L")) < 128


@pytest.mark.parametrize("variant", VARIANTS)
def test_single_user_digits_are_never_refused(variant: str) -> None:
    rng = np.random.default_rng(13)
    for digit in range(10):
        preprocess(make_user_image(digit, variant, rng), name=f"{variant}-{digit}")


# ---------------------------------------------------------------------------- reading


@pytest.fixture(scope="module")
def predictor(trained_run: Path):
    from mnist_classifier.inference.predictor import load_predictor

    return load_predictor(trained_run, device="cpu")


@pytest.fixture(scope="module")
def sure_digits(predictor, mnist) -> list[tuple[np.ndarray, int]]:
    """MNIST test digits the small model reads right and surely on their own."""
    images = mnist.test_images[:200].numpy()
    labels = mnist.test_labels[:200].numpy()
    probs = predictor.predict_mnist(images)
    sure = (probs.argmax(axis=1) == labels) & (probs.max(axis=1) > 0.95)
    return [(images[i], int(labels[i])) for i in np.flatnonzero(sure)]


def test_read_number_reads_rows_of_mnist_digits(predictor, sure_digits) -> None:
    right = total = 0
    for start, count in [(0, 2), (2, 3), (5, 4), (9, 5), (14, 5)]:
        chosen = sure_digits[start : start + count]
        reading = predictor.read_number(mnist_row([d for d, _ in chosen]), name="row.png")
        assert reading.ok, reading.error
        assert len(reading.digits) == count
        expected = "".join(str(label) for _, label in chosen)
        right += sum(a == b for a, b in zip(reading.text, expected, strict=True))
        total += count
        lefts = [p.box[0] for p in reading.digits if p.box is not None]
        assert len(lefts) == count and lefts == sorted(lefts)
    assert right >= total - 1, f"{right} of {total} digits read right"


def test_read_number_of_a_single_digit_and_of_nothing(predictor, sure_digits) -> None:
    digit, label = sure_digits[0]
    reading = predictor.read_number(mnist_row([digit]), name="one.png")
    assert reading.ok and reading.text == str(label) and reading.complete
    blank = predictor.read_number(Image.new("L", (200, 100), 255), name="blank.png")
    assert not blank.ok and blank.error == "blank.png: no digit found" and blank.text == ""
    assert blank.to_dict()["number"] is None


@pytest.fixture(scope="module")
def number_files(sure_digits, tmp_path_factory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("numbers")
    chosen = sure_digits[20:24]
    mnist_row([d for d, _ in chosen]).save(folder / "zip.png")
    return folder / "zip.png", "".join(str(label) for _, label in chosen)


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_plain_predict_refuses_a_row(trained_run: Path, number_files, capsys) -> None:
    path, _ = number_files
    code, out, err = run_cli(capsys, "predict", str(trained_run), str(path))
    assert code == 1 and out == ""
    assert err.splitlines()[0] == (
        f"error: {path}: several digits found (4 side by side); use --multi to read them as a number"
    )


def test_predict_multi_prints_the_number(trained_run: Path, number_files, capsys) -> None:
    path, expected = number_files
    code, out, err = run_cli(capsys, "predict", str(trained_run), str(path), "--multi")
    assert code == 0, err
    fields = out.split()
    assert fields[:3] == [str(path), expected, "confidences:"]
    assert len(fields) == 3 + len(expected) and all(f.endswith("%") for f in fields[3:])


def test_predict_multi_json_csv_and_min_confidence(
    trained_run: Path, number_files, tmp_path: Path, capsys
) -> None:
    path, expected = number_files
    code, out, _ = run_cli(capsys, "predict", str(trained_run), str(path), "--multi", "--json")
    assert code == 0
    record = json.loads(out)
    assert record["number"] == expected == record["text"] and record["error"] is None
    confidences = [d["confidence"] for d in record["digits"]]
    assert len(confidences) == len(expected)
    assert all(len(d["probabilities"]) == 10 and len(d["box"]) == 4 for d in record["digits"])

    # A threshold above the least sure digit: that one (and any as unsure) becomes "?".
    threshold = min(confidences) + 1e-6
    shown = "".join("?" if c < threshold else e for c, e in zip(confidences, expected, strict=True))
    out_csv = tmp_path / "numbers.csv"
    code, out, _ = run_cli(
        capsys,
        *("predict", str(trained_run), str(path), "--multi"),
        *("--min-confidence", f"{threshold:.9f}", "--csv", str(out_csv)),
    )
    assert code == 0 and "?" in shown
    assert out.split()[1] == shown
    rows = out_csv.read_text().splitlines()
    assert rows[0] == "file,number,digits,confidences,error"
    assert rows[1].startswith(f"{path},,{shown},")


def test_predict_multi_reports_bad_files_and_goes_on(
    trained_run: Path, number_files, tmp_path: Path, capsys
) -> None:
    path, expected = number_files
    blank = tmp_path / "blank.png"
    Image.new("L", (120, 80), 255).save(blank)
    code, out, err = run_cli(
        capsys, "predict", str(trained_run), str(blank), str(path), "--multi", "--top-k", "2"
    )
    assert code == 1
    assert out.split()[1] == expected
    assert f"error: {blank}: no digit found" in err
    assert "2 images: 1 read, 0 with unsure digits, 1 failed" in err


def test_predict_multi_with_explain_is_a_usage_error(
    trained_run: Path, number_files, tmp_path: Path, capsys
) -> None:
    path, _ = number_files
    code, _, err = run_cli(
        capsys, "predict", str(trained_run), str(path), "--multi", "--explain", str(tmp_path)
    )
    assert (
        code == 2 and err.strip() == "mnist-classifier: error: --explain does not work with --multi"
    )


def test_the_api_refuses_a_row_with_422(predictor, number_files) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from mnist_classifier.serving.app import create_app

    path, _ = number_files
    with TestClient(create_app(predictor), raise_server_exceptions=False) as client:
        response = client.post(
            "/api/predict", files={"file": ("zip.png", path.read_bytes(), "image/png")}
        )
    assert response.status_code == 422, response.text
    assert "several digits found (4 side by side)" in response.json()["error"]
