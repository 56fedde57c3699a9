"""Several digits in one image: refuse them in a single-digit read, or cut a row of them apart.

:func:`~mnist_classifier.inference.preprocess.preprocess` reads ONE digit. Before it picks
the digit's strokes it hands its ink mask (``True`` where ink stands out from the paper,
at the analysis scale) to :func:`check_single_digit`, which finds the *digit groups*:

1. connected components (8-connectivity) on a copy of the mask at most ``_LABEL_SIDE``
   pixels on its longest side; components touching the image border (paper edges,
   shadows) and specks (small next to the largest component) are left out;
2. components whose columns overlap are merged into one group (the two strokes of a 4,
   the detached top bar of a 5, the flag of a serif 1 all lie above or across the
   rest of their digit), sweeping left to right until no two groups overlap; then a
   short group very close to a taller one joins it when together they are no wider
   than tall (a 4 whose bar stops short of its upright);
3. digit-sized groups (as tall as most of the tallest group) that share rows with the
   tallest form the row of digits, left to right.

A single-digit read refuses only what is clearly a row: two or more groups of similar
heights (the shorter at least ``_STRICT_HEIGHT`` of the taller), standing on common rows,
each with some ink, separated by a gap of at least ``_STRICT_GAP`` of their height. It
raises :class:`~mnist_classifier.errors.SeveralDigitsError` ("several digits found"), so
the model never silently names one digit of a number.

:func:`split_row` does the same with looser rules when the caller asked for a number
(``Predictor.read_number``, ``predict --multi``): every digit-sized group on the row is a
digit, however close its neighbours; each is then cut out of the image on its own (the
cut runs through the middle of the gaps) and preprocessed as a single digit, so every
digit of a number gets the same treatment as a digit read alone.

Limits: digits that touch each other form one group (read as one digit by ``--multi``,
not refused by a single read); digits on several rows are not read as a number.
Only numpy is used, like the rest of preprocessing.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np

from ..errors import SeveralDigitsError
from ._components import component_stats, label_runs

__all__ = ["DigitGroup", "check_single_digit", "reading_a_row", "split_row"]

_LABEL_SIDE = 192  # components are labelled on a copy of the mask at most this big
_SPECK_AREA = 0.02  # components under this share of the largest one's area are specks ...
_SPECK_SIDE = 0.25  # ... unless their longest side reaches this share of the tallest's height
_ROW_HEIGHT = 0.5  # a digit of a row is at least this share of the tallest group's height ...
_ROW_OVERLAP = 0.5  # ... and shares at least this share of its height with the tallest's rows
_MIN_INK = 0.03  # ... and holds at least this share of the most inked group's pixels
_PART_GAP = 0.1  # neighbours closer than this share of the taller's height ...
_PART_HEIGHT = 0.75  # ... the shorter under this share of its height are parts of one digit
# A single-digit read refuses only a clear row: similar heights, visible gaps.
_STRICT_HEIGHT = 0.7  # the shorter of two neighbours is at least this share of the taller
_STRICT_GAP = 0.08  # the gap between neighbours is at least this share of the taller's height
_STRICT_INK = 0.1  # each holds at least this share of the most inked group's pixels
_STRICT_WIDTH = 1.6  # no group is wider than this many times its height (a dash, a line)


@dataclass(frozen=True)
class DigitGroup:
    """Ink that is read as one digit: a bounding box in the mask's pixels and its ink count."""

    x0: int  # first column
    x1: int  # one past the last column
    y0: int  # first row
    y1: int  # one past the last row
    area: int  # ink pixels, at the labelling scale

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def width(self) -> int:
        return self.x1 - self.x0


# Set while a number is read: the preprocessing hook then splits with the loose rules.
_reading_a_row: ContextVar[bool] = ContextVar("reading_a_row", default=False)


@contextlib.contextmanager
def reading_a_row() -> Iterator[None]:
    """Within this block, preprocessing raises SeveralDigitsError for any row of digits."""
    token = _reading_a_row.set(True)
    try:
        yield
    finally:
        _reading_a_row.reset(token)


def check_single_digit(mask: np.ndarray, label: str) -> None:
    """Raise SeveralDigitsError when ``mask`` (bool ink mask) holds a row of digits.

    With the strict rules normally; within :func:`reading_a_row`, with the loose rules
    of :func:`split_row` (so that a number is cut apart even where its digits are close).
    """
    loose = _reading_a_row.get()
    row = split_row(mask) if loose else _strict_row(mask)
    if len(row) >= 2:
        raise several_digits_error(label, row, mask.shape)


def several_digits_error(
    label: str, row: list[DigitGroup], shape: tuple[int, ...]
) -> SeveralDigitsError:
    boxes = tuple((g.x0, g.y0, g.x1, g.y1) for g in row)
    message = (
        f"{label}: several digits found ({len(row)} side by side); "
        "use --multi to read them as a number"
    )
    return SeveralDigitsError(message, boxes=boxes, shape=(int(shape[0]), int(shape[1])))


def split_row(mask: np.ndarray) -> list[DigitGroup]:
    """The digit groups of the row of digits in ``mask``, left to right, in ``mask``'s pixels.

    Empty when there is no ink; one group for a single digit.
    """
    groups, block = _groups(mask)
    if not groups:
        return []
    groups = _join_parts(groups)
    tallest = max(groups, key=lambda g: g.height)
    most = max(g.area for g in groups)
    row = [
        g
        for g in groups
        if g.height >= _ROW_HEIGHT * tallest.height
        and _shared_rows(g, tallest) >= _ROW_OVERLAP * g.height
        and g.area >= _MIN_INK * most
    ]
    return [_scaled(g, block, mask.shape) for g in row]


def _join_parts(groups: list[DigitGroup]) -> list[DigitGroup]:
    """Join neighbours that look like two parts of one digit (the two strokes of an open 4).

    Parts: a gap under ``_PART_GAP`` of the taller's height, the shorter under
    ``_PART_HEIGHT`` of the taller's height, and together no wider than they are tall.
    Two ones written close together (both tall) stay apart.
    """
    out = [groups[0]]
    for g in groups[1:]:
        last = out[-1]
        taller = max(last.height, g.height)
        joined = DigitGroup(
            x0=last.x0,
            x1=max(last.x1, g.x1),
            y0=min(last.y0, g.y0),
            y1=max(last.y1, g.y1),
            area=last.area + g.area,
        )
        if (
            g.x0 - last.x1 < _PART_GAP * taller
            and min(last.height, g.height) < _PART_HEIGHT * taller
            and joined.width <= joined.height
        ):
            out[-1] = joined
        else:
            out.append(g)
    return out


def _strict_row(mask: np.ndarray) -> list[DigitGroup]:
    """The row's groups when they are clearly several digits side by side, else []."""
    row = split_row(mask)
    if len(row) < 2:
        return []
    most = max(g.area for g in row)
    if any(g.area < _STRICT_INK * most or g.width > _STRICT_WIDTH * g.height for g in row):
        return []
    for left, right in itertools.pairwise(row):
        taller = max(left.height, right.height)
        if (
            min(left.height, right.height) < _STRICT_HEIGHT * taller
            or right.x0 - left.x1 < _STRICT_GAP * taller
            or _shared_rows(left, right) < _ROW_OVERLAP * min(left.height, right.height)
        ):
            return []
    return row


def _shared_rows(a: DigitGroup, b: DigitGroup) -> int:
    return max(0, min(a.y1, b.y1) - max(a.y0, b.y0))


def _groups(mask: np.ndarray) -> tuple[list[DigitGroup], int]:
    """Column-merged groups of the mask's non-speck components, left to right (labelling scale)."""
    height, width = mask.shape
    block = max(1, math.ceil(max(height, width) / _LABEL_SIDE))
    small = _pool_any(mask, block)
    runs = label_runs(small)
    if runs.count == 0:
        return [], block
    stats = component_stats(runs)
    h, w = small.shape
    inner = (stats.y0 > 0) & (stats.x0 > 0) & (stats.y1 < h) & (stats.x1 < w)
    if not inner.any():
        return [], block
    area = stats.area
    sides = np.maximum(stats.y1 - stats.y0, stats.x1 - stats.x0)
    tallest = int((stats.y1 - stats.y0)[inner].max())
    largest = float(area[inner].max())
    keep = inner & ((area >= _SPECK_AREA * largest) | (sides >= _SPECK_SIDE * tallest))
    order = sorted(np.flatnonzero(keep), key=lambda i: (int(stats.x0[i]), int(stats.x1[i])))
    merged: list[list[int]] = []  # x0, x1, y0, y1, area
    for i in order:
        box = [int(stats.x0[i]), int(stats.x1[i]), int(stats.y0[i]), int(stats.y1[i])]
        if merged and box[0] < merged[-1][1]:  # its columns overlap the group on its left
            last = merged[-1]
            last[1] = max(last[1], box[1])
            last[2] = min(last[2], box[2])
            last[3] = max(last[3], box[3])
            last[4] += int(area[i])
        else:
            merged.append([*box, int(area[i])])
    groups = [DigitGroup(x0=a, x1=b, y0=c, y1=d, area=e) for a, b, c, d, e in merged]
    return groups, block


def _pool_any(mask: np.ndarray, block: int) -> np.ndarray:
    """True for each block x block tile that holds any True pixel (rows, then columns: fast)."""
    if block == 1:
        return mask
    h, w = mask.shape
    gh, gw = math.ceil(h / block), math.ceil(w / block)
    padded = np.zeros((gh * block, gw * block), dtype=np.uint8)
    padded[:h, :w] = mask
    rows = np.bitwise_or.reduce(padded.reshape(gh, block, gw * block), axis=1)
    return np.bitwise_or.reduce(rows.reshape(gh, gw, block), axis=2).astype(bool)


def _scaled(g: DigitGroup, block: int, shape: tuple[int, ...]) -> DigitGroup:
    """A group found at the labelling scale, in the full mask's pixels."""
    return DigitGroup(
        x0=g.x0 * block,
        x1=min(g.x1 * block, int(shape[1])),
        y0=g.y0 * block,
        y1=min(g.y1 * block, int(shape[0])),
        area=g.area * block * block,
    )
