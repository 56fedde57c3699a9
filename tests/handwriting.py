"""Synthetic "user-made" digit images: what people feed a digit reader.

Each digit 0-9 is a few hand-made pen strokes (polylines and elliptic arcs in a unit
box, y pointing down). Every call jitters the points, the stroke width, the slant
and the proportions, draws the strokes thickly with Pillow (supersampled, so edges
are anti-aliased), and then renders the ink the way users make images:

- ``clean``: black strokes on a white 280x280 drawing canvas;
- ``white_on_black``: white strokes on a black 280x280 canvas (an HTML canvas);
- ``photo``: dark ink on off-white paper, 800x600 RGB, uneven lighting, noise, off-centre;
- ``small``: a small digit somewhere on a large 800x600 sheet;
- ``rotated``: a photo with the digit rotated by up to 15 degrees;
- ``thin_pen``: a photo of a thin ballpoint-pen digit;
- ``rgba``: black strokes on a transparent canvas (RGBA);
- ``rgba_white``: white strokes on a transparent canvas (RGBA);
- ``grey16``: a 16-bit greyscale scan (mode ``I;16``), dark on light;
- ``jpeg``: a photo saved as a low-quality JPEG and opened again;
- ``on_desk``: a photo of a small sheet of paper lying on a dark desk, the desk in view.

Used by tests/test_preprocess.py, and meant for an accuracy check of preprocessing
against a trained model.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw

VARIANTS = (
    "clean",
    "white_on_black",
    "photo",
    "small",
    "rotated",
    "thin_pen",
    "rgba",
    "rgba_white",
    "grey16",
    "jpeg",
    "on_desk",
)

Point = tuple[float, float]
Arc = tuple[float, float, float, float, float, float]  # cx, cy, rx, ry, from, to (degrees)

# Each digit: strokes, each a list of pieces drawn as one pen movement; a piece is a list
# of points (a polyline) or an Arc. Unit box: x in [0, 1] across the glyph, y in [0, 1] down.
GLYPHS: dict[int, list[list[list[Point] | Arc]]] = {
    0: [[(0.5, 0.5, 0.5, 0.5, -95.0, 275.0)]],
    1: [[[(0.6, 0.0), (0.57, 1.0)]]],
    2: [[(0.5, 0.28, 0.45, 0.28, -165.0, 30.0), [(0.03, 0.98), (1.0, 0.97)]]],
    3: [
        [
            (0.5, 0.25, 0.42, 0.25, -160.0, 100.0),
            (0.5, 0.73, 0.48, 0.27, -100.0, 160.0),
        ]
    ],
    4: [[[(0.12, 0.0), (0.02, 0.62), (1.0, 0.62)]], [[(0.72, 0.05), (0.72, 1.0)]]],
    5: [
        [[(0.2, 0.02), (0.12, 0.45)], (0.5, 0.68, 0.45, 0.32, -140.0, 150.0)],
        [[(0.2, 0.02), (0.95, 0.0)]],
    ],
    6: [[[(0.8, 0.0), (0.45, 0.2), (0.15, 0.48)], (0.5, 0.72, 0.45, 0.28, 180.0, 540.0)]],
    7: [[[(0.0, 0.02), (1.0, 0.0), (0.35, 1.0)]]],
    8: [
        [(0.5, 0.25, 0.38, 0.25, -90.0, 270.0)],
        [(0.5, 0.73, 0.46, 0.27, -90.0, 270.0)],
    ],
    9: [[(0.5, 0.3, 0.45, 0.3, 0.0, 360.0), [(0.95, 0.3), (0.9, 0.65), (0.78, 1.0)]]],
}

_SUPERSAMPLE = 4


def _jitter_piece(piece: list[Point] | Arc, rng: np.random.Generator) -> list[Point]:
    """The piece as points in the unit box, with hand-made wobble."""
    if isinstance(piece, tuple):
        cx, cy, rx, ry, a0, a1 = piece
        cx += rng.normal(0, 0.02)
        cy += rng.normal(0, 0.02)
        rx *= rng.uniform(0.88, 1.1)
        ry *= rng.uniform(0.9, 1.08)
        a0 += rng.normal(0, 6)
        a1 += rng.normal(0, 6)
        n = max(8, int(abs(a1 - a0) / 6))
        # A slow wobble of the radius, like a hand that does not draw perfect ellipses.
        phase, amp = rng.uniform(0, 2 * math.pi), rng.uniform(0.0, 0.06)
        points = []
        for t in np.linspace(math.radians(a0), math.radians(a1), n):
            k = 1.0 + amp * math.sin(2 * t + phase)
            points.append((cx + rx * k * math.cos(t), cy + ry * k * math.sin(t)))
        return points
    return [(x + rng.normal(0, 0.03), y + rng.normal(0, 0.025)) for x, y in piece]


def render_digit(digit: int, rng: np.random.Generator, height: int, stroke: float) -> np.ndarray:
    """Ink coverage (H, W) float32 in [0, 1] of a hand-drawn ``digit`` ``height`` pixels tall.

    ``stroke`` is the pen width in pixels; the glyph's width, slant and wobble are random.
    """
    aspect = rng.uniform(0.55, 0.75)
    slant = rng.uniform(-0.12, 0.3)  # shear: x moves right by slant * (1 - y) * height
    width = height * aspect
    margin = stroke + 0.1 * height + abs(slant) * height
    s = _SUPERSAMPLE
    size = (int((width + 2 * margin) * s), int((height + 2 * margin) * s))
    canvas = Image.new("L", size, 0)
    draw = ImageDraw.Draw(canvas)
    pen = max(1, round(stroke * s))

    def to_px(p: Point) -> Point:
        x, y = p
        return ((margin + x * width + slant * (1 - y) * height) * s, (margin + y * height) * s)

    paths = list(GLYPHS[digit])
    if digit == 1 and rng.random() < 0.5:  # half of the ones get a short lead-in stroke
        paths = [[[(0.42, 0.14), (0.6, 0.0), (0.57, 1.0)]]]
    for path in paths:
        points: list[Point] = []
        for piece in path:
            points.extend(to_px(p) for p in _jitter_piece(piece, rng))
        draw.line(points, fill=255, width=pen, joint="curve")
        r = pen / 2
        for x, y in (points[0], points[-1]):
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    small = canvas.resize((size[0] // s, size[1] // s), Image.Resampling.BOX)
    ink = np.asarray(small, dtype=np.float32) / 255.0
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]  # tight: callers place it


def _place(ink: np.ndarray, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Put ``ink`` at a random position inside a field of ``shape`` (shrunk if it does not fit)."""
    field = np.zeros(shape, dtype=np.float32)
    h, w = ink.shape
    if h > shape[0] or w > shape[1]:
        f = min(shape[0] / h, shape[1] / w)
        image = Image.fromarray(np.ascontiguousarray(ink, dtype=np.float32))
        size = (max(1, int(w * f)), max(1, int(h * f)))
        ink = np.asarray(image.resize(size, Image.Resampling.BOX), dtype=np.float32)
        h, w = ink.shape
    top = int(rng.integers(0, shape[0] - h + 1))
    left = int(rng.integers(0, shape[1] - w + 1))
    field[top : top + h, left : left + w] = ink
    return field


def _rotate(ink: np.ndarray, degrees: float) -> np.ndarray:
    image = Image.fromarray(np.ascontiguousarray(ink, dtype=np.float32))  # mode F
    return np.asarray(
        image.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=True), dtype=np.float32
    ).clip(0.0, 1.0)


def _paper(shape: tuple[int, int], rng: np.random.Generator, strength: float) -> np.ndarray:
    """Paper brightness (H, W) in [0, 1]: off-white with a lighting gradient and a soft shadow."""
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (math.cos(angle) * (xs / w - 0.5) + math.sin(angle) * (ys / h - 0.5)) + 0.5
    light = 1.0 - strength * np.clip(ramp, 0.0, 1.0)
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    radius = rng.uniform(0.3, 0.6) * max(h, w)
    shadow = 1.0 - 0.5 * strength * np.exp(-(((ys - cy) ** 2 + (xs - cx) ** 2) / radius**2))
    return rng.uniform(0.82, 0.95) * light * shadow


def _photo(
    ink: np.ndarray, rng: np.random.Generator, *, lighting: float = 0.4, noise: float = 0.02
) -> Image.Image:
    """A phone-photo look: tinted paper, uneven light, dark blue-black ink, sensor noise."""
    paper = _paper(ink.shape, rng, lighting)
    tint = np.array([1.0, rng.uniform(0.96, 1.0), rng.uniform(0.88, 0.98)], dtype=np.float32)
    ink_colour = np.array(
        [rng.uniform(0.05, 0.2), rng.uniform(0.05, 0.2), rng.uniform(0.1, 0.35)], dtype=np.float32
    )
    cover = ink[..., None]
    rgb = paper[..., None] * (tint * (1 - cover) + ink_colour * cover)
    rgb = rgb + rng.normal(0, noise, rgb.shape).astype(np.float32)
    return Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))


def make_user_image(digit: int, variant: str, rng: np.random.Generator) -> Image.Image:
    """One synthetic user image of ``digit`` rendered as ``variant`` (one of VARIANTS)."""
    if variant == "clean":
        ink = render_digit(digit, rng, int(rng.integers(170, 220)), rng.uniform(14, 24))
        field = _place(ink, (280, 280), rng)
        return Image.fromarray(((1.0 - field) * 255 + 0.5).astype(np.uint8)).convert("RGB")
    if variant == "white_on_black":
        ink = render_digit(digit, rng, int(rng.integers(170, 220)), rng.uniform(14, 24))
        field = _place(ink, (280, 280), rng)
        return Image.fromarray((field * 255 + 0.5).astype(np.uint8))
    if variant in ("photo", "jpeg"):
        ink = render_digit(digit, rng, int(rng.integers(220, 380)), rng.uniform(10, 22))
        photo = _photo(_place(ink, (600, 800), rng), rng)
        if variant == "photo":
            return photo
        buf = io.BytesIO()
        photo.save(buf, "JPEG", quality=int(rng.integers(25, 60)))
        jpeg = Image.open(io.BytesIO(buf.getvalue()))
        jpeg.load()
        return jpeg
    if variant == "small":
        ink = render_digit(digit, rng, int(rng.integers(60, 110)), rng.uniform(5, 9))
        return _photo(_place(ink, (600, 800), rng), rng, lighting=0.25)
    if variant == "rotated":
        ink = render_digit(digit, rng, int(rng.integers(200, 320)), rng.uniform(10, 20))
        ink = _rotate(ink, rng.uniform(-15, 15))
        return _photo(_place(ink, (600, 800), rng), rng)
    if variant == "thin_pen":
        ink = render_digit(digit, rng, int(rng.integers(220, 340)), rng.uniform(3, 5))
        return _photo(_place(ink, (600, 800), rng), rng, lighting=0.3, noise=0.015)
    if variant in ("rgba", "rgba_white"):
        ink = render_digit(digit, rng, int(rng.integers(220, 320)), rng.uniform(14, 28))
        alpha = _place(ink, (400, 400), rng)
        value = 0 if variant == "rgba" else 255
        rgba = np.zeros((400, 400, 4), dtype=np.uint8)
        rgba[..., :3] = value
        rgba[..., 3] = (alpha * 255 + 0.5).astype(np.uint8)
        return Image.fromarray(rgba)
    if variant == "grey16":
        ink = render_digit(digit, rng, int(rng.integers(200, 300)), rng.uniform(10, 20))
        field = _place(ink, (450, 600), rng)
        paper = _paper(field.shape, rng, 0.3)
        grey = paper * (1.0 - 0.85 * field) + rng.normal(0, 0.01, field.shape)
        return Image.fromarray((np.clip(grey, 0, 1) * 65535 + 0.5).astype(np.uint16))
    if variant == "on_desk":
        ink = render_digit(digit, rng, int(rng.integers(160, 260)), rng.uniform(8, 16))
        sheet_h, sheet_w = int(rng.integers(340, 480)), int(rng.integers(300, 560))
        margin = 30  # people write inside the sheet, not on its edge
        sheet = np.pad(_place(ink, (sheet_h - 2 * margin, sheet_w - 2 * margin), rng), margin)
        field = np.full((600, 800), -1.0, dtype=np.float32)  # -1 marks the desk
        top, left = int(rng.integers(0, 600 - sheet_h)), int(rng.integers(0, 800 - sheet_w))
        field[top : top + sheet_h, left : left + sheet_w] = sheet
        photo = np.asarray(_photo(np.clip(field, 0.0, 1.0), rng, lighting=0.3), dtype=np.float32)
        desk = np.array([0.35, 0.24, 0.15]) * rng.uniform(0.5, 1.2) * 255
        grain = rng.normal(0, 6, (600, 1, 1)) + rng.normal(0, 4, (600, 800, 1))
        photo = np.where((field < 0)[..., None], desk + grain, photo)
        return Image.fromarray(np.clip(photo + 0.5, 0, 255).astype(np.uint8))
    raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
