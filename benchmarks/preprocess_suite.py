"""A fixed, labelled set of generated user images for checking preprocessing's outputs.

Every image is made from a seed, so the same list comes back on every run and machine:

- the synthetic handwriting of tests/handwriting.py in each of its variants (drawings,
  photos with uneven light, small and rotated digits, thin pens, transparent canvases,
  16-bit scans, low-quality JPEGs, a sheet on a desk), 3 of each digit;
- MNIST test digits drawn the way the web page sends them (white on a black pad, scaled
  into a 300x300 PNG), see benchmarks/drawn_input.py;
- MNIST test digits printed dark on unevenly lit paper and saved as a JPEG.

``benchmarks/preprocess_speed.py --check`` runs preprocessing over the set and compares
its 28x28 outputs with ``preprocess_reference.npz``, the outputs of an earlier version
of preprocessing (``--save-reference`` writes a new one).
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from drawn_input import as_sent_by_the_page, place_on_pad
from handwriting import VARIANTS, make_user_image

REFERENCE = Path(__file__).resolve().parent / "preprocess_reference.npz"


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


def mnist_on_paper(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """An MNIST digit printed dark on unevenly lit paper, 640x480, as a JPEG."""
    side = int(rng.integers(160, 360))
    ink = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC))
    ink = ink.astype(np.float32) / 255.0
    h, w = 480, 640
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * (xs / w - 0.5) + np.sin(angle) * (ys / h - 0.5) + 0.5
    paper = rng.uniform(0.8, 0.95) * (1.0 - 0.35 * np.clip(ramp, 0.0, 1.0))
    field = np.zeros((h, w), dtype=np.float32)
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    field[top : top + side, left : left + side] = np.clip(ink, 0.0, 1.0)
    grey = paper * (1.0 - 0.85 * field) + rng.normal(0, 0.015, field.shape)
    image = Image.fromarray((np.clip(grey, 0, 1) * 255 + 0.5).astype(np.uint8))
    return encoded(image, "JPEG", quality=int(rng.integers(50, 90)))


def suite(
    mnist_images: np.ndarray, mnist_labels: np.ndarray, *, drawn: int = 150, printed: int = 100
) -> Iterator[tuple[str, int, bytes]]:
    """(kind, label, encoded image) for every image of the set, in a fixed order."""
    for v, variant in enumerate(VARIANTS):
        for digit in range(10):
            for k in range(3):
                rng = np.random.default_rng(50_000 + 1000 * v + 10 * digit + k)
                image = make_user_image(digit, variant, rng)
                fmt = "JPEG" if variant == "jpeg" else "PNG"
                if fmt == "JPEG" and image.mode not in ("L", "RGB"):
                    image = image.convert("RGB")
                yield variant, digit, encoded(image, fmt, quality=95)
    rng = np.random.default_rng(7)
    picks = rng.choice(len(mnist_labels), size=drawn + printed, replace=False)
    for i in picks[:drawn]:
        pad = place_on_pad(mnist_images[i], rng)
        yield "drawn", int(mnist_labels[i]), as_sent_by_the_page(pad)
    for i in picks[drawn:]:
        yield "printed", int(mnist_labels[i]), mnist_on_paper(mnist_images[i], rng)
