"""Reading user images: any path, bytes, file object, PIL image or array -> one upright 8-bit image.

:func:`load_image` opens encoded images in the formats of ``ACCEPTED_FORMATS`` only (PNG,
JPEG, BMP, GIF, TIFF, WebP, recognised from their content whatever the name says: no other
Pillow plugin, and so no external program such as Ghostscript, ever sees user data),
applies EXIF orientation, scales 16-bit, 32-bit and float greyscale to 8 bits (after
downscaling them, so the conversion works on at most ``MAX_SIDE`` pixels a side), flattens
transparency onto the colour that makes it look like paper, downscales large images to
``MAX_SIDE`` and refuses images over ``MAX_PIXELS`` or ``MAX_DECODED_BYTES`` from their
header, before decoding. Every failure is an :class:`~mnist_classifier.errors.ImageError`
naming the image; its message never carries a decoder's internal paths or commands.

Only numpy and Pillow are used, so the ONNX Runtime path can use this module.
"""

from __future__ import annotations

import io
import math
import os
import re
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..data.format import IMAGE_SIDE
from ..errors import ImageError

__all__ = [
    "ACCEPTED_FORMATS",
    "MAX_DECODED_BYTES",
    "MAX_PIXELS",
    "MAX_SIDE",
    "MNIST_SIDE",
    "ImageSource",
    "decoded_bytes",
    "default_name",
    "load_for_analysis",
    "load_image",
    "probe_decoded_bytes",
]

# The encoded formats load_image opens (Pillow's plugin names), whatever a file's name or
# Content-Type says; anything else is refused as unsupported before a plugin decodes it.
ACCEPTED_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
ACCEPTED_FORMATS_TEXT = "PNG, JPEG, BMP, GIF, TIFF or WebP"
MAX_PIXELS = 40_000_000  # more pixels than this (read from the header) is refused undecoded
# More decoded bytes than this (width x height x bytes per pixel in memory, from the header)
# is refused undecoded: a 33-megapixel RGB photo fits, a 40-megapixel float32 TIFF does not.
MAX_DECODED_BYTES = 128 * 1024 * 1024
MAX_SIDE = 2048  # larger images are downscaled on load so the longest side is this many pixels
MNIST_SIDE = IMAGE_SIDE  # the field the model sees, in pixels (data/format.py)

# What load_image and preprocess accept (objects with ``__array__`` work as arrays too).
ImageSource = (
    str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes] | Image.Image | np.ndarray
)


def load_image(source: ImageSource, *, name: str | None = None) -> Image.Image:
    """Open ``source`` as an upright 8-bit image (mode ``L`` or ``RGB``) with no alpha channel.

    ``source`` may be a path, bytes, a binary file object, a PIL image, or a numpy
    array (H, W), (H, W, 3) or (H, W, 4) of uint8, uint16 or floats in [0, 1]. Encoded
    images must be in one of ``ACCEPTED_FORMATS`` (PNG, JPEG, BMP, GIF, TIFF, WebP),
    recognised from the content, not the name; of an animation only the first frame is
    used. EXIF orientation is applied; 16-bit and 32-bit greyscale is scaled to 8 bits;
    images whose longest side exceeds ``MAX_SIDE`` are downscaled (deep ones before they
    are converted); images over ``MAX_PIXELS`` or ``MAX_DECODED_BYTES`` are refused from
    their header, before any pixel is decoded.

    Transparency is flattened onto the colour that makes the transparent part look
    like paper: when the opaque pixels cover less than half of the image they are
    the strokes (a drawing on a transparent canvas), and the background is white
    behind dark strokes and black behind light ones; otherwise they are mostly
    paper, and the background takes the paper's side (white behind light paper).

    Raises :class:`ImageError` naming the file (``name``, else the path, else
    ``"<upload>"``) for a missing or empty file, data that is not an image in an accepted
    format, a truncated or corrupt file, or too many pixels or decoded bytes.
    """
    label = name or default_name(source)
    if isinstance(source, Image.Image):
        return _normalise(source, label)
    if isinstance(source, str | os.PathLike):
        return _load_path(Path(source), label, None)[0]
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        if not data:
            raise ImageError(f"{label}: empty file", reason="unreadable")
        return _decode(io.BytesIO(data), label, None)[0]
    if hasattr(source, "read"):
        return _load_file_object(source, label, None)[0]
    if isinstance(source, np.ndarray) or hasattr(source, "__array__"):
        return _normalise(_from_array(np.asarray(source), label), label)
    raise ImageError(
        f"{label}: cannot read an image from a {type(source).__name__}", reason="bad_input"
    )


def load_for_analysis(
    source: ImageSource, *, side: int, name: str | None = None
) -> tuple[Image.Image, tuple[int, int]]:
    """Like :func:`load_image`, for a reader that looks at no more than ``side`` pixels a side.

    A JPEG more than twice that big is decoded at 1/2, 1/4 or 1/8 scale straight to
    greyscale (libjpeg's draft mode, much faster than decoding every pixel), keeping at
    least ``side`` pixels a side; other images load as :func:`load_image` loads them.
    Returns the image and the size (width, height) that :func:`load_image` would have
    returned, so that positions found on the smaller image can be given in its pixels.
    The same checks apply (pixel and decoded-size limits, from the header).
    """
    label = name or default_name(source)
    if isinstance(source, str | os.PathLike):
        return _load_path(Path(source), label, side)
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        if not data:
            raise ImageError(f"{label}: empty file", reason="unreadable")
        return _decode(io.BytesIO(data), label, side)
    if hasattr(source, "read") and not isinstance(source, Image.Image):
        return _load_file_object(source, label, side)
    image = load_image(source, name=label)
    return image, image.size


def default_name(source: object) -> str:
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


# What _decode returns: the image, and the size load_image returns for the same data.
_Loaded = tuple[Image.Image, tuple[int, int]]


def _load_path(path: Path, label: str, side: int | None) -> _Loaded:
    try:
        if path.is_dir():
            raise ImageError(f"{label}: is a directory, not an image", reason="unreadable")
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageError(f"{label}: no such file", reason="unreadable") from None
    except OSError as exc:
        raise ImageError(
            f"{label}: cannot read ({exc.strerror or exc})", reason="unreadable"
        ) from None
    if size == 0:
        raise ImageError(f"{label}: empty file", reason="unreadable")
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below, after decoding
    except OSError as exc:
        raise ImageError(
            f"{label}: cannot read ({exc.strerror or exc})", reason="unreadable"
        ) from None
    with fh:
        return _decode(fh, label, side)


def _load_file_object(fh: Any, label: str, side: int | None) -> _Loaded:
    seekable = getattr(fh, "seekable", None)
    if callable(seekable) and seekable():
        start = fh.tell()
        end = fh.seek(0, io.SEEK_END)
        fh.seek(start)
        if end <= start:
            raise ImageError(f"{label}: empty file", reason="unreadable")
        return _decode(fh, label, side)
    data = fh.read()
    if not isinstance(data, bytes):
        raise ImageError(f"{label}: file object must be opened in binary mode", reason="bad_input")
    if not data:
        raise ImageError(f"{label}: empty file", reason="unreadable")
    return _decode(io.BytesIO(data), label, side)


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (its type's name when it has none)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


# What looks like a file system path inside a decoder's message (POSIX or Windows).
_PATH_LIKE = re.compile(r"(?<![^\s'\"(=])(?:[A-Za-z]:)?[\\/][^\s'\",;()]*")
_DETAIL_MAX = 120


def public_detail(exc: BaseException) -> str:
    """A decoder's message, fit to show a remote client: one line, paths cut out, short."""
    text = _PATH_LIKE.sub("<path>", one_line(exc))
    return text if len(text) <= _DETAIL_MAX else text[: _DETAIL_MAX - 3] + "..."


def _corrupt(label: str, exc: BaseException) -> ImageError:
    return ImageError(
        f"{label}: truncated or corrupt image ({public_detail(exc)})", reason="unreadable"
    )


def _unsupported(label: str) -> ImageError:
    return ImageError(
        f"{label}: not an image in an accepted format ({ACCEPTED_FORMATS_TEXT})",
        reason="unsupported_format",
    )


def decoded_bytes(size: tuple[int, int], mode: str) -> int:
    """Bytes Pillow holds for an image of ``size`` in ``mode`` once decoded.

    1-bit, 8-bit greyscale and palette images take a byte a pixel, 16-bit greyscale two;
    everything else (RGB included) four.
    """
    width, height = size
    per_pixel = 1 if mode in ("1", "L", "P") else 2 if mode.startswith("I;16") else 4
    return max(width, 0) * max(height, 0) * per_pixel


def _check_decoded_bytes(size: tuple[int, int], mode: str, label: str) -> None:
    needed = decoded_bytes(size, mode)
    if needed > MAX_DECODED_BYTES:
        width, height = size
        raise ImageError(
            f"{label}: too large to decode ({width}x{height} {mode} needs"
            f" {needed / 2**20:.0f} MiB; the limit is {MAX_DECODED_BYTES / 2**20:g} MiB)",
            reason="too_large",
        )


def probe_decoded_bytes(data: bytes) -> int:
    """The memory ``load_image(data)`` would decode into, from the header alone (0 if unreadable).

    Cheap (no pixel is decoded): callers use it to budget and schedule work.
    """
    try:
        with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as im:
            _draft_jpeg(im)
            return decoded_bytes(im.size, im.mode)
    except Exception:  # not an image, or a corrupt header: load_image will say which
        return 0


def _draft_jpeg(im: Image.Image, side: int = MAX_SIDE, mode: str | None = None) -> None:
    """Have a large JPEG decode at 1/2, 1/4 or 1/8 scale when that still leaves >= ``side``.

    ``mode`` "L" also has it decode straight to greyscale.
    """
    if im.format == "JPEG" and (max(im.size) > side or mode is not None):
        k = min(side / max(im.size), 1.0)
        im.draft(mode, (math.ceil(im.width * k), math.ceil(im.height * k)))


def _loaded_size(size: tuple[int, int], orientation: object) -> tuple[int, int]:
    """The size load_image returns for an image stored at ``size`` with that EXIF orientation."""
    width, height = size
    if max(size) > MAX_SIDE:  # as Image.thumbnail rounds
        k = MAX_SIDE / max(size)
        width, height = max(1, round(width * k)), max(1, round(height * k))
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _check_pixels(size: tuple[int, int], label: str) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(f"{label}: image has no pixels ({width}x{height})", reason="unreadable")
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"{label}: too many pixels ({width}x{height} = {width * height / 1e6:.1f} megapixels;"
            f" the limit is {MAX_PIXELS / 1e6:g})",
            reason="too_large",
        )


def _decode(fp: IO[bytes], label: str, side: int | None) -> _Loaded:
    # Pillow's own decompression-bomb guard (Image.MAX_IMAGE_PIXELS, ~89 Mpx: a warning, an
    # error above twice that) is left as it is; MAX_PIXELS is lower, so any image it would
    # let through is refused below from the header size, before decoding.
    try:
        im = Image.open(fp, formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError:
        limit = f"over {MAX_PIXELS / 1e6:g} megapixels"
        raise ImageError(f"{label}: too many pixels ({limit})", reason="too_large") from None
    except UnidentifiedImageError:
        raise _unsupported(label) from None
    except Exception as exc:  # corrupt headers make plugins raise many kinds of errors
        raise ImageError(
            f"{label}: corrupt image header ({public_detail(exc)})", reason="unreadable"
        ) from None
    with im:
        if im.format not in ACCEPTED_FORMATS:  # (a plugin's factory chose another class)
            raise _unsupported(label)
        _check_pixels(im.size, label)
        stored = im.size
        if (
            side is not None
            and im.format == "JPEG"
            and im.mode in ("L", "RGB", "YCbCr")
            and max(stored) > MNIST_SIDE  # (a 28x28 JPEG may be MNIST-style: read it as is)
        ):
            _draft_jpeg(im, min(side, MAX_SIDE), "L")
        else:
            _draft_jpeg(im)
        _check_decoded_bytes(im.size, im.mode, label)
        try:
            im.load()
        except Exception as exc:  # truncated or corrupt pixel data
            raise _corrupt(label, exc) from None
        out = _normalise(im, label)
        if side is None:
            return out, out.size
        try:
            orientation = im.getexif().get(0x0112)
        except Exception:  # a corrupt EXIF block: _normalise kept the pixels as stored
            orientation = None
        return out, _loaded_size(stored, orientation)


def _normalise(im: Image.Image, label: str) -> Image.Image:
    """Upright, 8-bit, at most MAX_SIDE, alpha flattened: mode L or RGB."""
    _check_pixels(im.size, label)
    if _is_deep(im.mode) and max(im.size) > MAX_SIDE:
        # Shrink 16-bit, 32-bit and float images while still in their own mode: converting
        # first would copy every pixel into float64 arrays (8 bytes each, several times).
        try:
            im = _fit(im, Image.Resampling.BOX)
        except Exception as exc:
            raise _corrupt(label, exc) from None
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
        raise _corrupt(label, exc) from None
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
    if _is_deep(mode):
        return Image.fromarray(_scale_deep(np.asarray(im), mode))
    try:
        return im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX, ...
    except Exception as exc:
        raise ImageError(
            f"{label}: unsupported image mode {mode} ({one_line(exc)})", reason="unreadable"
        ) from None


def _is_deep(mode: str) -> bool:
    """16-bit, 32-bit integer or float greyscale."""
    return mode.startswith("I") or mode == "F"


def _fit(im: Image.Image, resample: Image.Resampling) -> Image.Image:
    """``im`` shrunk so that its longest side is MAX_SIDE, aspect kept."""
    k = MAX_SIDE / max(im.size)
    size = (max(1, round(im.width * k)), max(1, round(im.height * k)))
    return im.resize(size, resample)


def _scale_deep(values: np.ndarray, mode: str) -> np.ndarray:
    """16-bit, 32-bit integer or float greyscale -> uint8.

    ``I;16*`` modes use the full 0..65535 range. For ``I`` (32-bit) the range is not
    stored: values within 0..255 are taken as 8-bit, within 0..65535 as 16-bit,
    anything else is stretched from its minimum to its maximum. ``F`` within [0, 1]
    is scaled by 255, within [0, 255] taken as is, else stretched.
    """
    # float32 and in-place arithmetic: one working copy of the pixels, 4 bytes each.
    a = values.astype(np.float32)
    if mode.startswith("I;16"):
        a /= 257.0
    else:
        a[~np.isfinite(a)] = 0.0
        lo, hi = float(a.min()), float(a.max())
        if mode == "F" and lo >= 0.0 and hi <= 1.0:
            a *= 255.0
        elif lo >= 0.0 and hi <= 255.0:
            pass
        elif mode != "F" and lo >= 0.0 and hi <= 65535.0:
            a /= 257.0
        elif hi > lo:
            a -= lo
            a *= 255.0 / (hi - lo)
        else:
            a[...] = 0.0
    np.rint(a, out=a)
    np.clip(a, 0, 255, out=a)
    return a.astype(np.uint8)


def _from_array(a: np.ndarray, label: str) -> Image.Image:
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise ImageError(
            f"{label}: an array of shape {a.shape} is not an image;"
            " expected (H, W), (H, W, 3) or (H, W, 4)",
            reason="bad_input",
        )
    _check_pixels((a.shape[1], a.shape[0]), label)
    if a.dtype == np.bool_:
        out = a.astype(np.uint8) * 255
    elif a.dtype == np.uint8:
        out = a
    elif a.dtype == np.uint16:
        out = np.round(a / 257.0).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.floating):
        out = unit_floats_to_uint8(a, label, "array")
    elif np.issubdtype(a.dtype, np.integer):
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 255:
            raise ImageError(
                f"{label}: integer pixel values must lie in 0..255 (found {lo} to {hi});"
                " pass 16-bit data as uint16",
                reason="bad_input",
            )
        out = a.astype(np.uint8)
    else:
        raise ImageError(f"{label}: unsupported array dtype {a.dtype}", reason="bad_input")
    return Image.fromarray(np.ascontiguousarray(out))


def unit_floats_to_uint8(a: np.ndarray, label: str, what: str) -> np.ndarray:
    """Float pixels in [0, 1] as uint8 0..255; NaN, infinities and other ranges are refused.

    ``what`` names the container in messages ("array", "tensor").
    """
    if not np.isfinite(a).all():
        raise ImageError(f"{label}: the {what} holds NaN or infinite values", reason="bad_input")
    lo, hi = float(a.min()), float(a.max())
    if lo < 0.0 or hi > 1.0:
        raise ImageError(
            f"{label}: float {what} values must lie in [0, 1] (found {lo:g} to {hi:g}); "
            "pass pixels, not normalised values",
            reason="bad_input",
        )
    return np.clip(np.round(a * 255.0), 0, 255).astype(np.uint8)


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
