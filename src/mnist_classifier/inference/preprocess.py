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
use this module; loading is :mod:`.image_io`, the filters and Otsu are in
:mod:`._filters`, connected components in :mod:`._components`.

The result is uint8 in [0, 255]; the model's normalisation (mean/std stored in the
checkpoint) is NOT applied here: the predictor applies it, so that preprocessing
travels with the model.

Several digits side by side are refused (:class:`~mnist_classifier.errors.SeveralDigitsError`,
see :mod:`.segment`, which also cuts a row apart for ``Predictor.read_number``).

Known limits: a digit on ruled or squared paper (the lines are ink too), digits that
touch or stand on several rows (the largest wins, with whatever lies close to it), and ink
within a cell or two (about 1/30 of the image) of the edge of a sheet on a desk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import ImageError
from ._components import choose_components, component_stats, holes, label_image, label_runs, paint
from ._filters import (
    block_any,
    box_blur,
    cell_stat,
    disk_dilate,
    enlarge,
    max_filter,
    otsu,
    pad_array,
    resize,
    separable,
    stroke_width,
    upsample,
    window_reduce,
)
from .image_io import MNIST_SIDE, ImageSource, default_name, load_image
from .segment import check_single_digit

__all__ = ["DIGIT_BOX", "PreprocessResult", "preprocess", "to_mnist"]

DIGIT_BOX = 20  # the digit is scaled to fit this box inside the field, like MNIST

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


def to_mnist(image: ImageSource, *, name: str | None = None) -> np.ndarray:
    """The (28, 28) uint8 MNIST-style image (white ink on black) of the digit in ``image``.

    ``image`` is anything :func:`load_image` accepts. Not normalised: divide by 255
    and apply the checkpoint's mean/std (the predictor does). Raises
    :class:`ImageError` ``"<name>: no digit found"`` for a blank image.
    """
    return preprocess(image, name=name).image


def preprocess(image: ImageSource, *, name: str | None = None) -> PreprocessResult:
    """Like :func:`to_mnist`, also returning the loaded image and the digit's crop and box."""
    label = name or default_name(image)
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
        raise _no_digit(label)
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


def _no_digit(label: str) -> ImageError:
    return ImageError(f"{label}: no digit found", reason="no_digit")


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
    medians = cell_stat(grey, cells, 50.0)
    gh, gw = medians.shape
    if min(gh, gw) < 4:
        return None
    cut = otsu(medians)
    light = medians > cut
    if light.all() or not light.any():
        return None
    hi, lo = float(medians[light].mean()), float(medians[~light].mean())
    share = light.mean() * (1 - light.mean()) * (hi - lo) ** 2 / max(float(medians.var()), 1e-12)
    if hi - lo < _SHEET_CONTRAST or share < _SHEET_SEPARATION:
        return None
    runs = label_runs(light)
    stats = component_stats(runs)
    largest = int(np.argmax(stats.area))
    paper = paint(runs, np.array([largest]), light.shape)
    region = paper | holes(paper)
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
    texture = cell_stat(across, cells, 75.0)
    if float(np.median(texture[~region])) < 1.5 / 255.0:
        return None
    # It must be written on: cells well inside the paper that hold darker marks. (A thick
    # white stroke on a black canvas, a ring with its hole filled, is uniform inside.)
    core = separable(region.astype(np.float32), 1, np.minimum) > 0
    marks = medians - cell_stat(grey, cells, 1.0)
    if int((marks[core] >= max(0.15, 0.3 * (hi - lo))).sum()) < 2:
        return None
    inside = separable(region.astype(np.float32), 1, np.minimum)
    h, w = grey.shape
    return np.repeat(np.repeat(inside, cells, axis=0), cells, axis=1)[:h, :w]


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
        contrast = box_blur(_paper_level(paper_up, 50.0) - paper_up, 1)
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
    grid = cell_stat(paper_up, cells, percentile)
    # Continue the grid past its edges linearly where it darkens towards them (so that
    # the closing keeps a shadow that deepens towards the edge of the picture), but
    # never brighter than the edge itself (that would invent paper beyond it).
    r = _BG_RADIUS
    wide = np.maximum(
        np.minimum(pad_array(grid, r, "reflect"), pad_array(grid, r, "edge")), grid.min()
    )
    wide = separable(separable(wide, r, np.maximum), r, np.minimum)
    level = box_blur(wide, 1, pad="reflect")[r:-r, r:-r]
    lowest = separable(wide, 1, np.minimum)[r:-r, r:-r]  # before the blur spreads the paper
    h, w = paper_up.shape
    lowest_px = np.repeat(np.repeat(lowest, cells, axis=0), cells, axis=1)[:h, :w]
    return np.minimum(upsample(level, cells, paper_up.shape), lowest_px)


def _find_digit(ink: np.ndarray, label: str) -> tuple[np.ndarray, np.ndarray]:
    """The mask of the digit's ink (bool, like ``ink``) and the per-pixel threshold used."""
    smooth = box_blur(ink, 1)
    floor = _noise_floor(smooth)
    if not (smooth > floor).any():
        raise _no_digit(label)
    threshold = np.maximum(floor, otsu(smooth))
    mask = smooth > threshold
    check_single_digit(mask, label)  # a row of digits is refused, not read as one

    height, width = mask.shape
    block = max(1, math.ceil(max(height, width) / _LABEL_SIDE))
    small = block_any(mask, block)
    runs = label_runs(small)
    chosen = choose_components(runs, small.shape)
    if chosen is None:
        raise _no_digit(label)
    keep_small = paint(runs, chosen, small.shape)
    keep = enlarge(keep_small, block, mask.shape) & mask
    ys = np.flatnonzero(keep.any(axis=1))
    xs = np.flatnonzero(keep.any(axis=0))
    if ys.size == 0:
        raise _no_digit(label)
    side = max(int(ys[-1] - ys[0]) + 1, int(xs[-1] - xs[0]) + 1)
    if side < max(_MIN_DIGIT_PIXELS, _MIN_DIGIT_FRACTION * max(height, width)):
        raise _no_digit(label)

    # Hysteresis: fainter ink (down to a fraction of the threshold, never into the noise)
    # joins when it is connected to the chosen strokes: light pencil, a faint end of a
    # stroke, the grey parts of a scanned digit.
    low = np.maximum(floor, _HYSTERESIS * threshold)
    faint = smooth > low
    faint_small = block_any(faint, block)
    faint_runs = label_runs(faint_small)
    ids = label_image(faint_runs, faint_small.shape)
    touched = np.unique(ids[keep_small & (ids >= 0)])
    keep = enlarge(paint(faint_runs, touched, faint_small.shape), block, mask.shape) & faint
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
    level = cell_stat(smooth[::2, ::2], cells // 2, 50.0)

    def lower_quartile(windows: np.ndarray, axis: tuple[int, int]) -> np.ndarray:
        return np.percentile(windows, 25.0, axis=axis)

    level = window_reduce(level, 2, lower_quartile)
    across = np.abs(np.diff(smooth, axis=1, append=smooth[:, -1:]))[::2, ::2]
    down = np.abs(np.diff(smooth, axis=0, append=smooth[-1:, :]))[::2, ::2]
    # For noise smoothed by the 3x3 box, sigma = 1.22 * sigma of neighbour differences
    # = 1.22 * 1.4826 * their median.
    spread = np.maximum(cell_stat(across, cells // 2, 50.0), cell_stat(down, cells // 2, 50.0))
    level += _NOISE_SIGMAS * window_reduce(1.81 * spread, 2, lower_quartile)
    return np.maximum(upsample(level, cells, smooth.shape), _MIN_CONTRAST)


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
    near = max_filter(kept.astype(np.float32), _MARGIN - 1) > 0
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
        mid = resize(crop, max(1, round(crop.shape[1] * f)), max(1, round(crop.shape[0] * f)))
        # Strokes thinner than a pixel at this scale turn grey: bring their cores back to 1.
        mid = np.clip(mid, 0.0, 1.0)
        inked = mid[mid >= 0.1]
        if inked.size:
            mid = np.minimum(mid / max(float(np.percentile(inked, 90.0)), 0.3), 1.0)
    stroke = stroke_width(mid) * DIGIT_BOX / max(mid.shape)
    if stroke < _STROKE_MIN:
        radius = round((_STROKE_TARGET - stroke) * max(mid.shape) / DIGIT_BOX / 2.0)
        if radius >= 1:
            mid = disk_dilate(np.pad(mid, radius), radius)
            rows = np.flatnonzero((mid >= 0.1).any(axis=1))
            cols = np.flatnonzero((mid >= 0.1).any(axis=0))
            mid = mid[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = mid.shape
    f = DIGIT_BOX / max(h, w)
    return np.clip(resize(mid, max(1, round(w * f)), max(1, round(h * f))), 0.0, 1.0)


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


def _cell_grid(a: np.ndarray) -> int:
    """The side, in pixels, of the background grid's square cells."""
    return max(2, math.ceil(max(a.shape) / _GRID_CELLS))
