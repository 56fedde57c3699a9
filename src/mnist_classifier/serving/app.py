"""The HTTP API and the drawing page, as one FastAPI app: ``create_app(predictor)``.

Endpoints (OpenAPI at ``/openapi.json``, rendered at ``/docs``):

- ``GET /``                  the drawing page (``static/index.html``; assets under ``/static``)
- ``GET /api/health``        liveness: ``{"status": "ok", "model": ...}``
- ``GET /healthz``, ``/readyz`` the same for orchestrators, with the answering ``pid`` (``probes``)
- ``GET /metrics``           Prometheus text format (``metrics``)
- ``GET /docs``, ``/redoc``   the API documentation, every asset from this server (``docs_pages``)
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

Before any of that, ``security.OriginPolicy`` refuses other Host headers (400, with
``allowed_hosts``) and browser requests from other origins (403, unless in
``cors_origins``), and ``body_limit.BodySizeLimit`` refuses bodies that are too slow
(408) or that would pass the in-flight upload cap (503). A request cut off by shutdown
after the drain time gets a 503. Every number is in ``limits.ServerLimits``.

Every answer carries an ``X-Request-ID`` (the client's, if valid, else a new one), also
written in the access log (``request_id``).

Preprocessing and inference run in worker threads (at most ``max_workers`` at a
time, in two lanes by the bytes the images decode into: ``scheduling.WorkLanes``), so
the event loop keeps answering while a batch is being classified, and small requests
while big ones run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import partial
from pathlib import Path

import anyio
import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from .body_limit import BodySizeLimit
from .docs_pages import add_docs_pages
from .limits import ServerLimits
from .metrics import METRICS_CONTENT_TYPE, MetricsMiddleware, ServingMetrics
from .probes import add_probes
from .request_id import RequestIdMiddleware
from .requests import (
    ApiError,
    Outcome,
    PredictorLike,
    Source,
    answer,
    error_response,
    read_batch,
    read_single,
    validation_message,
)
from .scheduling import AnswerUnhandled, AnswerWhenCancelled, WorkLanes, decode_cost
from .schemas import (
    BATCH_BODY_DOC,
    ERROR_RESPONSES,
    MAX_BATCH,
    MAX_BODY_BYTES,
    SINGLE_BODY_DOC,
    BatchItemOut,
    HealthOut,
    ModelOut,
    PredictionOut,
    metrics_summary,
)
from .security import OriginPolicy

__all__ = ["MAX_BATCH", "MAX_BODY_BYTES", "STATIC_DIR", "PredictorLike", "create_app"]

logger = logging.getLogger(__name__)
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


def create_app(
    predictor: PredictorLike,
    *,
    max_workers: int | None = None,
    limits: ServerLimits | None = None,
    cors_origins: Iterable[str] = (),
    allowed_hosts: Iterable[str] | None = None,
) -> FastAPI:
    """The FastAPI app serving ``predictor`` (loaded once by the caller, shared by requests).

    ``max_workers`` bounds how many light requests preprocess and classify at the same
    time (default: the number of CPUs, at least 2; heavy requests, those whose images
    decode into more than ``limits.light_request_bytes``, get half as many slots of their
    own); others wait their turn without blocking the event loop. ``limits``: the
    server's limits (``ServerLimits()`` by default). ``cors_origins``: other web origins
    allowed to call the API (``scheme://host[:port]``); requests from any other origin
    are refused. ``allowed_hosts``: the host names the server answers to (``Host``
    header; ``*.example.com`` matches subdomains); None answers to any.
    """
    limits = limits or ServerLimits()
    lanes = WorkLanes(max_workers, limits.light_request_bytes)
    app = FastAPI(
        title="mnist-classifier",
        version=__version__,
        summary="Handwritten digits: draw one in the browser, or send images to the API.",
        description=(
            f"Serving model **{predictor.model_name}** ({predictor.backend}). "
            'Errors are answered as `{"error": "..."}` with a 4xx status.'
        ),
        docs_url=None,  # served offline by docs_pages
        redoc_url=None,
    )
    metrics = ServingMetrics(predictor)
    app.state.metrics = metrics

    async def run_classify(sources: list[Source]) -> list[Outcome]:
        # Weighed from the headers (in a thread: parsing hostile headers is work too), then
        # run in the lane of that weight, within the request's decoding budget.
        data = [s.data for s in sources]
        if all(isinstance(d, np.ndarray) for d in data):
            costs = decode_cost(data)  # JSON pixels: no header to parse, no thread to wake
        else:
            costs = await anyio.to_thread.run_sync(decode_cost, data)
        work = partial(
            metrics.classify, predictor, sources, costs, limits.max_request_decoded_bytes
        )
        return await lanes.run(sum(costs), work)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, validation_message(exc))

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)

    @app.get(
        "/api/health", response_model=HealthOut, summary="Is the server up with its model loaded?"
    )
    async def health() -> HealthOut:
        return HealthOut(status="ok", model=predictor.model_name)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        text = await anyio.to_thread.run_sync(metrics.exposition)  # reads workers' files
        return Response(text, media_type=METRICS_CONTENT_TYPE)

    add_probes(app, predictor)
    add_docs_pages(app)

    @app.get("/api/model", response_model=ModelOut, summary="The served model and its metrics")
    async def model_info() -> ModelOut:
        return ModelOut(
            model=predictor.model_name,
            source=getattr(predictor, "label", None),
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
        return answer(outcome)

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
                items.append(BatchItemOut(**answer(outcome).model_dump()))
        return items

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(AnswerUnhandled)  # innermost: a bug's 500 passes every layer below
    app.add_middleware(
        BodySizeLimit,
        max_bytes=limits.max_body_bytes,
        max_inflight_bytes=limits.max_inflight_body_bytes,
        idle_timeout=limits.body_idle_timeout,
        total_timeout=limits.body_timeout,
    )
    # Who may ask is settled before a body is read.
    app.add_middleware(OriginPolicy, cors_origins=cors_origins, allowed_hosts=allowed_hosts)
    app.add_middleware(AnswerWhenCancelled)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(RequestIdMiddleware)  # outermost: every answer carries its id
    return app
