"""Pictures that explain a prediction: the user's image, with the part that was read boxed,
beside the 28x28 image the model saw, captioned with the digit and the top-k ranking.

The box is the one preprocessing recorded (``Prediction.box``, from
:attr:`~mnist_classifier.inference.preprocess.PreprocessResult.box`), so nothing is
preprocessed again; only the user's image is loaded again, to draw it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont

from ..evaluation.metrics import percent
from ..fileio import atomic_path
from .image_io import ImageSource, load_image

if TYPE_CHECKING:
    from .predictor import Prediction

__all__ = ["EXPLAIN_SIDE", "explain_picture", "write_explanations"]

EXPLAIN_SIDE = 224  # pixels: height of each panel of a picture


def explain_picture(p: Prediction, k: int = 3, source: ImageSource | None = None) -> Image.Image:
    """The input (with the part that was read boxed) beside the model's 28x28 input, captioned.

    ``source`` is the image that was predicted (default: the file ``p.name``); ``p`` must
    have succeeded (``p.ok``).
    """
    assert p.image is not None
    original = load_image(source if source is not None else p.name, name=p.name)
    scale = EXPLAIN_SIDE / max(original.size)
    shown_size = (max(1, round(original.width * scale)), max(1, round(original.height * scale)))
    resample = Image.Resampling.NEAREST if scale >= 2 else Image.Resampling.LANCZOS
    shown = original.convert("RGB").resize(shown_size, resample)
    if p.box is not None:
        draw = ImageDraw.Draw(shown)
        left, top, right, bottom = (round(v * scale) for v in p.box)
        draw.rectangle((left - 2, top - 2, right + 1, bottom + 1), outline=(230, 40, 40), width=2)
    seen = Image.fromarray(p.image).resize((EXPLAIN_SIDE, EXPLAIN_SIDE), Image.Resampling.NEAREST)

    font = ImageFont.load_default(size=13)  # a scalable font where FreeType is built in
    margin, gap, title_h, caption_h = 8, 12, 18, 42
    width = margin * 2 + EXPLAIN_SIDE * 2 + gap
    height = margin * 2 + title_h + EXPLAIN_SIDE + caption_h
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    left_x = margin + (EXPLAIN_SIDE - shown.width) // 2
    top_y = margin + title_h
    canvas.paste(shown, (left_x, top_y + (EXPLAIN_SIDE - shown.height) // 2))
    canvas.paste(seen.convert("RGB"), (margin + EXPLAIN_SIDE + gap, top_y))
    grey = (90, 90, 90)
    draw.text((margin, margin), "your image", fill=grey, font=font)
    draw.text(
        (margin + EXPLAIN_SIDE + gap, margin), "what the model saw (28x28)", fill=grey, font=font
    )
    digit = f"digit {p.digit}" if p.digit is not None else "unsure"
    ranking = ", ".join(f"{d}: {percent(q)}" for d, q in p.top_k(k))
    base = top_y + EXPLAIN_SIDE + 6
    draw.text(
        (margin, base),
        f"{digit} ({percent(p.confidence)})   top-{k}  {ranking}",
        fill=(0, 0, 0),
        font=font,
    )
    name = p.name if len(p.name) <= 70 else "..." + p.name[-67:]
    draw.text((margin, base + 18), name, fill=grey, font=font)
    return canvas


def write_explanations(
    folder: str | os.PathLike[str], results: Iterable[Prediction], k: int = 3
) -> int:
    """One PNG per successful prediction of a file, named after it (``-2``, ... on clashes),
    written atomically into ``folder``; returns how many were written."""
    out = Path(folder)
    used: set[str] = set()
    written = 0
    for p in results:
        if not p.ok:
            continue
        stem = Path(p.name).stem or "image"
        name, n = f"{stem}.png", 1
        while name in used:
            n += 1
            name = f"{stem}-{n}.png"
        used.add(name)
        picture = explain_picture(p, k)
        with atomic_path(out / name) as tmp:
            picture.save(tmp, format="PNG", optimize=True)
        written += 1
    return written
