"""The API's request and response models, its limits and the OpenAPI documentation of bodies.

FastAPI reads these to validate JSON bodies and to write ``/openapi.json``; the limits
(``MAX_BODY_BYTES``, ``MAX_BATCH``) live here because the documentation states them.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

from ..inference.image_io import MNIST_SIDE

__all__ = [
    "MAX_BATCH",
    "MAX_BODY_BYTES",
    "BatchItemOut",
    "BatchPixelsBody",
    "ErrorOut",
    "HealthOut",
    "MetricsSummary",
    "ModelOut",
    "PixelsBody",
    "PredictionOut",
    "metrics_summary",
]

# A request body over this is refused (413): photos fit, floods do not.
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_BATCH = 64  # images in one /api/predict/batch request

# Not blank, as the server checks it after rounding (numpy rounds halves to even: 0.5 -> 0,
# 254.5 -> 254): some pixel must be ink, some background.
INK = {"type": "number", "exclusiveMinimum": 0.5}
BACKGROUND = {"type": "number", "maximum": 254.5}
PixelValue = Annotated[float, Field(ge=0, le=255, strict=True)]
PixelRow = Annotated[list[PixelValue], Field(min_length=MNIST_SIDE, max_length=MNIST_SIDE)]
Pixels = Annotated[
    list[PixelRow],
    Field(
        min_length=MNIST_SIDE,
        max_length=MNIST_SIDE,
        description="28 rows of 28 numbers from 0 to 255: white ink (255) on black (0), "
        "the digit already fitted and centred as in MNIST. Used as it is (fractions are "
        "rounded to the nearest whole number, halves to even). Not blank: some pixel must "
        "round to more than 0 (ink) and some to less than 255 (background).",
        json_schema_extra={
            "allOf": [{"contains": {"contains": INK}}, {"contains": {"contains": BACKGROUND}}]
        },
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
    source: str | None = Field(
        default=None,
        description="which model answers: 'bundled: RECIPE (MODEL)' for the model shipped in "
        "the package, else 'MODEL (PATH)'",
    )
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
    403: {"model": ErrorOut, "description": "a browser request from another web origin (see serve --cors-origin)"},
    408: {"model": ErrorOut, "description": "the body did not arrive in time (a pause of more than the read timeout, or over 60 s in all)"},
    422: {"model": ErrorOut, "description": "wrong content: pixels not 28x28 numbers in 0-255, blank pixels, a missing field, too many images, no digit found"},
    500: {"model": ErrorOut, "description": "an image's preparation failed in a way the library did not foresee (a bug)"},
    503: {"model": ErrorOut, "description": "busy (too many uploads or connections at once) or shutting down: retry after Retry-After seconds"},
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
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": _IMAGE_BODY,
                            "minItems": 1,
                            "maxItems": MAX_BATCH,
                        }
                    },
                }
            },
            "application/json": {"schema": BatchPixelsBody.model_json_schema()},
        },
    }
}


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
