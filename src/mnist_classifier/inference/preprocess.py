"""From any user image to what an MNIST model expects.

MNIST digits are white ink on a black field, scaled so the digit fits a 20x20 box
(aspect ratio kept, anti-aliased) and placed in a 28x28 field so that the centre of
mass of the ink lies at the centre. A photo of a digit on paper squashed to 28x28
looks nothing like that (dark on light, small, off-centre, unevenly lit), and a
model trained on MNIST reads it wrongly. :func:`preprocess` rebuilds the MNIST
look step by step:

1. greyscale (enlarged or reduced so the longest side is 256..1024 pixels), and
   decide the polarity: dark ink on light paper (the common case for photos) or
   light ink on a dark canvas. A light sheet lying on a darker desk is recognised
   first, and only the sheet is read;
2. separate the ink from uneven paper and lighting: estimate the paper's
   brightness at every pixel (a morphological closing on a coarse grid, which
   follows gradients and shadows but not strokes), divide it out, threshold with
   Otsu's method but never below the local noise level, keep the connected strokes
   that make up the digit (specks, far-away marks and the edges of things are
   dropped) and let fainter ink join where it is connected to them (hysteresis);
3. cut out the digit's bounding box, keeping its background-corrected grey levels
   stretched so that the ink is near 255 and the paper 0;
4. thicken hair-thin pen strokes to an MNIST-like width, fit the digit into 20x20
   with anti-aliasing (Lanczos), and place it in 28x28 with its centre of mass at
   (14, 14) (an integer shift, as for MNIST itself);
5. an image with no ink that stands out from its noise raises
   :class:`~mnist_classifier.errors.ImageError` ``"<name>: no digit found"``
   instead of guessing.

Only numpy and Pillow are used (no torch, no scipy), so the ONNX Runtime path can
use this module; connected components, Otsu and the filters are implemented here.

The result is uint8 in [0, 255]; the model's normalisation (mean/std stored in the
checkpoint) is NOT applied here: the predictor applies it, so that preprocessing
travels with the model.

Known limits: a digit on ruled or squared paper (the lines are ink too), several
digits in one image (the largest wins, with whatever lies close to it), and ink
within a cell or two (about 1/30 of the image) of the edge of a sheet on a desk.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageError

__all__ = [
    "DIGIT_BOX",
    "MAX_PIXELS",
    "MAX_SIDE",
    "MNIST_SIDE",
    "ImageSource",
    "PreprocessResult",
    "load_image",
    "preprocess",
    "to_mnist",
]

MAX_PIXELS = 40_000_000  # more pixels than this (read from the header) is refused undecoded
MAX_SIDE = 2048  # larger images are downscaled on load so the longest side is this many pixels
MNIST_SIDE = 28  # the field the model sees, in pixels
DIGIT_BOX = 20  # the digit is scaled to fit this box inside the field, like MNIST

# What load_image and preprocess accept (objects with ``__array__`` work as arrays too).
ImageSource = (
    str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes] | Image.Image | np.ndarray
)

# Tuning of the analysis (private: results depend on them, callers should not).
_ANALYSIS_SIDE = 1024  # the ink is found on a copy at most this big (pixels, longest side)
_ANALYSIS_MIN_SIDE = 256  # ... and at least this big (smaller images are enlarged)
_LABEL_SIDE = 512  # connected components are labelled on a mask at most this big
_GRID_CELLS = 32  # the background is estimated on a grid of about this many cells (longest side)
_SHEET_CONTRAST = 0.25  # a sheet on a desk: the two levels differ at least this much ...
_SHEET_SEPARATION = 0.85  # ... and explain this share of the variance of the cell medians
_POLARITY_MARGIN = 1.5  # one reading's marks must be this much stronger to win outright
_BG_RADIUS = 4  # cells: the paper estimate fills in dark marks narrower than 2r+1 cells
_MIN_CONTRAST = 0.12  # ink must be at least this much darker than the paper (fraction)
_NOISE_SIGMAS = 6.0  # ... and stand this many noise deviations above it
_NOISE_CELL = 16  # pixels: the least side of the cells in which noise is measured
_HYSTERESIS = 0.5  # ink down to this fraction of the threshold joins if connected to the digit
_MIN_DIGIT_PIXELS = 8  # the digit's longest side, in analysis pixels, must be at least this ...
_MIN_DIGIT_FRACTION = 0.02  # ... and at least this fraction of the image's longest side
_STROKE_MIN = 2.0  # pixels in 28x28: thinner strokes are thickened ...
_STROKE_TARGET = 2.6  # ... to about this (MNIST's median is 2.9 by the same 2*area/perimeter)
_MARGIN = 3  # analysis pixels kept around the strokes for their anti-aliased fringe
_CENTRE = 14.0  # MNIST's mean centre of mass, in pixel-index coordinates (measured: 13.99, 14.01)


@dataclass(frozen=True)
class PreprocessResult:
    """The image the model sees, and how it was made from the user's image.

    ``image`` is what a model expects (before normalisation); ``crop`` and ``box``
    let a caller show the user which part of their image was read, and how.
    """

    image: np.ndarray  # (28, 28) uint8, white ink on black, digit in 20x20, centred by mass
    # (h, w) uint8: the digit as cut out, background-corrected, white on black, specks
    # removed, before scaling; at the analysis scale (the image's longest side 256..1024).
    crop: np.ndarray
    box: tuple[int, int, int, int]  # (left, top, right, bottom) of the crop in ``source`` pixels
    source: Image.Image  # the loaded image: upright, 8-bit L or RGB, alpha flattened, <= MAX_SIDE
    inverted: bool  # True when the source had dark ink on light paper (so it was inverted)
    name: str  # how errors and reports name the image


# ---------------------------------------------------------------------------------------------
# Loading


def load_image(source: ImageSource, *, name: str | None = None) -> Image.Image:
    """Open ``source`` as an upright 8-bit image (mode ``L`` or ``RGB``) with no alpha channel.

    ``source`` may be a path, bytes, a binary file object, a PIL image, or a numpy
    array (H, W), (H, W, 3) or (H, W, 4) of uint8, uint16 or floats in [0, 1]. Any
    format Pillow reads works (PNG, JPEG, BMP, GIF, TIFF, WebP, ...); of an animation
    only the first frame is used. EXIF orientation is applied; 16-bit and 32-bit
    greyscale is scaled to 8 bits; images whose longest side exceeds ``MAX_SIDE`` are
    downscaled; images over ``MAX_PIXELS`` are refused from their header, before any
    pixel is decoded.

    Transparency is flattened onto the colour that makes the transparent part look
    like paper: when the opaque pixels cover less than half of the image they are
    the strokes (a drawing on a transparent canvas), and the background is white
    behind dark strokes and black behind light ones; otherwise they are mostly
    paper, and the background takes the paper's side (white behind light paper).

    Raises :class:`ImageError` naming the file (``name``, else the path, else
    ``"<upload>"``) for a missing or empty file, data that is not an image, a
    truncated or corrupt file, or too many pixels.
    """
    label = name or _default_name(source)
    if isinstance(source, Image.Image):
        return _normalise(source, label)
    if isinstance(source, str | os.PathLike):
        return _load_path(Path(source), label)
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        if not data:
            raise ImageError(f"{label}: empty file")
        return _decode(io.BytesIO(data), label)
    if hasattr(source, "read"):
        return _load_file_object(source, label)
    if isinstance(source, np.ndarray) or hasattr(source, "__array__"):
        return _normalise(_from_array(np.asarray(source), label), label)
    raise ImageError(f"{label}: cannot read an image from a {type(source).__name__}")


def _default_name(source: object) -> str:
    if isinstance(source, str | os.PathLike):
        return os.fsdecode(source)
    if isinstance(source, Image.Image):
        filename = getattr(source, "filename", "")
        return filename if isinstance(filename, str) and filename else "<image>"
    if isinstance(source, bytes | bytearray | memoryview):
        return "<upload>"
    if hasattr(source, "read"):
        file_name = getattr(source, "name", None)
        return file_name if isinstance(file_name, str) and file_name else "<upload>"
    return "<array>"


def _load_path(path: Path, label: str) -> Image.Image:
    try:
        if path.is_dir():
            raise ImageError(f"{label}: is a directory, not an image")
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageError(f"{label}: no such file") from None
    except OSError as exc:
        raise ImageError(f"{label}: cannot read ({exc.strerror or exc})") from None
    if size == 0:
        raise ImageError(f"{label}: empty file")
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below, after decoding
    except OSError as exc:
        raise ImageError(f"{label}: cannot read ({exc.strerror or exc})") from None
    with fh:
        return _decode(fh, label)


def _load_file_object(fh: Any, label: str) -> Image.Image:
    seekable = getattr(fh, "seekable", None)
    if callable(seekable) and seekable():
        start = fh.tell()
        end = fh.seek(0, io.SEEK_END)
        fh.seek(start)
        if end <= start:
            raise ImageError(f"{label}: empty file")
        return _decode(fh, label)
    data = fh.read()
    if not isinstance(data, bytes):
        raise ImageError(f"{label}: file object must be opened in binary mode")
    if not data:
        raise ImageError(f"{label}: empty file")
    return _decode(io.BytesIO(data), label)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _check_pixels(size: tuple[int, int], label: str) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(f"{label}: image has no pixels ({width}x{height})")
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"{label}: too many pixels ({width}x{height} = {width * height / 1e6:.1f} megapixels;"
            f" the limit is {MAX_PIXELS / 1e6:g})"
        )


def _decode(fp: IO[bytes], label: str) -> Image.Image:
    # Pillow's own decompression-bomb guard (Image.MAX_IMAGE_PIXELS, ~89 Mpx: a warning, an
    # error above twice that) is left as it is; MAX_PIXELS is lower, so any image it would
    # let through is refused below from the header size, before decoding.
    try:
        im = Image.open(fp)
    except Image.DecompressionBombError:
        limit = f"over {MAX_PIXELS / 1e6:g} megapixels"
        raise ImageError(f"{label}: too many pixels ({limit})") from None
    except UnidentifiedImageError:
        raise ImageError(f"{label}: not an image (unrecognised format)") from None
    except Exception as exc:  # corrupt headers make plugins raise many kinds of errors
        raise ImageError(f"{label}: corrupt image header ({_one_line(exc)})") from None
    with im:
        _check_pixels(im.size, label)
        if im.format == "JPEG" and max(im.size) > MAX_SIDE:
            # Decode at 1/2, 1/4 or 1/8 scale straight away when that is still >= MAX_SIDE.
            k = MAX_SIDE / max(im.size)
            im.draft(None, (math.ceil(im.width * k), math.ceil(im.height * k)))
        try:
            im.load()
        except Exception as exc:  # truncated or corrupt pixel data
            raise ImageError(f"{label}: truncated or corrupt image ({_one_line(exc)})") from None
        return _normalise(im, label)


def _normalise(im: Image.Image, label: str) -> Image.Image:
    """Upright, 8-bit, at most MAX_SIDE, alpha flattened: mode L or RGB."""
    _check_pixels(im.size, label)
    try:
        upright = ImageOps.exif_transpose(im)
    except Exception:  # a corrupt EXIF block: keep the pixels as stored
        upright = im.copy()
    if upright is None:  # only with in_place=True; keeps type checkers content
        upright = im.copy()
    try:
        eight = _to_8bit(upright, label)
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(f"{label}: truncated or corrupt image ({_one_line(exc)})") from None
    if max(eight.size) > MAX_SIDE:  # area averaging: anti-aliased, and fast on 12 Mpx photos
        eight.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BOX)
    return _flatten_alpha(eight)


def _to_8bit(im: Image.Image, label: str) -> Image.Image:
    mode = im.mode
    if mode in ("L", "RGB", "LA", "RGBA"):
        return im
    if mode == "1":
        return im.convert("L")
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        return im.convert("RGBA" if has_alpha else "RGB")
    if mode == "La":
        return im.convert("LA")
    if mode == "RGBa":
        return im.convert("RGBA")
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_scale_deep(np.asarray(im), mode))
    try:
        return im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX, ...
    except Exception as exc:
        raise ImageError(f"{label}: unsupported image mode {mode} ({_one_line(exc)})") from None


def _scale_deep(values: np.ndarray, mode: str) -> np.ndarray:
    """16-bit, 32-bit integer or float greyscale -> uint8.

    ``I;16*`` modes use the full 0..65535 range. For ``I`` (32-bit) the range is not
    stored: values within 0..255 are taken as 8-bit, within 0..65535 as 16-bit,
    anything else is stretched from its minimum to its maximum. ``F`` within [0, 1]
    is scaled by 255, within [0, 255] taken as is, else stretched.
    """
    a = values.astype(np.float64)
    if mode.startswith("I;16"):
        a = a / 257.0
    else:
        finite = np.isfinite(a)
        a = np.where(finite, a, 0.0)
        lo, hi = float(a.min()), float(a.max())
        if mode == "F" and lo >= 0.0 and hi <= 1.0:
            a = a * 255.0
        elif lo >= 0.0 and hi <= 255.0:
            pass
        elif mode != "F" and lo >= 0.0 and hi <= 65535.0:
            a = a / 257.0
        else:
            a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
    return np.clip(np.round(a), 0, 255).astype(np.uint8)


def _from_array(a: np.ndarray, label: str) -> Image.Image:
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise ImageError(
            f"{label}: an array of shape {a.shape} is not an image;"
            " expected (H, W), (H, W, 3) or (H, W, 4)"
        )
    _check_pixels((a.shape[1], a.shape[0]), label)
    if a.dtype == np.bool_:
        out = a.astype(np.uint8) * 255
    elif a.dtype == np.uint8:
        out = a
    elif a.dtype == np.uint16:
        out = np.round(a / 257.0).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ImageError(f"{label}: the array holds NaN or infinite values")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            raise ImageError(
                f"{label}: float pixel values must lie in [0, 1] (found {lo:g} to {hi:g})"
            )
        out = np.round(a * 255.0).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.integer):
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 255:
            raise ImageError(
                f"{label}: integer pixel values must lie in 0..255 (found {lo} to {hi});"
                " pass 16-bit data as uint16"
            )
        out = a.astype(np.uint8)
    else:
        raise ImageError(f"{label}: unsupported array dtype {a.dtype}")
    return Image.fromarray(np.ascontiguousarray(out))


def _flatten_alpha(im: Image.Image) -> Image.Image:
    if im.mode not in ("LA", "RGBA"):
        return im
    plain = "L" if im.mode == "LA" else "RGB"
    alpha = np.asarray(im.getchannel("A"), dtype=np.float32) / 255.0
    if alpha.min() >= 1.0:
        return im.convert(plain)
    luminance = np.asarray(im.convert(plain).convert("L"), dtype=np.float32) / 255.0
    weight = float(alpha.sum())
    if weight <= 0.0:
        background = 255  # nothing opaque: blank paper
    elif alpha.mean() < 0.5:  # the opaque pixels are strokes: put them on a contrasting field
        ink = float((luminance * alpha).sum()) / weight
        background = 0 if ink > 0.5 else 255
    else:  # the opaque pixels are mostly paper: transparent areas take the paper's side
        paper = float(np.median(luminance[alpha > 0.5])) if (alpha > 0.5).any() else 1.0
        background = 255 if paper > 0.5 else 0
    base = Image.new("RGBA", im.size, (background, background, background, 255))
    return Image.alpha_composite(base, im.convert("RGBA")).convert(plain)


# ---------------------------------------------------------------------------------------------
# From image to MNIST


def to_mnist(image: ImageSource, *, name: str | None = None) -> np.ndarray:
    """The (28, 28) uint8 MNIST-style image (white ink on black) of the digit in ``image``.

    ``image`` is anything :func:`load_image` accepts. Not normalised: divide by 255
    and apply the checkpoint's mean/std (the predictor does). Raises
    :class:`ImageError` ``"<name>: no digit found"`` for a blank image.
    """
    return preprocess(image, name=name).image


def preprocess(image: ImageSource, *, name: str | None = None) -> PreprocessResult:
    """Like :func:`to_mnist`, also returning the loaded image and the digit's crop and box."""
    label = name or _default_name(image)
    source = load_image(image, name=label)

    work = source.convert("L")
    if max(work.size) > _ANALYSIS_SIDE:
        work.thumbnail((_ANALYSIS_SIDE, _ANALYSIS_SIDE), Image.Resampling.BOX)
    elif max(work.size) < _ANALYSIS_MIN_SIDE:  # tiny inputs (an MNIST digit itself): enlarge
        f = _ANALYSIS_MIN_SIDE / max(work.size)
        size = (max(1, round(work.width * f)), max(1, round(work.height * f)))
        work = work.resize(size, Image.Resampling.BICUBIC)
    grey = np.asarray(work, dtype=np.float32) / 255.0  # (H, W), 1 = white

    sheet = _find_sheet(grey)
    if sheet is not None:  # a light sheet on a darker surface: dark ink, on the sheet only
        inverted, paper_up, background = True, grey, _paper_level(grey)
    else:
        inverted, paper_up, background = _polarity(grey)  # paper_up: ink dark, paper light
    # Fraction by which each pixel is darker than its paper: 0 = paper, 1 = black ink.
    ink = np.clip(1.0 - paper_up / np.maximum(background, 0.04), 0.0, 1.0)
    if sheet is not None:
        ink *= sheet

    keep, threshold = _find_digit(ink, label)
    # Work on the digit's box and a margin: the grey fringe of the strokes lies within it.
    ys, xs = np.flatnonzero(keep.any(axis=1)), np.flatnonzero(keep.any(axis=0))
    y0, x0 = max(int(ys[0]) - _MARGIN, 0), max(int(xs[0]) - _MARGIN, 0)
    y1, x1 = int(ys[-1]) + 1 + _MARGIN, int(xs[-1]) + 1 + _MARGIN
    grey_digit = _stretch(ink, keep, threshold, (slice(y0, y1), slice(x0, x1)))
    rows = np.flatnonzero((grey_digit >= 0.1).any(axis=1))
    cols = np.flatnonzero((grey_digit >= 0.1).any(axis=0))
    if rows.size == 0:
        raise ImageError(f"{label}: no digit found")
    top, bottom = y0 + int(rows[0]), y0 + int(rows[-1]) + 1
    left, right = x0 + int(cols[0]), x0 + int(cols[-1]) + 1
    crop = grey_digit[top - y0 : bottom - y0, left - x0 : right - x0]

    field = _place(_fit_box(crop))
    sx = source.width / grey.shape[1]
    sy = source.height / grey.shape[0]
    box = (
        math.floor(left * sx),
        math.floor(top * sy),
        min(source.width, math.ceil(right * sx)),
        min(source.height, math.ceil(bottom * sy)),
    )
    return PreprocessResult(
        image=_to_uint8(field),
        crop=_to_uint8(crop),
        box=box,
        source=source,
        inverted=inverted,
        name=label,
    )


def _to_uint8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(a * 255.0 + 0.5), 0, 255).astype(np.uint8)


def _find_sheet(grey: np.ndarray) -> np.ndarray | None:
    """The inside of a light sheet of paper lying on a darker surface, if the photo shows one.

    On the background grid, the cell medians must split cleanly into two levels
    (Otsu's between-class share of the variance >= _SHEET_SEPARATION, levels at least
    _SHEET_CONTRAST apart); the largest light region must be solid (>= half of its
    bounding box), cover >= 10% of the image with its holes filled, and hold dark
    marks, and its holes (dark cells it encloses) be few; the dark surface must cover
    >= 10% of the image and a fifth of its border, and have some texture (a flat
    black drawing canvas with a fat white digit on it does not pass, nor does a
    close-up of paper or an evenly lit photo).
    Returns a float mask (1 on the sheet, at least one cell in from its edge; 0
    elsewhere), or None.
    """
    cells = _cell_grid(grey)
    medians = _cell_stat(grey, cells, 50.0)
    gh, gw = medians.shape
    if min(gh, gw) < 4:
        return None
    cut = _otsu(medians)
    light = medians > cut
    if light.all() or not light.any():
        return None
    hi, lo = float(medians[light].mean()), float(medians[~light].mean())
    share = light.mean() * (1 - light.mean()) * (hi - lo) ** 2 / max(float(medians.var()), 1e-12)
    if hi - lo < _SHEET_CONTRAST or share < _SHEET_SEPARATION:
        return None
    runs = _label_runs(light)
    stats = _component_stats(runs)
    largest = int(np.argmax(stats.area))
    paper = _paint(runs, np.array([largest]), light.shape)
    region = paper | _holes(paper)
    y0, y1 = int(stats.y0[largest]), int(stats.y1[largest])
    x0, x1 = int(stats.x0[largest]), int(stats.x1[largest])
    border = np.concatenate([~region[0], ~region[-1], ~region[:, 0], ~region[:, -1]])
    if (
        paper.sum() < 0.5 * (y1 - y0) * (x1 - x0)
        or paper.sum() < 0.85 * region.sum()  # a ring (a fat white 0 or 8) is not a sheet
        or region.mean() < 0.1
        or (~region).mean() < 0.1
        or border.mean() < 0.2
    ):
        return None
    # A desk in a photo has texture or at least sensor noise; a drawing canvas is flat.
    across = np.abs(np.diff(grey, axis=1, append=grey[:, -1:]))
    texture = _cell_stat(across, cells, 75.0)
    if float(np.median(texture[~region])) < 1.5 / 255.0:
        return None
    # It must be written on: cells well inside the paper that hold darker marks. (A thick
    # white stroke on a black canvas, a ring with its hole filled, is uniform inside.)
    core = _separable(region.astype(np.float32), 1, np.minimum) > 0
    marks = medians - _cell_stat(grey, cells, 1.0)
    if int((marks[core] >= max(0.15, 0.3 * (hi - lo))).sum()) < 2:
        return None
    inside = _separable(region.astype(np.float32), 1, np.minimum)
    h, w = grey.shape
    return np.repeat(np.repeat(inside, cells, axis=0), cells, axis=1)[:h, :w]


def _holes(mask: np.ndarray) -> np.ndarray:
    """The parts of ``~mask`` that do not reach the border (holes enclosed by ``mask``)."""
    runs = _label_runs(~mask)
    if runs.count == 0:
        return np.zeros_like(mask)
    stats = _component_stats(runs)
    h, w = mask.shape
    enclosed = (stats.y0 > 0) & (stats.x0 > 0) & (stats.y1 < h) & (stats.x1 < w)
    return _paint(runs, np.flatnonzero(enclosed), mask.shape)


def _polarity(grey: np.ndarray) -> tuple[bool, np.ndarray, np.ndarray]:
    """Decide whether the ink is darker than the paper.

    Returns (dark ink?, the image with dark ink on light paper, its paper level).
    Both readings are tried; in each, "ink" is what is darker than the paper level
    (which fills in marks narrower than a window, see :func:`_paper_level`), and the
    reading whose marks are clearly stronger wins. Both are strong on clean drawings
    (a black digit on a white canvas also shows its white holes and gaps as "ink" in
    the inverted reading); then the border decides, because paper reaches the edges:
    the ink is dark when the border is on the light side of the image's range. (A
    light sheet on a dark desk, where the border is the desk, is found before this,
    by :func:`_find_sheet`.)
    """
    strength = []
    for paper_up in (grey, 1.0 - grey):
        # The cell medians here, not the 90th percentile: in the wrong reading the real
        # ink is the bright minority, and a median does not mistake it for the paper.
        contrast = _box_blur(_paper_level(paper_up, 50.0) - paper_up, 1)
        strength.append(float(np.percentile(contrast, 99.95)))
    dark, light = strength
    if dark > _POLARITY_MARGIN * light:
        dark_ink = True
    elif light > _POLARITY_MARGIN * dark:
        dark_ink = False
    else:
        border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
        lo, hi = np.percentile(grey, [1.0, 99.0])
        dark_ink = float(np.median(border)) >= 0.5 * float(lo + hi)
    paper_up = grey if dark_ink else 1.0 - grey
    return dark_ink, paper_up, _paper_level(paper_up)


def _paper_level(paper_up: np.ndarray, percentile: float = 90.0) -> np.ndarray:
    """A smooth estimate of the paper's brightness at each pixel (ink is darker).

    On a coarse grid: the 90th (or given) percentile of each cell; a morphological closing
    (maximum, then minimum, over a window wider than a stroke), which fills in dark
    marks narrower than the window (the ink) but keeps ramps and large regions as they
    are, so the estimate follows gradients and shadows instead of running ahead of
    them; a light blur; bilinear interpolation back to pixels.

    Next to a large dark region (a desk beside the sheet) that interpolation would
    spill the paper's brightness over the dark pixels and make a band of "ink", so
    each pixel takes the lower of it and the darkest level among its cell and the
    eight around it. The price: ink within a cell or two of such an edge is not seen.
    """
    cells = _cell_grid(paper_up)
    grid = _cell_stat(paper_up, cells, percentile)
    # Continue the grid past its edges linearly where it darkens towards them (so that
    # the closing keeps a shadow that deepens towards the edge of the picture), but
    # never brighter than the edge itself (that would invent paper beyond it).
    r = _BG_RADIUS
    wide = np.maximum(np.minimum(_pad(grid, r, "reflect"), _pad(grid, r, "edge")), grid.min())
    wide = _separable(_separable(wide, r, np.maximum), r, np.minimum)
    level = _box_blur(wide, 1, pad="reflect")[r:-r, r:-r]
    lowest = _separable(wide, 1, np.minimum)[r:-r, r:-r]  # before the blur spreads the paper
    h, w = paper_up.shape
    lowest_px = np.repeat(np.repeat(lowest, cells, axis=0), cells, axis=1)[:h, :w]
    return np.minimum(_upsample(level, cells, paper_up.shape), lowest_px)


def _find_digit(ink: np.ndarray, label: str) -> tuple[np.ndarray, np.ndarray]:
    """The mask of the digit's ink (bool, like ``ink``) and the per-pixel threshold used."""
    smooth = _box_blur(ink, 1)
    floor = _noise_floor(smooth)
    if not (smooth > floor).any():
        raise ImageError(f"{label}: no digit found")
    threshold = np.maximum(floor, _otsu(smooth))
    mask = smooth > threshold

    height, width = mask.shape
    block = max(1, math.ceil(max(height, width) / _LABEL_SIDE))
    small = _block_any(mask, block)
    runs = _label_runs(small)
    chosen = _choose_components(runs, small.shape)
    if chosen is None:
        raise ImageError(f"{label}: no digit found")
    keep_small = _paint(runs, chosen, small.shape)
    keep = _enlarge(keep_small, block, mask.shape) & mask
    ys = np.flatnonzero(keep.any(axis=1))
    xs = np.flatnonzero(keep.any(axis=0))
    if ys.size == 0:
        raise ImageError(f"{label}: no digit found")
    side = max(int(ys[-1] - ys[0]) + 1, int(xs[-1] - xs[0]) + 1)
    if side < max(_MIN_DIGIT_PIXELS, _MIN_DIGIT_FRACTION * max(height, width)):
        raise ImageError(f"{label}: no digit found")

    # Hysteresis: fainter ink (down to a fraction of the threshold, never into the noise)
    # joins when it is connected to the chosen strokes: light pencil, a faint end of a
    # stroke, the grey parts of a scanned digit.
    low = np.maximum(floor, _HYSTERESIS * threshold)
    faint = smooth > low
    faint_small = _block_any(faint, block)
    faint_runs = _label_runs(faint_small)
    ids = _label_image(faint_runs, faint_small.shape)
    touched = np.unique(ids[keep_small & (ids >= 0)])
    keep = _enlarge(_paint(faint_runs, touched, faint_small.shape), block, mask.shape) & faint
    return keep, low


def _noise_floor(smooth: np.ndarray) -> np.ndarray:
    """The least ink value that stands out from the paper around each pixel.

    ``_NOISE_SIGMAS`` noise deviations above the paper's level, and never below
    ``_MIN_CONTRAST``. Both are local, on a grid of cells (a shadowed or textured part
    of a photo is noisier than the rest), and both are the lower quartile over 5x5
    cells of a per-cell measure, so that cells full of ink do not raise them. The
    level is the cell's median; the noise comes from the median difference between
    neighbouring pixels (larger of horizontal and vertical, as scanner noise often
    runs along rows), which a stroke that is smooth inside barely affects.
    """
    cells = max(_cell_grid(smooth), _NOISE_CELL)  # enough pixels for a median of paper
    cells += cells % 2
    # The statistics use every other pixel in each direction: as good, and 4x faster.
    level = _cell_stat(smooth[::2, ::2], cells // 2, 50.0)

    def lower_quartile(windows: np.ndarray, axis: tuple[int, int]) -> np.ndarray:
        return np.percentile(windows, 25.0, axis=axis)

    level = _window_reduce(level, 2, lower_quartile)
    across = np.abs(np.diff(smooth, axis=1, append=smooth[:, -1:]))[::2, ::2]
    down = np.abs(np.diff(smooth, axis=0, append=smooth[-1:, :]))[::2, ::2]
    # For noise smoothed by the 3x3 box, sigma = 1.22 * sigma of neighbour differences
    # = 1.22 * 1.4826 * their median.
    spread = np.maximum(_cell_stat(across, cells // 2, 50.0), _cell_stat(down, cells // 2, 50.0))
    level += _NOISE_SIGMAS * _window_reduce(1.81 * spread, 2, lower_quartile)
    return np.maximum(_upsample(level, cells, smooth.shape), _MIN_CONTRAST)


def _stretch(
    ink: np.ndarray, keep: np.ndarray, threshold: np.ndarray, region: tuple[slice, slice]
) -> np.ndarray:
    """Within ``region``: ink near 1 and paper 0, zero away from the kept strokes.

    The paper level is the median plus three deviations of the paper around the
    digit (never above half the threshold); the ink level is the 90th percentile of
    the kept strokes, so their cores saturate as in MNIST. Pixels farther than
    _MARGIN - 1 from a kept stroke (specks, stray marks) are zeroed.
    """
    values, kept = ink[region], keep[region]
    near = _max_filter(kept.astype(np.float32), _MARGIN - 1) > 0
    lo = 0.5 * float(np.median(threshold[region][kept]))
    paper = values[~near]
    if paper.size:
        median = float(np.median(paper))
        lo = min(lo, median + 3.0 * 1.4826 * float(np.median(np.abs(paper - median))))
    hi = max(float(np.percentile(values[kept], 90.0)), lo + 0.1)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0) * near


def _fit_box(crop: np.ndarray) -> np.ndarray:
    """Scale ``crop`` (float, white on black) to fit DIGIT_BOX, thickening hair-thin strokes."""
    mid = crop
    side = max(crop.shape)
    if side > 4 * DIGIT_BOX:  # work at 4x the final size: enough detail, cheap to dilate
        f = 4 * DIGIT_BOX / side
        mid = _resize(crop, max(1, round(crop.shape[1] * f)), max(1, round(crop.shape[0] * f)))
        # Strokes thinner than a pixel at this scale turn grey: bring their cores back to 1.
        mid = np.clip(mid, 0.0, 1.0)
        inked = mid[mid >= 0.1]
        if inked.size:
            mid = np.minimum(mid / max(float(np.percentile(inked, 90.0)), 0.3), 1.0)
    stroke = _stroke_width(mid) * DIGIT_BOX / max(mid.shape)
    if stroke < _STROKE_MIN:
        radius = round((_STROKE_TARGET - stroke) * max(mid.shape) / DIGIT_BOX / 2.0)
        if radius >= 1:
            mid = _disk_dilate(np.pad(mid, radius), radius)
            rows = np.flatnonzero((mid >= 0.1).any(axis=1))
            cols = np.flatnonzero((mid >= 0.1).any(axis=0))
            mid = mid[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = mid.shape
    f = DIGIT_BOX / max(h, w)
    return np.clip(_resize(mid, max(1, round(w * f)), max(1, round(h * f))), 0.0, 1.0)


def _place(digit: np.ndarray) -> np.ndarray:
    """Put ``digit`` (at most 20x20) in a 28x28 field with its centre of mass at the centre."""
    h, w = digit.shape
    mass = float(digit.sum())
    if mass > 0:
        cy = float(digit.sum(axis=1) @ np.arange(h)) / mass
        cx = float(digit.sum(axis=0) @ np.arange(w)) / mass
    else:
        cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    top = min(max(math.floor(_CENTRE - cy + 0.5), 0), MNIST_SIDE - h)
    left = min(max(math.floor(_CENTRE - cx + 0.5), 0), MNIST_SIDE - w)
    field = np.zeros((MNIST_SIDE, MNIST_SIDE), dtype=np.float32)
    field[top : top + h, left : left + w] = digit
    return field


# ---------------------------------------------------------------------------------------------
# numpy image helpers


def _resize(a: np.ndarray, width: int, height: int) -> np.ndarray:
    """Anti-aliased resize of a float image (Lanczos, on Pillow's 32-bit float mode)."""
    image = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32))
    return np.asarray(image.resize((width, height), Image.Resampling.LANCZOS), dtype=np.float32)


def _box_blur(a: np.ndarray, radius: int, pad: str = "edge") -> np.ndarray:
    """Mean over a (2r+1)^2 window; ``pad="reflect"`` extends edges linearly (keeps a ramp)."""
    return _separable(a, radius, np.add, pad) / float((2 * radius + 1) ** 2)


def _max_filter(a: np.ndarray, radius: int) -> np.ndarray:
    """Maximum over a (2r+1)^2 square window, edges repeated."""
    return _separable(a, radius, np.maximum)


def _pad(a: np.ndarray, widths: Any, pad: str) -> np.ndarray:
    if pad == "reflect" and min(a.shape) > 1:
        return np.pad(a, widths, mode="reflect", reflect_type="odd")
    return np.pad(a, widths, mode="edge")


def _separable(a: np.ndarray, radius: int, combine: np.ufunc, pad: str = "edge") -> np.ndarray:
    """Fold ``combine`` (np.add, np.maximum) over a (2r+1)^2 window: rows, then columns."""
    out = np.asarray(a, dtype=np.float32)
    if radius <= 0:
        return out.copy()
    h, w = out.shape
    padded = _pad(out, ((radius, radius), (0, 0)), pad)
    rows = padded[0:h].copy()
    for i in range(1, 2 * radius + 1):
        combine(rows, padded[i : i + h], out=rows)
    padded = _pad(rows, ((0, 0), (radius, radius)), pad)
    out = padded[:, 0:w].copy()
    for i in range(1, 2 * radius + 1):
        combine(out, padded[:, i : i + w], out=out)
    return out


def _window_reduce(a: np.ndarray, radius: int, reduce: Any) -> np.ndarray:
    """``reduce`` (np.median, np.max, ...) over a (2r+1)^2 window, edges repeated; small grids."""
    size = 2 * radius + 1
    padded = np.pad(np.asarray(a, dtype=np.float32), radius, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size))
    return np.asarray(reduce(windows, axis=(-2, -1)), dtype=np.float32)


def _disk_dilate(a: np.ndarray, radius: int) -> np.ndarray:
    """Grey-level dilation (maximum) over a disc of ``radius`` pixels; edges are zero."""
    out = a.copy()
    h, w = a.shape
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if (dy, dx) == (0, 0) or dy * dy + dx * dx > radius * radius + radius:
                continue
            src_y, dst_y = _shifted(h, dy)
            src_x, dst_x = _shifted(w, dx)
            np.maximum(out[dst_y, dst_x], a[src_y, src_x], out=out[dst_y, dst_x])
    return out


def _shifted(n: int, d: int) -> tuple[slice, slice]:
    """Source and destination slices that move a length-``n`` axis by ``d`` pixels."""
    return (slice(0, n - d), slice(d, n)) if d >= 0 else (slice(-d, n), slice(0, n + d))


def _stroke_width(a: np.ndarray) -> float:
    """Mean stroke width in pixels of the ink (``a >= 0.5``): 2 * area / boundary length."""
    ink = a >= 0.5
    area = int(ink.sum())
    if area == 0:
        return 0.0
    p = np.pad(ink, 1)
    interior = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    boundary = int((ink & ~interior).sum())
    return 2.0 * area / max(boundary, 1)


def _cell_grid(a: np.ndarray) -> int:
    """The side, in pixels, of the background grid's square cells."""
    return max(2, math.ceil(max(a.shape) / _GRID_CELLS))


def _cell_blocks(a: np.ndarray, cell: int) -> np.ndarray:
    """(gh, gw, cell * cell): the pixels of each cell x cell block, edges repeated to fill."""
    h, w = a.shape
    gh, gw = math.ceil(h / cell), math.ceil(w / cell)
    padded = np.pad(a, ((0, gh * cell - h), (0, gw * cell - w)), mode="edge")
    return padded.reshape(gh, cell, gw, cell).transpose(0, 2, 1, 3).reshape(gh, gw, cell * cell)


def _cell_stat(a: np.ndarray, cell: int, percentile: float) -> np.ndarray:
    """The given percentile of each cell x cell block."""
    blocks = _cell_blocks(a, cell)
    k = round(percentile / 100.0 * (cell * cell - 1))
    return np.partition(blocks, k, axis=2)[:, :, k].astype(np.float32)


def _upsample(grid: np.ndarray, cell: int, shape: tuple[int, ...]) -> np.ndarray:
    """Per-cell values back to a (H, W) image: bilinear, extrapolated linearly past the
    outer cell centres (a clamped edge would flatten a shadow that darkens to the edge)."""
    out = np.asarray(grid, dtype=np.float32)
    for axis, n in ((0, shape[0]), (1, shape[1])):
        g = out.shape[axis]
        if g == 1:
            out = np.repeat(out, n, axis=axis)
            continue
        u = (np.arange(n, dtype=np.float32) + 0.5) / cell - 0.5  # pixel centres in cell units
        i = np.clip(np.floor(u).astype(np.int64), 0, g - 2)
        t = (u - i).astype(np.float32)
        lo, hi = np.take(out, i, axis=axis), np.take(out, i + 1, axis=axis)
        t = t[:, None] if axis == 0 else t[None, :]
        out = lo + (hi - lo) * t
    return out


def _otsu(a: np.ndarray) -> float:
    """Otsu's threshold of values in [0, 1]: the cut that maximises between-class variance."""
    hist = np.bincount(np.clip((a * 255.0).astype(np.int64), 0, 255).ravel(), minlength=256)
    hist = hist.astype(np.float64)
    levels = np.arange(256, dtype=np.float64)
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    s0 = np.cumsum(hist * levels)
    mu0 = s0 / np.maximum(w0, 1.0)
    mu1 = (s0[-1] - s0) / np.maximum(w1, 1.0)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return (int(np.argmax(between)) + 0.5) / 255.0


def _block_any(mask: np.ndarray, block: int) -> np.ndarray:
    """True for each block x block tile that holds any True pixel."""
    if block == 1:
        return mask
    h, w = mask.shape
    gh, gw = math.ceil(h / block), math.ceil(w / block)
    padded = np.zeros((gh * block, gw * block), dtype=bool)
    padded[:h, :w] = mask
    return np.asarray(padded.reshape(gh, block, gw, block).any(axis=(1, 3)))


@dataclass
class _Runs:
    """Horizontal runs of True pixels and the 8-connected component of each."""

    row: np.ndarray  # (R,) int
    start: np.ndarray  # (R,) int, first column
    end: np.ndarray  # (R,) int, one past the last column
    component: np.ndarray  # (R,) int in [0, count)
    count: int


def _label_runs(mask: np.ndarray) -> _Runs:
    """Connected components (8-connectivity) of a boolean image, as labelled runs."""
    h, w = mask.shape
    padded = np.zeros((h, w + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    step = np.diff(padded, axis=1)
    row, start = np.nonzero(step == 1)
    _, end = np.nonzero(step == -1)
    n = row.size
    if n == 0:
        return _Runs(row, start, end, np.zeros(0, dtype=np.int64), 0)
    # Runs in consecutive rows touch (8-connectivity) when prev.start <= cur.end and
    # prev.end >= cur.start; those of the previous row form one contiguous index range.
    stride = w + 2
    key_start = row * stride + start
    key_end = row * stride + end
    first = np.searchsorted(key_end, (row - 1) * stride + start, side="left")
    last = np.searchsorted(key_start, (row - 1) * stride + end, side="right")
    count = np.maximum(last - first, 0)
    a = np.repeat(np.arange(n), count)
    offsets = np.arange(a.size) - np.repeat(np.cumsum(count) - count, count)
    b = np.repeat(first, count) + offsets
    # Union by hooking roots onto the smaller root, then pointer jumping, until stable.
    parent = np.arange(n)
    while a.size:
        ra, rb = parent[a], parent[b]
        low = np.minimum(ra, rb)
        hooked = parent.copy()
        np.minimum.at(hooked, ra, low)
        np.minimum.at(hooked, rb, low)
        while True:
            jumped = hooked[hooked]
            if np.array_equal(jumped, hooked):
                break
            hooked = jumped
        if np.array_equal(hooked, parent):
            break
        parent = hooked
    _, component = np.unique(parent, return_inverse=True)
    return _Runs(row, start, end, component.ravel(), int(component.max()) + 1)


@dataclass
class _Stats:
    """Per component: pixel count and bounding box (y0, x0 inclusive; y1, x1 exclusive)."""

    area: np.ndarray
    y0: np.ndarray
    y1: np.ndarray
    x0: np.ndarray
    x1: np.ndarray


def _component_stats(runs: _Runs) -> _Stats:
    k = runs.count
    lengths = (runs.end - runs.start).astype(np.float64)
    area = np.bincount(runs.component, weights=lengths, minlength=k)
    y0 = np.full(k, np.iinfo(np.int64).max)
    x0 = np.full(k, np.iinfo(np.int64).max)
    y1 = np.zeros(k, dtype=np.int64)
    x1 = np.zeros(k, dtype=np.int64)
    np.minimum.at(y0, runs.component, runs.row)
    np.maximum.at(y1, runs.component, runs.row + 1)
    np.minimum.at(x0, runs.component, runs.start)
    np.maximum.at(x1, runs.component, runs.end)
    return _Stats(area, y0, y1, x0, x1)


def _choose_components(runs: _Runs, shape: tuple[int, int]) -> np.ndarray | None:
    """Indices of the components that make up the digit, or None when there is none.

    The main component is the largest (one touching the image border counts a third:
    it is more likely a paper edge or a shadow). Others join when they lie inside the
    digit's box and are not specks (>= 1% of the main area), or lie near it (a gap
    under 30% of its size), are substantial (>= 4%) and do not touch the image border.
    Anything else is a speck, a stray mark or the edge of something.
    """
    if runs.count == 0:
        return None
    stats = _component_stats(runs)
    area, y0, y1, x0, x1 = stats.area, stats.y0, stats.y1, stats.x0, stats.x1
    border = (y0 == 0) | (x0 == 0) | (y1 == shape[0]) | (x1 == shape[1])
    main = int(np.argmax(area * np.where(border, 1.0 / 3.0, 1.0)))
    box = [int(y0[main]), int(y1[main]), int(x0[main]), int(x1[main])]
    chosen = [main]
    candidates = [i for i in np.flatnonzero(area >= 0.01 * area[main]) if i != main]
    changed = True
    while changed and candidates:
        changed = False
        size = max(box[1] - box[0], box[3] - box[2])
        for i in list(candidates):
            gap = max(box[0] - y1[i], y0[i] - box[1], box[2] - x1[i], x0[i] - box[3], 0)
            if (gap == 0 and area[i] >= 0.01 * area[main]) or (
                gap <= 0.3 * size and area[i] >= 0.04 * area[main] and not border[i]
            ):
                chosen.append(int(i))
                candidates.remove(i)
                box = [
                    min(box[0], int(y0[i])),
                    max(box[1], int(y1[i])),
                    min(box[2], int(x0[i])),
                    max(box[3], int(x1[i])),
                ]
                changed = True
    return np.asarray(chosen, dtype=np.int64)


def _paint(runs: _Runs, chosen: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A boolean image with the runs of the chosen components set."""
    return np.isin(_label_image(runs, shape), chosen) if runs.count else np.zeros(shape, bool)


def _label_image(runs: _Runs, shape: tuple[int, int]) -> np.ndarray:
    """An int image holding each pixel's component, -1 where there is none."""
    out = np.full(shape, -1, dtype=np.int64)
    lengths = runs.end - runs.start
    offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    cols = np.repeat(runs.start, lengths) + offsets
    out[np.repeat(runs.row, lengths), cols] = np.repeat(runs.component, lengths)
    return out


def _enlarge(mask: np.ndarray, block: int, shape: tuple[int, int]) -> np.ndarray:
    """Undo :func:`_block_any`: each tile's value over its block x block pixels."""
    if block == 1:
        return mask
    return np.repeat(np.repeat(mask, block, axis=0), block, axis=1)[: shape[0], : shape[1]]
