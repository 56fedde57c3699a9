"""Connected components (8-connectivity) of boolean images, for preprocessing.

Components are found as horizontal runs of True pixels joined row to row, with numpy
only (no scipy), so the ONNX Runtime path can use them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Runs:
    """Horizontal runs of True pixels and the 8-connected component of each."""

    row: np.ndarray  # (R,) int
    start: np.ndarray  # (R,) int, first column
    end: np.ndarray  # (R,) int, one past the last column
    component: np.ndarray  # (R,) int in [0, count)
    count: int


def label_runs(mask: np.ndarray) -> Runs:
    """Connected components (8-connectivity) of a boolean image, as labelled runs."""
    h, w = mask.shape
    padded = np.zeros((h, w + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    # In row-major order every run's rising edge is followed by its falling edge: one scan
    # of the edges finds both.
    rows, cols = np.nonzero(np.diff(padded, axis=1))
    row, start, end = rows[0::2], cols[0::2], cols[1::2]
    n = row.size
    if n == 0:
        return Runs(row, start, end, np.zeros(0, dtype=np.int64), 0)
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
    return Runs(row, start, end, component.ravel(), int(component.max()) + 1)


@dataclass
class Stats:
    """Per component: pixel count and bounding box (y0, x0 inclusive; y1, x1 exclusive)."""

    area: np.ndarray
    y0: np.ndarray
    y1: np.ndarray
    x0: np.ndarray
    x1: np.ndarray


def component_stats(runs: Runs) -> Stats:
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
    return Stats(area, y0, y1, x0, x1)


def choose_components(runs: Runs, shape: tuple[int, int]) -> np.ndarray | None:
    """Indices of the components that make up the digit, or None when there is none.

    The main component is the largest (one touching the image border counts a third:
    it is more likely a paper edge or a shadow). Others join when they lie inside the
    digit's box and are not specks (>= 1% of the main area), or lie near it (a gap
    under 30% of its size), are substantial (>= 4%) and do not touch the image border.
    Anything else is a speck, a stray mark or the edge of something.
    """
    if runs.count == 0:
        return None
    stats = component_stats(runs)
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


def paint(runs: Runs, chosen: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A boolean image with the runs of the chosen components set."""
    return np.isin(label_image(runs, shape), chosen) if runs.count else np.zeros(shape, bool)


def label_image(runs: Runs, shape: tuple[int, int]) -> np.ndarray:
    """An int image holding each pixel's component, -1 where there is none."""
    out = np.full(shape, -1, dtype=np.int64)
    lengths = runs.end - runs.start
    offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    cols = np.repeat(runs.start, lengths) + offsets
    out[np.repeat(runs.row, lengths), cols] = np.repeat(runs.component, lengths)
    return out


def holes(mask: np.ndarray) -> np.ndarray:
    """The parts of ``~mask`` that do not reach the border (holes enclosed by ``mask``)."""
    runs = label_runs(~mask)
    if runs.count == 0:
        return np.zeros_like(mask)
    stats = component_stats(runs)
    h, w = mask.shape
    enclosed = (stats.y0 > 0) & (stats.x0 > 0) & (stats.y1 < h) & (stats.x1 < w)
    return paint(runs, np.flatnonzero(enclosed), mask.shape)
