"""The HTTP API and the drawing page, as one FastAPI app: ``create_app(predictor)``.

Endpoints (OpenAPI at ``/openapi.json``, rendered at ``/docs``):

- ``GET /``                  the drawing page (``static/index.html``; assets under ``/static``)
- ``GET /api/health``        liveness: ``{"status": "ok", "model": ...}``
- ``GET /api/model``         what is served: model name, parameters, metrics, versions
- ``POST /api/predict``      one image -> digit, confidence, ten probabilities, the 28x28 seen
- ``POST /api/predict/batch`` several images -> a list of those (or a per-image error)

What ``/api/predict`` accepts, by Content-Type:

- ``multipart/form-data`` with the image in field ``file`` (batch: ``files``, repeated);
- a raw image body (``image/png``, ``image/jpeg``, ...; single only);
- ``application/json`` ``{"pixels": [[28 rows of 28 numbers 0-255]]}`` (batch:
  ``{"images": [pixels, ...]}``): MNIST-style white ink on black, used as it is.

An image (upload or raw body) is prepared by the rule ``Predictor.predict`` follows
(:func:`mnist_classifier.inference.prepare.prepare_image`): an MNIST-style 28x28 is used
as it is; otherwise the digit is found, fitted into 20x20 and centred by its centre of
mass in 28x28, as MNIST's digits were. The drawing page therefore sends its canvas as
a PNG: a digit drawn small or off to one side reaches the model the way MNIST digits
look, which a canvas squashed to 28x28 on the client would not.

Every bad request gets a 4xx answer ``{"error": "one line"}``, never a 500:
400 malformed body (invalid JSON or multipart, empty or truncated file),
413 body over ``MAX_BODY_BYTES`` (checked from Content-Length and while reading) or
an image over the pixel cap, 415 a Content-Type not listed above or a file that is
not an image, 422 a well-formed body with the wrong content (pixels not 28x28 or not
numbers in 0-255, a missing field, too many images, no digit found). The status of a
refused image comes from its ``ImageError.reason`` (``IMAGE_ERROR_STATUS``); the one 5xx
is an image whose preparation failed in a way the library did not foresee (a bug, logged
with its traceback). In a batch, a refused image is that item's ``error``, whatever the
reason, and the others are still classified.

Preprocessing and inference run in worker threads (at most ``max_workers`` at a
time), so the event loop keeps answering while a batch is being classified.
"""

from __future__ import annotations

import base64
import io
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Protocol

import anyio
import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import ImageError, ImageErrorReason
from ..inference.image_io import MNIST_SIDE
from ..inference.prepare import prepare_image

__all__ = ["MAX_BATCH", "MAX_BODY_BYTES", "STATIC_DIR", "PredictorLike", "create_app"]

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = (
    8 * 1024 * 1024
)  # a request body over this is refused (413): photos fit, floods do not
MAX_BATCH = 64  # images in one /api/predict/batch request
STATIC_DIR = Path(__file__).resolve().parent / "static"

# The page and its assets come only from this server: no CDN, no inline script.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
        "script-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


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
# Request and response models (they are also the OpenAPI documentation)

PixelValue = Annotated[float, Field(ge=0, le=255, strict=True)]
PixelRow = Annotated[list[PixelValue], Field(min_length=MNIST_SIDE, max_length=MNIST_SIDE)]
Pixels = Annotated[
    list[PixelRow],
    Field(
        min_length=MNIST_SIDE,
        max_length=MNIST_SIDE,
        description="28 rows of 28 numbers from 0 to 255: white ink (255) on black (0), "
        "the digit already fitted and centred as in MNIST. Used as it is (fractions are "
        "rounded).",
    ),
]


class PixelsBody(BaseModel):
    """One MNIST-style image as numbers."""

    pixels: Pixels


class BatchPixelsBody(BaseModel):
    """Several MNIST-style images as numbers."""

    images: Annotated[list[Pixels], Field(min_length=1, max_length=MAX_BATCH)]


class PredictionOut(BaseModel):
    """The model's answer for one image."""

    name: str = Field(description="the uploaded file's name, or 'pixels' / 'images[i]'")
    digit: int = Field(description="the most probable digit")
    confidence: float = Field(description="its probability, 0-1")
    probabilities: list[float] = Field(description="probability of each digit 0-9")
    image: str = Field(description="the 28x28 image the model saw, as a PNG data URL")


class BatchItemOut(BaseModel):
    """One image of a batch: a prediction, or why this image could not be classified."""

    name: str
    digit: int | None = None
    confidence: float | None = None
    probabilities: list[float] | None = None
    image: str | None = None
    error: str | None = Field(default=None, description="set instead of a prediction")


class ErrorOut(BaseModel):
    """Every error answer: one line saying what was wrong."""

    error: str


class HealthOut(BaseModel):
    status: str = Field(description="'ok' once the model is loaded")
    model: str


class MetricsSummary(BaseModel):
    test_accuracy: float | None = None
    test_loss: float | None = None
    val_accuracy: float | None = None
    val_loss: float | None = None
    train_seconds: float | None = None


class ModelOut(BaseModel):
    """The served model."""

    model: str = Field(description="registered model name")
    parameters: int | None = Field(description="trainable parameters")
    backend: str = Field(description="torch or onnx")
    checkpoint: str
    metrics: MetricsSummary | None = Field(description="test/validation metrics from training")
    normalization: dict[str, float] = Field(description="mean and std applied to pixels/255")
    trained_with: str | None = Field(description="package version that wrote the checkpoint")
    server_version: str
    max_body_bytes: int
    max_batch: int


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "malformed body: invalid JSON or multipart, an empty or truncated file"},
    413: {"model": ErrorOut, "description": f"body over {MAX_BODY_BYTES} bytes, or an image with too many pixels"},
    415: {"model": ErrorOut, "description": "Content-Type not accepted, or the file is not an image"},
    422: {"model": ErrorOut, "description": "wrong content: pixels not 28x28 numbers in 0-255, a missing field, too many images, no digit found"},
    500: {"model": ErrorOut, "description": "an image's preparation failed in a way the library did not foresee (a bug)"},
}  # fmt: skip

_IMAGE_BODY = {"type": "string", "format": "binary"}
SINGLE_BODY_DOC = {
    "requestBody": {
        "required": True,
        "description": "an image upload (field `file`), a raw image body, or MNIST-style pixels",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {**_IMAGE_BODY, "description": "PNG, JPEG, ..."}},
                }
            },
            "image/*": {"schema": _IMAGE_BODY},
            "application/json": {"schema": PixelsBody.model_json_schema()},
        },
    }
}
BATCH_BODY_DOC = {
    "requestBody": {
        "required": True,
        "description": f"up to {MAX_BATCH} image uploads (field `files`, repeated) or pixel arrays",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {"files": {"type": "array", "items": _IMAGE_BODY}},
                }
            },
            "application/json": {"schema": BatchPixelsBody.model_json_schema()},
        },
    }
}


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


def _validation_message(exc: ValidationError | RequestValidationError, *, root: str = "") -> str:
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
    "unexpected": 500,
}


# ---------------------------------------------------------------------------------------------
# The request body size cap (pure ASGI, so it sees the body before any parsing)


ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]


class BodySizeLimit:
    """Refuse (413) bodies over ``max_bytes``: by Content-Length up front, else while reading.

    The body is read here, at most ``max_bytes`` of it, and handed to the app in one
    piece, so the app never reads an unbounded stream (chunked uploads included).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"request body is over the limit of {self.max_bytes} bytes"
        declared = _content_length(scope)
        if declared == -1:
            await error_response(400, "Content-Length is not a number")(scope, receive, send)
            return
        if declared is not None and declared > self.max_bytes:
            await error_response(413, too_large)(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await error_response(413, too_large)(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return dict(await receive())

        await self.app(scope, replay, send)


def _content_length(scope: MutableMapping[str, Any]) -> int | None:
    """The declared Content-Length, None when absent, -1 when not a number."""
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return None


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
        try:
            body = PixelsBody.model_validate_json(await request.body())
        except ValidationError as exc:
            raise _json_error(exc) from None
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
        try:
            body = BatchPixelsBody.model_validate_json(await request.body())
        except ValidationError as exc:
            raise _json_error(exc) from None
        return [Source(f"images[{i}]", _pixels_to_uint8(p)) for i, p in enumerate(body.images)]
    if media_type == "multipart/form-data":
        uploads = await _form_uploads(request, "files", limit=MAX_BATCH)
        if not uploads:
            raise ApiError(422, "no images: send them in field 'files' (repeat it for each)")
        return uploads
    raise _unsupported(media_type, "multipart/form-data (field 'files') or application/json")


def _json_error(exc: ValidationError) -> ApiError:
    message = _validation_message(exc)
    return ApiError(400 if message.startswith("body is not valid JSON") else 422, message)


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


def classify(predictor: PredictorLike, sources: list[Source]) -> list[Outcome]:
    """Preprocess every source, then run the model once on all that could be read.

    Blocking (decoding, numpy, the model): call it from a worker thread.
    """
    outcomes = [_prepare(source) for source in sources]
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


def _answer(outcome: Outcome) -> PredictionOut:
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


def metrics_summary(metrics: dict[str, Any] | None) -> MetricsSummary | None:
    """The headline numbers of a checkpoint's metrics block (missing ones are None)."""
    if not metrics:
        return None

    def number(split: str, key: str) -> float | None:
        block = metrics.get(split)
        value = block.get(key) if isinstance(block, dict) else None
        return float(value) if isinstance(value, int | float) else None

    seconds = metrics.get("train_seconds")
    return MetricsSummary(
        test_accuracy=number("test", "accuracy"),
        test_loss=number("test", "loss"),
        val_accuracy=number("val", "accuracy"),
        val_loss=number("val", "loss"),
        train_seconds=float(seconds) if isinstance(seconds, int | float) else None,
    )


# ---------------------------------------------------------------------------------------------
# The app


def create_app(predictor: PredictorLike, *, max_workers: int | None = None) -> FastAPI:
    """The FastAPI app serving ``predictor`` (loaded once by the caller, shared by requests).

    ``max_workers`` bounds how many requests preprocess and classify at the same time
    (default: the number of CPUs, at least 2); others wait their turn without blocking
    the event loop.
    """
    workers = max_workers or max(2, os.cpu_count() or 1)
    app = FastAPI(
        title="mnist-classifier",
        version=__version__,
        summary="Handwritten digits: draw one in the browser, or send images to the API.",
        description=(
            f"Serving model **{predictor.model_name}** ({predictor.backend}). "
            'Errors are answered as `{"error": "..."}` with a 4xx status.'
        ),
    )
    limiter: list[anyio.CapacityLimiter] = []  # created on first use, inside the event loop

    async def run_classify(sources: list[Source]) -> list[Outcome]:
        if not limiter:
            limiter.append(anyio.CapacityLimiter(workers))
        return await anyio.to_thread.run_sync(
            partial(classify, predictor, sources), limiter=limiter[0]
        )

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, _validation_message(exc))

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)

    @app.get(
        "/api/health", response_model=HealthOut, summary="Is the server up with its model loaded?"
    )
    async def health() -> HealthOut:
        return HealthOut(status="ok", model=predictor.model_name)

    @app.get("/api/model", response_model=ModelOut, summary="The served model and its metrics")
    async def model_info() -> ModelOut:
        return ModelOut(
            model=predictor.model_name,
            parameters=predictor.parameters,
            backend=predictor.backend,
            checkpoint=str(predictor.checkpoint_path),
            metrics=metrics_summary(predictor.metrics),
            normalization={"mean": float(predictor.mean), "std": float(predictor.std)},
            trained_with=predictor.package_version,
            server_version=__version__,
            max_body_bytes=MAX_BODY_BYTES,
            max_batch=MAX_BATCH,
        )

    @app.post(
        "/api/predict",
        response_model=PredictionOut,
        summary="Classify one image",
        description=(
            "Send an image (multipart field `file`, or the raw bytes with an image/* "
            "Content-Type): the digit is found, scaled and centred like MNIST before the "
            'model sees it. Or send JSON `{"pixels": ...}`: 28x28 MNIST-style numbers, '
            "used as they are."
        ),
        responses=ERROR_RESPONSES,
        openapi_extra=SINGLE_BODY_DOC,
    )
    async def predict(request: Request) -> PredictionOut:
        source = await read_single(request)
        [outcome] = await run_classify([source])
        if outcome.error is not None:
            raise ApiError(outcome.status, outcome.error)
        return _answer(outcome)

    @app.post(
        "/api/predict/batch",
        response_model=list[BatchItemOut],
        summary=f"Classify up to {MAX_BATCH} images in one request",
        description=(
            'Images as multipart field `files` (repeated), or JSON `{"images": [pixels, '
            "...]}`. Answers one item per image, in order; an image that cannot be read or "
            "holds no digit gets an item with `error` set, and the others are still classified."
        ),
        responses=ERROR_RESPONSES,
        openapi_extra=BATCH_BODY_DOC,
    )
    async def predict_batch(request: Request) -> list[BatchItemOut]:
        sources = await read_batch(request)
        items = []
        for outcome in await run_classify(sources):
            if outcome.error is not None:
                items.append(BatchItemOut(name=outcome.name, error=outcome.error))
            else:
                items.append(BatchItemOut(**_answer(outcome).model_dump()))
        return items

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
    return app
