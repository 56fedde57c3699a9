"""numpy image filters for preprocessing: windows, cells, resizing, thresholds.

Only numpy and Pillow, so the ONNX Runtime path can use them. Images are float32 (H, W)
unless a function says otherwise; windows are (2r+1)^2 squares with edges repeated.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image


def resize(a: np.ndarray, width: int, height: int) -> np.ndarray:
    """Anti-aliased resize of a float image (Lanczos, on Pillow's 32-bit float mode)."""
    image = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32))
    return np.asarray(image.resize((width, height), Image.Resampling.LANCZOS), dtype=np.float32)


def box_blur(a: np.ndarray, radius: int, pad: str = "edge") -> np.ndarray:
    """Mean over a (2r+1)^2 window; ``pad="reflect"`` extends edges linearly (keeps a ramp)."""
    return separable(a, radius, np.add, pad) / float((2 * radius + 1) ** 2)


def max_filter(a: np.ndarray, radius: int) -> np.ndarray:
    """Maximum over a (2r+1)^2 square window, edges repeated."""
    return separable(a, radius, np.maximum)


def pad_array(a: np.ndarray, widths: Any, pad: str) -> np.ndarray:
    if pad == "reflect" and min(a.shape) > 1:
        return np.pad(a, widths, mode="reflect", reflect_type="odd")
    return np.pad(a, widths, mode="edge")


def separable(a: np.ndarray, radius: int, combine: np.ufunc, pad: str = "edge") -> np.ndarray:
    """Fold ``combine`` (np.add, np.maximum) over a (2r+1)^2 window: rows, then columns."""
    out = np.asarray(a, dtype=np.float32)
    if radius <= 0:
        return out.copy()
    h, w = out.shape
    padded = pad_array(out, ((radius, radius), (0, 0)), pad)
    rows = padded[0:h].copy()
    for i in range(1, 2 * radius + 1):
        combine(rows, padded[i : i + h], out=rows)
    padded = pad_array(rows, ((0, 0), (radius, radius)), pad)
    out = padded[:, 0:w].copy()
    for i in range(1, 2 * radius + 1):
        combine(out, padded[:, i : i + w], out=out)
    return out


def window_reduce(a: np.ndarray, radius: int, reduce: Any) -> np.ndarray:
    """``reduce`` (np.median, np.max, ...) over a (2r+1)^2 window, edges repeated; small grids."""
    size = 2 * radius + 1
    padded = np.pad(np.asarray(a, dtype=np.float32), radius, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size))
    return np.asarray(reduce(windows, axis=(-2, -1)), dtype=np.float32)


def disk_dilate(a: np.ndarray, radius: int) -> np.ndarray:
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


def stroke_width(a: np.ndarray) -> float:
    """Mean stroke width in pixels of the ink (``a >= 0.5``): 2 * area / boundary length."""
    ink = a >= 0.5
    area = int(ink.sum())
    if area == 0:
        return 0.0
    p = np.pad(ink, 1)
    interior = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    boundary = int((ink & ~interior).sum())
    return 2.0 * area / max(boundary, 1)


def cell_blocks(a: np.ndarray, cell: int) -> np.ndarray:
    """(gh, gw, cell * cell): the pixels of each cell x cell block, edges repeated to fill."""
    h, w = a.shape
    gh, gw = math.ceil(h / cell), math.ceil(w / cell)
    padded = np.pad(a, ((0, gh * cell - h), (0, gw * cell - w)), mode="edge")
    return padded.reshape(gh, cell, gw, cell).transpose(0, 2, 1, 3).reshape(gh, gw, cell * cell)


def cell_stat(a: np.ndarray, cell: int, percentile: float) -> np.ndarray:
    """The given percentile of each cell x cell block."""
    blocks = cell_blocks(a, cell)
    k = round(percentile / 100.0 * (cell * cell - 1))
    # Sorting each cell is faster than partitioning it here (numpy sorts float32 with SIMD;
    # its partition works row by row), and gives the same order statistic.
    return np.sort(blocks, axis=2)[:, :, k].astype(np.float32)


def upsample(grid: np.ndarray, cell: int, shape: tuple[int, ...]) -> np.ndarray:
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


def otsu(a: np.ndarray) -> float:
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


def block_any(mask: np.ndarray, block: int) -> np.ndarray:
    """True for each block x block tile that holds any True pixel."""
    if block == 1:
        return mask
    h, w = mask.shape
    gh, gw = math.ceil(h / block), math.ceil(w / block)
    padded = np.zeros((gh * block, gw * block), dtype=bool)
    padded[:h, :w] = mask
    return np.asarray(padded.reshape(gh, block, gw, block).any(axis=(1, 3)))


def enlarge(mask: np.ndarray, block: int, shape: tuple[int, int]) -> np.ndarray:
    """Undo :func:`block_any`: each tile's value over its block x block pixels."""
    if block == 1:
        return mask
    return np.repeat(np.repeat(mask, block, axis=0), block, axis=1)[: shape[0], : shape[1]]


def high_percentile(a: np.ndarray, q: float) -> float:
    """``np.percentile(a, q)`` (linear interpolation) for a high ``q``, without a full partition.

    A percentile of every 16th value gives a cut below which all but a few times the
    values needed lie; only the values above it are sorted. When too few lie above it
    (a flat image), the plain percentile is taken.
    """
    flat = a.ravel()
    n = flat.size
    index = q / 100.0 * (n - 1)
    lo = math.floor(index)
    need = n - lo  # the values at sorted positions lo .. n - 1
    if n < 4096:
        return float(np.percentile(flat, q))
    cut = float(np.percentile(flat[::16], max(0.0, 100.0 - 400.0 * need / n)))
    top = flat[flat >= cut]
    if top.size < need:
        return float(np.percentile(flat, q))
    top = np.sort(top)
    base = n - top.size
    pair = np.array([top[lo - base], top[min(lo + 1, n - 1) - base]], dtype=a.dtype)
    return float(np.percentile(pair, (index - lo) * 100.0))
