"""From any user image to what an MNIST model expects.

MNIST digits are white ink on a black field, scaled so the digit fits a 20x20 box
(aspect ratio kept, anti-aliased) and placed in a 28x28 field so that the centre of
mass of the ink lies at the centre. A photo of a digit on paper squashed to 28x28
looks nothing like that (dark on light, small, off-centre, unevenly lit), and a
model trained on MNIST reads it wrongly. :func:`preprocess` rebuilds the MNIST
look step by step:

1. greyscale (enlarged or reduced so the longest side is 256..512 pixels; a large JPEG
   is decoded at reduced scale, straight to greyscale), and decide the polarity: dark
   ink on light paper (the common case for photos) or light ink on a dark canvas. A light sheet lying on a darker desk is recognised
   first, and only the sheet is read;
2. separate the ink from uneven paper and lighting: estimate the paper's
   brightness at every pixel (a morphological closing on a coarse grid, which
   follows gradients and shadows but not strokes; a dark region too wide for that
   closing, the inside of a thick marker stroke, a bold font or a blown-up bitmap, is
   filled too when its outline has an ink's sharp edges rather than a shadow's soft
   ones, so that thick strokes stay solid), divide it out, threshold with
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
see :mod:`.segment`, which also cuts a row apart for ``Predictor.read_number``). A digit on
ruled or squared paper (whose lines would be read as ink) is refused with an
:class:`~mnist_classifier.errors.ImageError` saying so, rather than misread.

Known limits: digits that touch or stand on several rows (the largest wins, with whatever
lies close to it), and ink within a cell or two (about 1/30 of the image) of the edge of a
sheet on a desk.
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
    cell_blocks,
    cell_stat,
    disk_dilate,
    enlarge,
    high_percentile,
    max_filter,
    otsu,
    pad_array,
    resize,
    separable,
    stroke_width,
    upsample,
    window_reduce,
)
from .image_io import MNIST_SIDE, ImageSource, default_name, load_for_analysis
from .segment import check_single_digit

__all__ = [
    "ANALYSIS_SIDE",
    "DIGIT_BOX",
    "PreprocessResult",
    "preprocess",
    "preprocess_loaded",
    "to_mnist",
]

DIGIT_BOX = 20  # the digit is scaled to fit this box inside the field, like MNIST

# Tuning of the analysis (private: results depend on them, callers should not).
ANALYSIS_SIDE = 512  # the ink is found on a copy at most this big (pixels, longest side)
_ANALYSIS_MIN_SIDE = 256  # ... and at least this big (smaller images are enlarged)
_LABEL_SIDE = 512  # connected components are labelled on a mask at most this big
_GRID_CELLS = 32  # the background is estimated on a grid of about this many cells (longest side)
_SHEET_CONTRAST = 0.25  # a sheet on a desk: the two levels differ at least this much ...
_SHEET_SEPARATION = 0.85  # ... and explain this share of the variance of the cell medians
_POLARITY_MARGIN = 1.5  # one reading's marks must be this much stronger to win outright
_BG_RADIUS = 4  # cells: the paper estimate fills in dark marks narrower than 2r+1 cells ...
_WIDE_RADIUS = 12  # ... and, where they have an ink's sharp edges, those narrower than this
_WIDE_DEPTH = 0.3  # a wide mark is at least this much darker than the paper (fraction)
_WIDE_BLUR = 0.15  # ... with at most this share of its outline's pixels between the levels
_PLAIN_TOLERANCE = 2  # grey levels: paper this close to its commonest level is flat ...
_PLAIN_SHARE = 0.5  # ... when at least this share of the pixels and the whole border are
_MIN_CONTRAST = 0.12  # ink must be at least this much darker than the paper (fraction)
_NOISE_SIGMAS = 6.0  # ... and stand this many noise deviations above it
_NOISE_CELL = 16  # pixels: the least side of the cells in which noise is measured
_RULED_LINES = 3  # this many thin lines across the whole image: ruled or squared paper ...
_RULED_COVER = 0.6  # ... a line has ink along at least this share of the image's width ...
_RULED_THICKNESS = 0.03  # ... and is at most this share of its height thick
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
    # removed, before scaling; at the analysis scale (the image's longest side 256..512).
    crop: np.ndarray
    # (left, top, right, bottom) of the crop in the pixels of the image load_image returns
    box: tuple[int, int, int, int]
    # The loaded image: upright, 8-bit L or RGB, alpha flattened, <= MAX_SIDE; a large JPEG
    # is decoded smaller (but at least ANALYSIS_SIDE a side) and in greyscale, see
    # image_io.load_for_analysis: ``box`` is then in the pixels of the full-size image.
    source: Image.Image
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
    source, full_size = load_for_analysis(image, side=ANALYSIS_SIDE, name=label)
    return preprocess_loaded(source, full_size, name=label)


def preprocess_loaded(
    source: Image.Image, full_size: tuple[int, int], *, name: str
) -> PreprocessResult:
    """:func:`preprocess` of an image from :func:`~.image_io.load_for_analysis`."""
    label = name
    work = source.convert("L")
    if max(work.size) > ANALYSIS_SIDE:
        work.thumbnail((ANALYSIS_SIDE, ANALYSIS_SIDE), Image.Resampling.BOX)
    elif max(work.size) < _ANALYSIS_MIN_SIDE:  # tiny inputs (an MNIST digit itself): enlarge
        f = _ANALYSIS_MIN_SIDE / max(work.size)
        size = (max(1, round(work.width * f)), max(1, round(work.height * f)))
        work = work.resize(size, Image.Resampling.BICUBIC)
    grey = np.asarray(work, dtype=np.float32) / 255.0  # (H, W), 1 = white

    plain = _plain_paper(work)
    if plain is not None:  # uniform paper (a drawing, a clean render): no lighting to undo
        dark_ink, level = plain
        inverted = dark_ink
        ink = (level - grey if dark_ink else grey - level) / max(
            level if dark_ink else 1.0 - level, 0.04
        )
        np.clip(ink, 0.0, 1.0, out=ink)
        keep, threshold = _find_digit(ink, label, noiseless=True)
    else:
        inverted, ink = _separate(grey)
        keep, threshold = _find_digit(ink, label)
    return _finish(source, full_size, grey, ink, keep, threshold, inverted, label)


def _plain_paper(work: Image.Image) -> tuple[bool, float] | None:
    """(dark ink?, the paper's level) when the paper is one flat grey level, else None.

    Flat: the whole border and at least _PLAIN_SHARE of all pixels lie within
    _PLAIN_TOLERANCE grey levels of the commonest level, as on a drawing from the web
    page's pad or a clean render. The ink is on the side of that level where the other
    pixels lie.
    """
    hist = np.asarray(work.histogram()[:256], dtype=np.int64)
    mode = int(np.argmax(hist))
    lo, hi = max(mode - _PLAIN_TOLERANCE, 0), min(mode + _PLAIN_TOLERANCE, 255)
    total = int(hist.sum())
    if hist[lo : hi + 1].sum() < _PLAIN_SHARE * total:
        return None
    a = np.asarray(work)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]]).astype(np.int16)
    if int(np.abs(border - mode).max()) > _PLAIN_TOLERANCE:
        return None
    darker, lighter = int(hist[:lo].sum()), int(hist[hi + 1 :].sum())
    if darker == lighter:  # nothing off the paper (or a tie): let the full analysis decide
        return None
    return darker > lighter, mode / 255.0


def _separate(grey: np.ndarray) -> tuple[bool, np.ndarray]:
    """(dark ink?, the fraction by which each pixel is darker than its paper), any lighting."""
    grids = _Grids(grey)
    sheet = _find_sheet(grey, grids)
    if sheet is not None:  # a light sheet on a darker surface: dark ink, on the sheet only
        background = _paper_level(grey, grid=grids.p90, wide_marks=True)
        inverted, paper_up = True, grey
    else:  # paper_up: ink dark, paper light
        inverted, paper_up, background = _polarity(grey, grids)
    # Fraction by which each pixel is darker than its paper: 0 = paper, 1 = black ink.
    ink = np.clip(1.0 - paper_up / np.maximum(background, 0.04), 0.0, 1.0)
    if sheet is not None:
        ink *= sheet
    return inverted, ink


def _finish(
    source: Image.Image,
    full_size: tuple[int, int],
    grey: np.ndarray,
    ink: np.ndarray,
    keep: np.ndarray,
    threshold: np.ndarray,
    inverted: bool,
    label: str,
) -> PreprocessResult:
    """The crop, the 28x28 field and the box, from the digit's mask."""
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
    full_width, full_height = full_size
    sx = full_width / grey.shape[1]
    sy = full_height / grey.shape[0]
    box = (
        math.floor(left * sx),
        math.floor(top * sy),
        min(full_width, math.ceil(right * sx)),
        min(full_height, math.ceil(bottom * sy)),
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


class _Grids:
    """Percentiles of the analysis image's background-grid cells, from one sort.

    Of ``grey`` and of ``1 - grey`` (the other polarity): the k-th lowest of ``1 - x``
    is one minus the (n-1-k)-th lowest of ``x``, so one sort serves both.
    """

    def __init__(self, grey: np.ndarray) -> None:
        self.cells = _cell_grid(grey)
        blocks = cell_blocks(grey, self.cells)
        n = blocks.shape[2]
        k50, k90 = round(0.5 * (n - 1)), round(0.9 * (n - 1))
        # A full sort of each cell: with several cut points it is much faster than a
        # partition (numpy sorts float32 with SIMD), and exactly the same order statistics.
        part = np.sort(blocks, axis=2)
        self.median = part[:, :, k50]
        self.p90 = part[:, :, k90]
        self.inverse_median = 1.0 - part[:, :, n - 1 - k50]
        self.inverse_p90 = 1.0 - part[:, :, n - 1 - k90]


def _find_sheet(grey: np.ndarray, grids: _Grids) -> np.ndarray | None:
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
    cells = grids.cells
    medians = grids.median
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


def _polarity(grey: np.ndarray, grids: _Grids) -> tuple[bool, np.ndarray, np.ndarray]:
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
    for paper_up, medians in ((grey, grids.median), (1.0 - grey, grids.inverse_median)):
        # The cell medians here, not the 90th percentile: in the wrong reading the real
        # ink is the bright minority, and a median does not mistake it for the paper.
        contrast = box_blur(_paper_level(paper_up, grid=medians) - paper_up, 1)
        strength.append(high_percentile(contrast, 99.95))
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
    grid = grids.p90 if dark_ink else grids.inverse_p90
    return dark_ink, paper_up, _paper_level(paper_up, grid=grid, wide_marks=True)


def _paper_level(paper_up: np.ndarray, *, grid: np.ndarray, wide_marks: bool = False) -> np.ndarray:
    """A smooth estimate of the paper's brightness at each pixel (ink is darker).

    On a coarse grid: ``grid``, a percentile of each cell (the 90th, or the median); a
    morphological closing
    (maximum, then minimum, over a window wider than a stroke), which fills in dark
    marks narrower than the window (the ink) but keeps ramps and large regions as they
    are, so the estimate follows gradients and shadows instead of running ahead of
    them; a light blur; bilinear interpolation back to pixels.

    With ``wide_marks``, dark regions too wide for that window (a thick marker, a bold
    font, a small bitmap blown up) are filled too when they are bounded by an ink's
    sharp edges rather than a shadow's soft ones (see :func:`_wide_marks`); otherwise
    the inside of such a stroke would be taken for paper and the digit come out hollow.

    Next to a large dark region (a desk beside the sheet) that interpolation would
    spill the paper's brightness over the dark pixels and make a band of "ink", so
    each pixel takes the lower of it and the darkest level among its cell and the
    eight around it. The price: ink within a cell or two of such an edge is not seen.
    """
    cells = _cell_grid(paper_up)
    r = _BG_RADIUS
    wide = _closing(grid, r)
    if wide_marks:
        cut = slice(_WIDE_RADIUS - r, r - _WIDE_RADIUS)  # to the same margin of r cells
        big = _closing(grid, _WIDE_RADIUS)[cut, cut]
        fill = _wide_marks(paper_up, cells, wide[r:-r, r:-r], big[r:-r, r:-r])
        if fill is not None:
            wide = np.where(np.pad(fill, r), big, wide)
    level = box_blur(wide, 1, pad="reflect")[r:-r, r:-r]
    lowest = separable(wide, 1, np.minimum)[r:-r, r:-r]  # before the blur spreads the paper
    h, w = paper_up.shape
    lowest_px = np.repeat(np.repeat(lowest, cells, axis=0), cells, axis=1)[:h, :w]
    return np.minimum(upsample(level, cells, paper_up.shape), lowest_px)


def _closing(grid: np.ndarray, r: int) -> np.ndarray:
    """The grid closed over (2r+1)^2 cells, with ``r`` cells of margin kept on each side.

    The grid is continued past its edges linearly where it darkens towards them (so that
    the closing keeps a shadow that deepens towards the edge of the picture), but never
    brighter than the edge itself (that would invent paper beyond it).
    """
    wide = np.maximum(
        np.minimum(pad_array(grid, r, "reflect"), pad_array(grid, r, "edge")), grid.min()
    )
    return separable(separable(wide, r, np.maximum), r, np.minimum)


def _wide_marks(
    paper_up: np.ndarray, cells: int, narrow: np.ndarray, broad: np.ndarray
) -> np.ndarray | None:
    """The grid cells of dark marks too wide for the paper estimate's window, if any.

    ``narrow`` and ``broad`` are the grid closed over the usual and a much wider window.
    Where ``narrow`` stays at least _WIDE_DEPTH darker than ``broad``, a dark region
    wider than the usual window lies: the inside of a wide stroke, or a shadow. A
    stroke has sharp edges: in the band of cells along the region's outline nearly
    every pixel is either about as dark as the region or about as light as the paper
    (only an anti-aliased fringe lies between). A shadow fades out: its outline is
    mostly in-between levels. A region is kept when at most _WIDE_BLUR of the band is
    in between and both levels are there.
    """
    depth = 1.0 - narrow / np.maximum(broad, 0.04)
    candidate = depth > _WIDE_DEPTH
    if not candidate.any():
        return None
    blocks = cell_blocks(paper_up, cells)  # (gh, gw, cells * cells)
    runs = label_runs(candidate)
    ids = label_image(runs, candidate.shape)
    fill = np.zeros_like(candidate)
    for k in range(runs.count):
        region = ids == k
        grown = max_filter(region.astype(np.float32), 1) > 0
        band = grown & ~(separable(region.astype(np.float32), 1, np.minimum) > 0)
        if not band.any():  # the region is the whole image: no outline to judge
            continue
        dark = float(np.median(blocks[region]))
        paper = broad[band][:, None]
        t = (blocks[band] - dark) / np.maximum(paper - dark, 0.04)
        between = float(((t > 0.2) & (t < 0.8)).mean())
        if between <= _WIDE_BLUR and (t <= 0.2).mean() >= 0.1 and (t >= 0.8).mean() >= 0.1:
            fill |= grown
    return fill if fill.any() else None


def _find_digit(
    ink: np.ndarray, label: str, *, noiseless: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The mask of the digit's ink (bool, like ``ink``) and the per-pixel threshold used.

    ``noiseless``: the paper is flat (see :func:`_plain_paper`), so the noise floor is
    _MIN_CONTRAST everywhere and need not be measured.
    """
    smooth = box_blur(ink, 1)
    floor = np.full_like(smooth, _MIN_CONTRAST) if noiseless else _noise_floor(smooth)
    if not (smooth > floor).any():
        raise _no_digit(label)
    threshold = np.maximum(floor, otsu(smooth))
    mask = smooth > threshold
    if _ruled(smooth > np.maximum(floor, _HYSTERESIS * threshold)):  # the faint ink too
        raise ImageError(
            f"{label}: ruled or squared paper: its lines run across the image and would be"
            " read as ink; use plain paper, or crop the image to the digit",
            reason="no_digit",
        )
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


def _ruled(mask: np.ndarray) -> bool:
    """Whether the ink holds _RULED_LINES or more thin lines across the whole image.

    A line: a band of consecutive rows (or columns) at most _RULED_THICKNESS of the image
    thick, each with ink along at least _RULED_COVER of its length. A digit's strokes do
    not cross its image edge to edge several times over; the lines of a ruled or squared
    sheet do.
    """
    for axis in (1, 0):
        cover = mask.mean(axis=axis) >= _RULED_COVER
        edges = np.diff(np.concatenate([[0], cover.astype(np.int8), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        thin = (ends - starts) <= max(3, _RULED_THICKNESS * cover.size)
        if int(thin.sum()) >= _RULED_LINES:
            return True
    return False


def _noise_floor(smooth: np.ndarray) -> np.ndarray:
    """The least ink value that stands out from the paper around each pixel.

    ``_NOISE_SIGMAS`` noise deviations above the paper's level, and never below
    ``_MIN_CONTRAST``. Both are local, on a grid of cells (a shadowed or textured part
    of a photo is noisier than the rest), and both are the lower quartile over 5x5
    cells of a per-cell measure, so that cells full of ink do not raise them (where
    even that quartile is ink, inside a wide stroke, the level is the least one within
    _WIDE_RADIUS cells). The
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
    # Inside a wide stroke (see _wide_marks) most cells around are ink: take the paper's
    # level from farther away there, or the middle of the stroke would count as paper.
    level = np.where(level > _WIDE_DEPTH, separable(level, _WIDE_RADIUS, np.minimum), level)
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
