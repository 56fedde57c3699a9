"""From one user input to the 28x28 image a model sees: the rule ``Predictor.predict`` and the
HTTP server share, so that the two cannot drift apart.

- A 28x28 image that already looks like MNIST (light ink on a dark field: a uint8 array,
  a uint8 tensor, a float tensor in [0, 1], or a 28x28 image file) is used as it is.
- Anything else goes through :func:`~mnist_classifier.inference.preprocess.preprocess`:
  the digit is found, fitted into 20x20 and centred by its centre of mass.
- With ``as_is=True`` the input is MNIST-style pixels by contract (the API's JSON
  pixels): they are used as they are, and only a blank field (no pixel of ink above 0,
  or no pixel of background below 255) is refused.

Every failure is an :class:`~mnist_classifier.errors.ImageError` naming the input, with
its ``reason``; an exception the library did not foresee (a decoder's odd error, a bug)
becomes one with reason ``"unexpected"`` and the original as its ``__cause__``, so a
bad input fails alone instead of taking a whole batch down.

Neither torch nor onnxruntime is imported: a torch tensor is recognised only when the
caller has already imported torch.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ImageError, MnistClassifierError
from .image_io import (
    MNIST_SIDE,
    default_name,
    load_for_analysis,
    public_detail,
    unit_floats_to_uint8,
)
from .preprocess import ANALYSIS_SIDE, preprocess, preprocess_loaded

__all__ = ["Prepared", "mnist_style_pixels", "prepare_image"]

# A 28x28 greyscale image is taken as already MNIST-style (used as it is, not
# preprocessed) when it is light ink on a dark field: its outer ring of pixels is
# dark on average and some pixel is bright. Every MNIST image passes (the darkest
# ring mean of the 70,000 is 8.3).
_MNIST_RING_MAX_MEAN = 32.0
_MNIST_INK_MIN = 128


@dataclass(frozen=True)
class Prepared:
    """One input made ready for the model."""

    name: str  # how messages name the input
    pixels: np.ndarray  # (28, 28) uint8, white ink on black: what the model sees
    preprocessed: bool  # False when the input was used as it is
    # (left, top, right, bottom) of the digit in the loaded image's pixels (as
    # PreprocessResult.box); None when the input was used as it is.
    box: tuple[int, int, int, int] | None = None


def prepare_image(source: Any, *, name: str | None = None, as_is: bool = False) -> Prepared:
    """The 28x28 image the model sees for ``source`` (see the module's rules).

    ``source`` is a path, bytes, a binary file object, a PIL image, a numpy array or a
    torch tensor. Raises :class:`ImageError` (with its ``reason``) and nothing else.
    """
    label = name or default_name(source)
    try:
        return _prepare(source, label, as_is)
    except MnistClassifierError:
        raise
    except Exception as exc:  # a decoder bug must not sink the other inputs
        message = f"{label}: cannot be processed ({type(exc).__name__}: {public_detail(exc)})"
        raise ImageError(message, reason="unexpected") from exc


def _prepare(source: Any, label: str, as_is: bool) -> Prepared:
    if is_tensor(source):
        source = _tensor_to_array(source, label)
    if as_is:
        return _as_given(source, label)
    if isinstance(source, np.ndarray):
        if source.ndim == 3 and source.shape[0] == 1:
            source = source[0]
        if source.shape == (MNIST_SIDE, MNIST_SIDE) and source.dtype == np.uint8:
            pixels = mnist_style_pixels(source)
            if pixels is not None:
                return Prepared(label, pixels, preprocessed=False)
        return _preprocessed(source, label)
    readable = str | os.PathLike | bytes | bytearray | memoryview | Image.Image
    if not isinstance(source, readable) and not hasattr(source, "read"):
        raise ImageError(
            f"{label}: cannot read an image from a {type(source).__name__}", reason="bad_input"
        )
    image, full_size = load_for_analysis(source, side=ANALYSIS_SIDE, name=label)
    pixels = mnist_style_pixels(image)
    if pixels is not None:
        return Prepared(label, pixels, preprocessed=False)
    result = preprocess_loaded(image, full_size, name=label)
    return Prepared(label, result.image, preprocessed=True, box=result.box)


def _preprocessed(image: np.ndarray | Image.Image, label: str) -> Prepared:
    result = preprocess(image, name=label)
    return Prepared(label, result.image, preprocessed=True, box=result.box)


def _as_given(source: Any, label: str) -> Prepared:
    """MNIST-style pixels used as they are; a blank field holds no digit to name.

    Blank: every pixel is 0 (no ink) or every pixel is 255 (no background). The API's
    OpenAPI schema states the same rule, so a schema-valid body is never refused here.
    """
    a = np.asarray(source)
    if a.dtype != np.uint8 or a.shape != (MNIST_SIDE, MNIST_SIDE):
        raise ImageError(
            f"{label}: MNIST-style pixels must be uint8 of shape (28, 28); got {a.dtype} {a.shape}",
            reason="bad_input",
        )
    low, high = int(a.min()), int(a.max())
    if high == 0 or low == 255:  # the model would still name a digit; there is none to name
        raise ImageError(f"{label}: no digit found (every pixel is {low})", reason="no_digit")
    return Prepared(label, np.array(a, copy=True), preprocessed=False)


def mnist_style_pixels(image: Image.Image | np.ndarray) -> np.ndarray | None:
    """The pixels of a 28x28 image that already looks like MNIST (light ink on dark), else None."""
    if isinstance(image, np.ndarray):
        a = image
    elif image.size == (MNIST_SIDE, MNIST_SIDE):
        a = np.asarray(image.convert("L"), dtype=np.uint8)
    else:
        return None
    ring = np.concatenate([a[0], a[-1], a[1:-1, 0], a[1:-1, -1]])
    if ring.mean() <= _MNIST_RING_MAX_MEAN and int(a.max()) >= _MNIST_INK_MIN:
        return np.array(a, copy=True)
    return None


def is_tensor(x: object) -> bool:
    """Whether ``x`` is a torch tensor (without importing torch: none exists unless it was)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _tensor_to_array(tensor: Any, name: str) -> np.ndarray:
    """A torch tensor as a numpy image: 28x28 uint8 as it is, floats in [0, 1] scaled to 0..255."""
    a = tensor.detach().cpu().numpy()
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (3, 4):
        a = np.moveaxis(a, 0, -1)  # (C, H, W) -> (H, W, C)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if np.issubdtype(a.dtype, np.floating):
        if a.size == 0:
            raise ImageError(f"{name}: the tensor holds no pixels", reason="bad_input")
        return unit_floats_to_uint8(a, name, "tensor")
    return a
