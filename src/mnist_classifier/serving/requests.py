"""From a request to the images it holds, from images to answers, and every refusal as an error.

A request's images become :class:`Source` objects (encoded files, or MNIST-style JSON
pixels); :func:`classify` prepares each by the rule ``Predictor.predict`` follows
(:func:`~mnist_classifier.inference.prepare.prepare_image`) and runs the model once on
all that could be read. A refusal is an :class:`ApiError` (status and one-line message);
a refused image gets the status of its ``ImageError.reason`` (``IMAGE_ERROR_STATUS``).
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from PIL import Image
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ImageError, ImageErrorReason
from ..inference.prepare import prepare_image
from .schemas import MAX_BATCH, BatchPixelsBody, PixelsBody, PredictionOut

__all__ = [
    "IMAGE_ERROR_STATUS",
    "ApiError",
    "Outcome",
    "PredictorLike",
    "Source",
    "answer",
    "classify",
    "error_response",
    "read_batch",
    "read_single",
    "validation_message",
]

logger = logging.getLogger(__name__)
Body = TypeVar("Body", bound=BaseModel)


class PredictorLike(Protocol):
    """What the app needs of a predictor (``inference.predictor.Predictor`` has it all)."""

    model_name: str
    checkpoint_path: str
    backend: str
    mean: float
    std: float
    metrics: dict[str, Any] | None
    parameters: int | None
    package_version: str | None

    def predict_mnist(self, images_28: np.ndarray) -> np.ndarray:
        """(N, 28, 28) uint8 white-on-black -> (N, 10) probabilities."""
        ...


# ---------------------------------------------------------------------------------------------
# Errors


class ApiError(Exception):
    """A request the API refuses: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def validation_message(exc: ValidationError | RequestValidationError, *, root: str = "") -> str:
    """The first validation problem as one line: ``pixels[3][5]: Input should be ... (got 300)``."""
    errors = exc.errors()
    first = errors[0]
    if first.get("type") == "json_invalid":
        return f"body is not valid JSON ({first.get('msg', '')})"
    where = root
    for part in first.get("loc", ()):
        if part == "body":
            continue
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
    message = str(first.get("msg", "invalid value")).replace(" after validation", "")
    if first.get("type") not in ("missing", "model_type", "too_short", "too_long", "list_type"):
        shown = repr(first.get("input"))
        message += f" (got {shown[:40]})"
    extra = len(errors) - 1
    more = f" (and {extra} more problem{'s' if extra > 1 else ''})" if extra else ""
    return f"{where or 'body'}: {message}{more}"


# The HTTP status for each kind of image refused (ImageError.reason). Only an unexpected
# failure (a bug) is a 5xx; in a batch it is that image's error, like any other.
IMAGE_ERROR_STATUS: dict[ImageErrorReason, int] = {
    "unreadable": 400,  # empty, truncated or corrupt
    "unsupported_format": 415,  # not an image
    "too_large": 413,  # over the pixel cap
    "bad_input": 422,
    "no_digit": 422,
    "several_digits": 422,
    "unexpected": 500,
}


# ---------------------------------------------------------------------------------------------
# From request to images, and from images to answers


@dataclass
class Source:
    """One image of a request: encoded file bytes, or MNIST-style pixels."""

    name: str
    data: bytes | np.ndarray


@dataclass
class Outcome:
    """What became of one source: the 28x28 and its probabilities, or an error and status."""

    name: str
    image: np.ndarray | None = None  # (28, 28) uint8
    probabilities: np.ndarray | None = None  # (10,) float
    status: int = 200
    error: str | None = None


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _unsupported(media_type: str, accepted: str) -> ApiError:
    shown = media_type or "none"
    return ApiError(415, f"Content-Type {shown} is not accepted; send {accepted}")


async def read_single(request: Request) -> Source:
    """The one image of a ``POST /api/predict`` request."""
    media_type = _media_type(request)
    if media_type == "application/json":
        body = await _json_body(request, PixelsBody)
        return Source("pixels", _pixels_to_uint8(body.pixels))
    if media_type == "multipart/form-data":
        uploads = await _form_uploads(request, "file", limit=1)
        if len(uploads) != 1:
            raise ApiError(422, "send one image in field 'file' (several go to /api/predict/batch)")
        return uploads[0]
    if media_type.startswith("image/") or media_type == "application/octet-stream":
        return Source("upload", await request.body())
    raise _unsupported(
        media_type, "multipart/form-data (field 'file'), an image/* body or application/json"
    )


async def read_batch(request: Request) -> list[Source]:
    """The images of a ``POST /api/predict/batch`` request."""
    media_type = _media_type(request)
    if media_type == "application/json":
        body = await _json_body(request, BatchPixelsBody)
        return [Source(f"images[{i}]", _pixels_to_uint8(p)) for i, p in enumerate(body.images)]
    if media_type == "multipart/form-data":
        uploads = await _form_uploads(request, "files", limit=MAX_BATCH)
        if not uploads:
            raise ApiError(422, "no images: send them in field 'files' (repeat it for each)")
        return uploads
    raise _unsupported(media_type, "multipart/form-data (field 'files') or application/json")


async def _json_body(request: Request, model: type[Body]) -> Body:
    """The JSON body as ``model``: invalid JSON is a 400, JSON of the wrong shape a 422."""
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        message = validation_message(exc)
        status = 400 if message.startswith("body is not valid JSON") else 422
        raise ApiError(status, message) from None


async def _form_uploads(request: Request, field: str, *, limit: int) -> list[Source]:
    """The files sent in multipart ``field`` (at most ``limit``), as sources."""
    # Starlette answers a malformed multipart body, or too many files, with a 400.
    try:
        form = await request.form(max_files=limit, max_fields=16)
    except StarletteHTTPException as exc:
        if "too many files" in str(exc.detail).lower():
            raise ApiError(
                422, f"too many files in field '{field}': at most {limit} per request"
            ) from None
        raise
    try:
        sources = []
        for value in form.getlist(field):
            if not isinstance(value, UploadFile):
                raise ApiError(
                    422, f"field '{field}' must be a file upload (with a filename), not text"
                )
            sources.append(Source(_upload_name(value.filename), await value.read()))
        if not sources:
            others = ", ".join(sorted(set(form.keys()))) or "none"
            raise ApiError(422, f"no file in field '{field}' (fields sent: {others[:200]})")
        return sources
    finally:
        await form.close()  # spooled temporary files


def _upload_name(filename: str | None) -> str:
    """The file's own name (no client-side folders), short enough to echo in answers."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    return name[:100] or "upload"


def _pixels_to_uint8(pixels: list[list[float]]) -> np.ndarray:
    return np.clip(np.rint(np.asarray(pixels, dtype=np.float64)), 0, 255).astype(np.uint8)


def classify(
    predictor: PredictorLike,
    sources: list[Source],
    costs: list[int] | None = None,
    budget: int | None = None,
) -> list[Outcome]:
    """Preprocess every source, then run the model once on all that could be read.

    ``costs`` are the bytes each source decodes into (``limits.decode_cost``); once their
    running total passes ``budget``, the remaining images are refused (413) undecoded, so
    one request's work stays bounded. Blocking (decoding, numpy, the model): call it from
    a worker thread.
    """
    outcomes = []
    spent = 0
    for i, source in enumerate(sources):
        spent += costs[i] if costs is not None else 0
        if budget is not None and spent > budget:
            message = (
                f"{source.name}: not decoded: the images of this request decode into more than"
                f" {budget / 2**20:g} MiB together; send fewer or smaller images per request"
            )
            outcomes.append(Outcome(source.name, status=413, error=message))
        else:
            outcomes.append(_prepare(source))
    ready = [o for o in outcomes if o.error is None]
    if ready:
        batch = np.stack([o.image for o in ready if o.image is not None])
        probabilities = np.asarray(predictor.predict_mnist(batch), dtype=np.float64)
        for outcome, probs in zip(ready, probabilities, strict=True):
            outcome.probabilities = probs
    return outcomes


def _prepare(source: Source) -> Outcome:
    """The 28x28 for one source, by the rule `Predictor.predict` follows (JSON pixels as given)."""
    try:
        prepared = prepare_image(
            source.data, name=source.name, as_is=isinstance(source.data, np.ndarray)
        )
    except ImageError as exc:
        if exc.reason == "unexpected":  # a bug: keep its traceback in the server's log
            logger.error("%s", exc, exc_info=exc)
        return Outcome(source.name, status=IMAGE_ERROR_STATUS[exc.reason], error=str(exc))
    return Outcome(source.name, image=prepared.pixels)


def png_data_url(image: np.ndarray) -> str:
    """A (H, W) uint8 array as a ``data:image/png;base64,...`` URL."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), mode="L").save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def answer(outcome: Outcome) -> PredictionOut:
    assert outcome.probabilities is not None and outcome.image is not None
    probabilities = [round(float(p), 6) for p in outcome.probabilities]
    digit = int(np.argmax(outcome.probabilities))
    return PredictionOut(
        name=outcome.name,
        digit=digit,
        confidence=probabilities[digit],
        probabilities=probabilities,
        image=png_data_url(outcome.image),
    )
