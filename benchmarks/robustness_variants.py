"""MNIST test digits turned into what users really send: the robustness suite's variants.

Every builder takes one MNIST test digit (28x28 uint8, white ink on black) and a numpy
generator and returns a user-style image: a uint8 array (H, W) or encoded bytes (JPEG,
PNG), mostly dark ink on white paper at a larger size than 28x28. Only MNIST's own test
digits are used: other public digit sets are kept for independent checks.

Two readings of a variant's image:

- :func:`plain_resize`: resize to 28x28 and invert a light background, no centring (what
  a program without our preprocessing does);
- :func:`ours`: the package's rule for one input (``inference.prepare.prepare_image``),
  which ``predict`` and the server use.

Used by ``benchmarks/robustness.py`` and ``tests/test_robustness.py``.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter

from drawn_input import as_sent_by_the_page, place_on_pad
from mnist_classifier.errors import ImageError
from mnist_classifier.inference.prepare import prepare_image

UserImage = np.ndarray | bytes
Builder = Callable[[np.ndarray, np.random.Generator], UserImage]

SCALE = 4  # user-style images: the 28x28 digit drawn at 112x112


def _up(
    a: np.ndarray, side: int, resample: Image.Resampling = Image.Resampling.BICUBIC
) -> np.ndarray:
    return np.asarray(Image.fromarray(a).resize((side, side), resample))


def _paper(ink: np.ndarray) -> np.ndarray:
    """White ink on black -> dark ink on white paper."""
    return (255 - ink).astype(np.uint8)


def _crop(digit: np.ndarray, threshold: int = 30) -> np.ndarray:
    ys, xs = np.nonzero(digit > threshold)
    return digit[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def clean(digit: np.ndarray, rng: np.random.Generator) -> UserImage:
    """The MNIST test digit as it is (the reference column)."""
    return digit.copy()


def binarised(digit: np.ndarray, rng: np.random.Generator) -> UserImage:
    """Black and white only at a threshold in 30..70%, scaled up 4x by nearest, on paper."""
    t = rng.uniform(0.3, 0.7) * 255
    binary = np.where(digit > t, 255, 0).astype(np.uint8)
    return _paper(_up(binary, 28 * SCALE, Image.Resampling.NEAREST))


def _blocky(digit: np.ndarray, side: int) -> np.ndarray:
    small = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BOX))
    binary = np.where(small > 127, 255, 0).astype(np.uint8)
    return _paper(_up(binary, side * (128 // side), Image.Resampling.NEAREST))


def blocky16(digit: np.ndarray, rng: np.random.Generator) -> UserImage:
    """A binary 16x16 bitmap of the digit scaled up by nearest (blocky), on paper."""
    return _blocky(digit, 16)


def blocky32(digit: np.ndarray, rng: np.random.Generator) -> UserImage:
    """A binary 32x32 bitmap of the digit scaled up by nearest (blocky), on paper."""
    return _blocky(digit, 32)


def box_filled(digit: np.ndarray, rng: np.random.Generator) -> UserImage:
    """The digit's ink box stretched to fill the whole 112x112 image: no margin, aspect changed."""
    side = 28 * SCALE
    crop = _crop(digit)
    return _paper(np.asarray(Image.fromarray(crop).resize((side, side), Image.Resampling.BICUBIC)))


def _binary_big(digit: np.ndarray) -> np.ndarray:
    """The digit at 4x as a solid 0/255 mask (bicubic up, threshold at half)."""
    return np.where(_up(digit, 28 * SCALE) > 127, 255, 0).astype(np.uint8)


def thick(digit: np.ndarray, rng: np.random.Generator) -> UserImage:
    """Strokes thickened by max filtering: stroke width between a sixth and a third of the
    digit's height (as a marker or a bold font draws), on paper."""
    big = _binary_big(digit)
    rows = np.flatnonzero(big.any(axis=1))
    height = int(rows[-1] - rows[0] + 1)
    stroke = 2 * SCALE + 1  # an MNIST stroke is about 2 pixels at 28x28
    target = rng.uniform(height / 6, height / 3)
    size = max(3, round(target - stroke) | 1)  # odd filter size
    field = np.zeros((big.shape[0] + size, big.shape[1] + size), dtype=np.uint8)
    field[size // 2 : size // 2 + big.shape[0], size // 2 : size // 2 + big.shape[1]] = big
    fat = Image.fromarray(field).filter(ImageFilter.MaxFilter(size))
    return _paper(np.asarray(fat.filter(ImageFilter.GaussianBlur(1))))


def thin(digit: np.ndarray, rng: np.random.Generator) -> UserImage:
    """Strokes thinned by min filtering (a fine pen), never to nothing, on paper."""
    big = _binary_big(digit)
    for size in (5, 3):
        thinner = np.asarray(Image.fromarray(big).filter(ImageFilter.MinFilter(size)))
        if (thinner > 0).sum() >= 0.3 * (big > 0).sum():
            big = thinner
            break
    return _paper(np.asarray(Image.fromarray(big).filter(ImageFilter.GaussianBlur(0.7))))


def photo(digit: np.ndarray, rng: np.random.Generator) -> UserImage:
    """Dark ink on light paper under uneven lighting, with noise, as a JPEG (quality 35-80)."""
    side = 224
    ink = _up(digit, 20 * 8).astype(np.float32) / 255  # the digit 160 px tall
    field = np.zeros((side, side), dtype=np.float32)
    top, left = rng.integers(20, side - 160 - 20 + 1, size=2)
    field[top : top + 160, left : left + 160] = ink
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5)  # -0.7..0.7
    light = rng.uniform(0.75, 0.95) + rng.uniform(0.2, 0.45) * ramp
    paper = np.clip(light, 0.3, 1.0) * 255
    darkness = rng.uniform(0.6, 0.9)  # ink at most this much darker than its paper
    grey = paper * (1 - darkness * field) + rng.normal(0, 4, field.shape)
    buf = io.BytesIO()
    quality = int(rng.integers(35, 81))
    Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def small_offcentre(digit: np.ndarray, rng: np.random.Generator) -> UserImage:
    """The digit 40-80 pixels tall somewhere off-centre on a 400x400 sheet of paper."""
    side = 400
    crop = _crop(digit)
    h = int(rng.integers(40, 81))
    w = max(1, round(crop.shape[1] * h / crop.shape[0]))
    small = np.asarray(Image.fromarray(crop).resize((w, h), Image.Resampling.BICUBIC))
    field = np.zeros((side, side), dtype=np.uint8)
    # Off-centre: in one of the four quarters, away from the middle.
    qy, qx = rng.integers(0, 2, size=2)
    top = int(qy * side // 2 + rng.integers(10, side // 2 - h - 10 + 1))
    left = int(qx * side // 2 + rng.integers(10, max(11, side // 2 - w - 10 + 1)))
    field[top : top + h, left : left + w] = small
    return _paper(field)


def rotated(digit: np.ndarray, rng: np.random.Generator) -> UserImage:
    """The digit turned by 15 degrees either way, at 4x, on paper."""
    angle = 15.0 if rng.random() < 0.5 else -15.0
    big = Image.fromarray(_up(digit, 28 * SCALE))
    return _paper(np.asarray(big.rotate(angle, resample=Image.Resampling.BICUBIC)))


def drawn(digit: np.ndarray, rng: np.random.Generator) -> UserImage:
    """Drawn on the web page's pad: what the page sends (benchmarks/drawn_input.py)."""
    return as_sent_by_the_page(place_on_pad(digit, rng))


VARIANTS: dict[str, Builder] = {
    "MNIST": clean,
    "binarised": binarised,
    "16x16": blocky16,
    "32x32": blocky32,
    "box-filled": box_filled,
    "thick": thick,
    "thin": thin,
    "photo": photo,
    "small": small_offcentre,
    "rotated": rotated,
    "drawn": drawn,
}


def build(name: str, digits: np.ndarray, seed: int) -> list[UserImage]:
    """Variant ``name`` of every digit, deterministic for ``seed``."""
    builder = VARIANTS[name]
    rng = np.random.default_rng([seed, list(VARIANTS).index(name)])
    return [builder(d, rng) for d in digits]


def as_grey(image: UserImage) -> np.ndarray:
    """A user image as a 2-D uint8 array (encoded bytes decoded)."""
    if isinstance(image, bytes):
        return np.asarray(Image.open(io.BytesIO(image)).convert("L"))
    return image


def plain_resize(image: UserImage) -> np.ndarray:
    """28x28 by a plain resize, inverted when the border is light; no cropping, no centring."""
    grey = as_grey(image)
    small = np.asarray(Image.fromarray(grey).resize((28, 28), Image.Resampling.BILINEAR))
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    return (255 - small).astype(np.uint8) if border.mean() > 127 else small.copy()


def ours(image: UserImage) -> np.ndarray | None:
    """The 28x28 the package's predictor sees, or None when it finds no digit."""
    try:
        return prepare_image(image).pixels
    except ImageError:
        return None
