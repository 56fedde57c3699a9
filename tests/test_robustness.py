"""The robustness suite (benchmarks/robustness.py): its variants and a tiny end-to-end run."""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from mnist_classifier.data.sources import load_dataset

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str) -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rv() -> ModuleType:
    return _load("robustness_variants")


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_dataset()
    return data.test_images.numpy()[:6], data.test_labels.numpy()[:6]


def _grey(image) -> np.ndarray:
    if isinstance(image, bytes):
        return np.asarray(Image.open(io.BytesIO(image)).convert("L"))
    return image


@pytest.mark.parametrize(
    "name",
    ["MNIST", "binarised", "16x16", "32x32", "box-filled", "thick", "thin", "photo", "small",
     "rotated", "drawn"],
)  # fmt: skip
def test_each_variant_gives_valid_images_deterministic_by_seed(rv, digits, name) -> None:
    images = rv.build(name, digits[0], seed=3)
    again = rv.build(name, digits[0], seed=3)
    other = rv.build(name, digits[0], seed=4)
    assert len(images) == 6
    for a, b in zip(images, again, strict=True):
        assert type(a) is type(b)
        assert np.array_equal(_grey(a), _grey(b))
    for image in images:
        grey = _grey(image)
        assert grey.dtype == np.uint8 and grey.ndim == 2
        assert grey.max() > grey.min()  # not blank
        assert rv.plain_resize(image).shape == (28, 28)
        read = rv.ours(image)
        assert read is not None and read.shape == (28, 28) and read.dtype == np.uint8
    if name in {"binarised", "16x16", "32x32", "thick", "thin", "photo", "small", "rotated",
                "box-filled"}:  # fmt: skip
        border = np.concatenate([_grey(images[0])[0], _grey(images[0])[-1]])
        assert border.mean() > 127  # user-style: dark ink on light paper
    if name in {"binarised", "16x16", "32x32"}:
        assert set(np.unique(_grey(images[0]))) <= {0, 255}
    if name not in {"MNIST", "16x16", "32x32", "thin", "box-filled"}:
        # Random choices (threshold, place, angle, lighting) differ between seeds.
        assert any(
            not np.array_equal(_grey(a), _grey(b)) for a, b in zip(images, other, strict=True)
        )


def test_variants_do_what_they_say(rv, digits) -> None:
    d = digits[0][:3]
    ink = lambda im: (255 - _grey(im) > 127).mean()  # noqa: E731
    plain_ink = np.mean([ink(im) for im in rv.build("binarised", d, 0)])
    thick_ink = np.mean([ink(im) for im in rv.build("thick", d, 0)])
    thin_ink = np.mean([ink(im) for im in rv.build("thin", d, 0)])
    assert thick_ink > 1.5 * plain_ink and thin_ink < plain_ink
    for im in rv.build("box-filled", d, 0):  # ink (even faint) touches all four edges
        g = 255 - _grey(im) > 20
        assert g[0].any() and g[-1].any() and g[:, 0].any() and g[:, -1].any()
    for im in rv.build("small", d, 0):
        g = 255 - _grey(im) > 127
        ys, xs = np.nonzero(g)
        assert g.shape == (400, 400) and np.ptp(ys) < 100
        assert max(abs(ys.mean() - 200), abs(xs.mean() - 200)) > 30  # off-centre
    photo = rv.build("photo", d, 0)[0]
    assert photo[:2] == b"\xff\xd8"  # a JPEG
    drawn = rv.build("drawn", d, 0)[0]
    assert drawn[:8] == b"\x89PNG\r\n\x1a\n"


def test_plain_resize_inverts_light_paper_only(rv) -> None:
    paper = np.full((100, 100), 255, dtype=np.uint8)
    paper[30:70, 45:55] = 0
    out = rv.plain_resize(paper)
    assert out[0, 0] == 0 and out[14, 14] > 200
    night = 255 - paper
    assert np.array_equal(rv.plain_resize(night), out)


def test_calibration_error_counts_only_images_where_a_digit_was_found() -> None:
    bench = _load("robustness")
    probs = np.zeros((3, 10))
    probs[0, 1] = probs[1, 2] = 0.95
    probs[0, 0] = probs[1, 0] = 0.05
    labels = np.array([1, 3, 4])
    found = np.array([True, True, False])  # the third image had no digit: not a confidence
    predicted = np.where(found, probs.argmax(1), -1)
    scores = bench.Scores(predicted, np.where(found, probs.max(1), 0.0), labels, probs, found)
    # Both found images sit in the 0.95 bin, one of them right: gap |0.5 - 0.95|.
    assert scores.ece == pytest.approx(0.45)
    assert scores.accuracy == pytest.approx(1 / 3)


def test_tiny_end_to_end_run(trained_run, capsys) -> None:
    bench = _load("robustness")
    bench.main(["--models", str(trained_run), "--limit", "3", "--variants", "MNIST",
                "binarised", "drawn"])  # fmt: skip
    out = capsys.readouterr().out
    assert "| model | reading | MNIST | binarised | drawn | suite mean |" in out
    rows = [line for line in out.splitlines() if "| plain resize |" in line or "| ours |" in line]
    assert len(rows) == 2
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")][2:]
        assert all(0 <= float(c) <= 100 for c in cells)
    assert "wrong turned unsure" in out and "Expected calibration error" in out
