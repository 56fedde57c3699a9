"""Explanation pictures (``predict --explain``): drawn from a prediction and the crop box that
preprocessing recorded, without preprocessing again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mnist_classifier.inference.explain import EXPLAIN_SIDE, explain_picture, write_explanations
from mnist_classifier.inference.predictor import Prediction

PROBS = [0.01] * 7 + [0.91] + [0.01] * 2  # a confident 7


def prediction(name: str, box: tuple[int, int, int, int] | None) -> Prediction:
    seen = np.zeros((28, 28), np.uint8)
    seen[6:22, 12:16] = 255
    return Prediction(name, 7, 0.91, PROBS, seen, box=box)


def red_pixels(picture: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(picture.convert("RGB")).astype(int)
    return np.nonzero((a[..., 0] > 200) & (a[..., 1] < 80) & (a[..., 2] < 80))


def test_the_recorded_box_is_drawn_around_the_digit(tmp_path: Path) -> None:
    path = tmp_path / "page.png"
    Image.new("L", (400, 300), 235).save(path)
    picture = explain_picture(prediction(str(path), (100, 50, 200, 150)))
    assert picture.height > EXPLAIN_SIDE and picture.width > 2 * EXPLAIN_SIDE
    ys, xs = red_pixels(picture)
    # The page is drawn at 224/400 = 0.56 of its size, at (8, 26 + (224 - 168) // 2).
    scale, top = EXPLAIN_SIDE / 400, 26 + (EXPLAIN_SIDE - 168) // 2
    assert abs(xs.min() - (8 + 100 * scale - 2)) <= 1 and abs(xs.max() - (8 + 200 * scale + 1)) <= 1
    assert (
        abs(ys.min() - (top + 50 * scale - 2)) <= 1 and abs(ys.max() - (top + 150 * scale + 1)) <= 1
    )


def test_an_input_used_as_it_is_has_no_box(tmp_path: Path) -> None:
    source = np.zeros((28, 28), np.uint8)
    picture = explain_picture(prediction("<array 0>", None), source=source)
    assert len(red_pixels(picture)[0]) == 0
    right = np.asarray(picture.convert("L"))[26 : 26 + EXPLAIN_SIDE, 8 + EXPLAIN_SIDE + 12 :]
    seen = prediction("x", None).image
    np.testing.assert_array_equal(right[:EXPLAIN_SIDE:8, :EXPLAIN_SIDE:8], seen)


def test_one_file_per_success_and_clashing_names_numbered(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        Image.new("L", (60, 40), 255).save(tmp_path / folder / "d.png")
    results = [
        prediction(str(tmp_path / "a" / "d.png"), (10, 5, 30, 35)),
        Prediction.failed("broken.png", "broken.png: empty file"),
        prediction(str(tmp_path / "b" / "d.png"), None),
    ]
    out = tmp_path / "explain"
    assert write_explanations(out, results, k=2) == 2
    assert sorted(p.name for p in out.iterdir()) == ["d-2.png", "d.png"]
    with Image.open(out / "d.png") as picture:
        assert picture.format == "PNG"
