"""A row of digits (a zip code, a year) cut into single digits, each made ready for the model.

:func:`prepare_number` loads the image once and runs the single-digit preparation of
:mod:`.prepare` on it with the row rules of :mod:`.segment` switched on: a single digit
comes back as it is; a row of digits stops preprocessing with the digits' boxes. Each
digit is then cut out of the loaded image (the cuts run through the middle of the gaps
between neighbours, with a margin above and below the row) and prepared on its own, so
each digit of a number is preprocessed exactly as a digit read alone.

:class:`NumberReading` is what ``Predictor.read_number`` returns. Neither torch nor
onnxruntime is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PIL import Image

from ..errors import ImageError, MnistClassifierError, SeveralDigitsError
from .image_io import default_name, load_image, public_detail
from .prepare import Prepared, is_tensor, prepare_image
from .segment import reading_a_row

if TYPE_CHECKING:
    from .predictor import Prediction

__all__ = ["NumberReading", "prepare_number"]

_MARGIN = 0.25  # kept above, below and beside the row, as a share of its height
UNSURE_MARK = "?"  # how an unsure digit shows in ``NumberReading.text``


@dataclass
class NumberReading:
    """The model's reading of a row of digits in one image, left to right."""

    name: str
    digits: list[Prediction] = field(default_factory=list)  # one per digit, left to right
    error: str | None = None  # one-line message when the image failed

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def text(self) -> str:
        """The number as read ("90210"); an unsure digit shows as ``?``; "" on error."""
        return "".join(UNSURE_MARK if p.digit is None else str(p.digit) for p in self.digits)

    @property
    def complete(self) -> bool:
        """True when every digit was read (none unsure) and the image did not fail."""
        return self.ok and bool(self.digits) and all(p.digit is not None for p in self.digits)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields: name, number (null unless every digit was read), text, digits."""
        return {
            "name": self.name,
            "number": self.text if self.complete else None,
            "text": self.text,
            "digits": [
                {
                    "digit": p.digit,
                    "confidence": p.confidence,
                    "probabilities": list(p.probabilities),
                    "box": list(p.box) if p.box is not None else None,
                }
                for p in self.digits
            ],
            "error": self.error,
        }

    @classmethod
    def failed(cls, name: str, error: str) -> NumberReading:
        return cls(name=name, digits=[], error=error)


def prepare_number(source: Any, *, name: str | None = None) -> list[Prepared]:
    """The digits of the row in ``source``, left to right, each prepared for the model.

    ``source`` is anything :func:`~mnist_classifier.inference.prepare.prepare_image`
    takes; one digit gives a list of one. Each :class:`Prepared` carries its digit's box
    in the loaded image's pixels. Raises :class:`ImageError` (and nothing else).
    """
    label = name or default_name(source)
    try:
        image = _load(source, label)
        with reading_a_row():
            try:
                return [prepare_image(image, name=label)]
            except SeveralDigitsError as several:
                row = several
        return [_prepare_digit(image, crop, label) for crop in _crops(image, row)]
    except MnistClassifierError:
        raise
    except Exception as exc:  # as prepare_image: an odd failure fails this image alone
        message = f"{label}: cannot be processed ({type(exc).__name__}: {public_detail(exc)})"
        raise ImageError(message, reason="unexpected") from exc


def _load(source: Any, label: str) -> Image.Image:
    if is_tensor(source):  # as prepare_image reads it: uint8 as it is, floats in [0, 1]
        from .prepare import _tensor_to_array

        source = _tensor_to_array(source, label)
    if isinstance(source, Image.Image) or not hasattr(source, "shape"):
        return load_image(source, name=label)
    if source.ndim == 3 and source.shape[0] == 1:
        source = source[0]
    return load_image(source, name=label)


def _crops(image: Image.Image, row: SeveralDigitsError) -> list[tuple[int, int, int, int]]:
    """One (left, top, right, bottom) per digit of ``row``, in ``image``'s pixels."""
    h, w = row.shape
    sx, sy = image.width / w, image.height / h
    boxes = [(x0 * sx, y0 * sy, x1 * sx, y1 * sy) for x0, y0, x1, y1 in row.boxes]
    top = min(b[1] for b in boxes)
    bottom = max(b[3] for b in boxes)
    pad = _MARGIN * (bottom - top)
    crops = []
    for i, (x0, _, x1, _) in enumerate(boxes):
        left = (boxes[i - 1][2] + x0) / 2 if i > 0 else x0 - pad
        right = (x1 + boxes[i + 1][0]) / 2 if i + 1 < len(boxes) else x1 + pad
        crops.append(
            (
                max(0, round(left)),
                max(0, round(top - pad)),
                min(image.width, round(right)),
                min(image.height, round(bottom + pad)),
            )
        )
    return crops


def _prepare_digit(image: Image.Image, crop: tuple[int, int, int, int], label: str) -> Prepared:
    left, top, _, _ = crop
    prepared = prepare_image(image.crop(crop), name=label)
    box = prepared.box or (0, 0, crop[2] - left, crop[3] - top)  # in the crop's pixels
    box = (box[0] + left, box[1] + top, box[2] + left, box[3] + top)
    return Prepared(label, prepared.pixels, prepared.preprocessed, box)
