"""Prometheus metrics for the server: ``GET /metrics`` in the Prometheus text format.

What is measured (every series carries the labels ``model`` and ``model_version``):

- ``mnist_classifier_http_requests_total{route, method, status}``: answered requests, by
  route template (``/api/predict``, ``/static``, ``other`` for paths no route matched);
- ``mnist_classifier_http_request_duration_seconds{route}``: time from the request's arrival
  to the end of its answer (histogram);
- ``mnist_classifier_preprocess_seconds`` and ``mnist_classifier_model_seconds``: for each
  classifying request, the time spent decoding and preparing its images, and the time the
  model took on them (histograms);
- ``mnist_classifier_images_total``: images that reached the model;
- ``mnist_classifier_http_requests_in_flight``: requests being answered now;
- ``mnist_classifier_worker_classify_requests``: classifying requests answered by each
  worker process (labelled ``pid`` when there are several), to see how they share the load;
- ``mnist_classifier_model_info{backend, trained_with, server_version}``: always 1.

``model_version`` is the first 12 hex digits of the SHA-256 of the served file, so a new
model shows up as a new version even under the same name.

With several worker processes (``serve --workers N``) each process counts its own requests;
when ``PROMETHEUS_MULTIPROC_DIR`` is set (``serve`` sets it to a fresh folder for its workers)
the values live in files there and ``/metrics`` answers the sum over all workers, whichever
worker is asked. A worker that stops cleanly removes its in-flight gauge.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any, cast

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from starlette.routing import Mount

from .. import __version__
from .requests import Outcome, PredictorLike, Source, classify

__all__ = ["METRICS_CONTENT_TYPE", "MetricsMiddleware", "ServingMetrics", "model_version"]

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "mnist_classifier"
MODEL_LABELS = ("model", "model_version")
# Seconds: a JSON digit takes about a millisecond, a large photo a good part of a second.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def model_version(path: str | os.PathLike[str]) -> str:
    """A short content hash of the served file (12 hex digits); ``unknown`` if it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return "unknown"
    return digest.hexdigest()[:12]


def multiprocess_dir() -> str | None:
    """The folder shared by worker processes, when metrics are aggregated across them."""
    return os.environ.get(MULTIPROC_ENV) or None


class ServingMetrics:
    """The server's metrics, in a registry of their own (one per app)."""

    def __init__(self, predictor: PredictorLike) -> None:
        self.labels = {
            "model": predictor.model_name,
            "model_version": model_version(predictor.checkpoint_path),
        }
        self.registry = CollectorRegistry()
        self.shared_dir = multiprocess_dir()
        if self.shared_dir is None:
            ProcessCollector(registry=self.registry)  # memory and CPU of this one process
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}_http_requests",
            "HTTP requests answered, by route, method and status",
            [*MODEL_LABELS, "route", "method", "status"],
            registry=r,
        )
        self.duration = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer",
            [*MODEL_LABELS, "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.preprocess = Histogram(
            f"{PREFIX}_preprocess_seconds",
            "Time a classifying request spent decoding and preparing its images",
            MODEL_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model = Histogram(
            f"{PREFIX}_model_seconds",
            "Time the model took on a classifying request's images",
            MODEL_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.images = Counter(
            f"{PREFIX}_images", "Images that reached the model", MODEL_LABELS, registry=r
        )
        self.worker_classified = Gauge(
            f"{PREFIX}_worker_classify_requests",
            "Classifying requests this worker process answered (a pid label with several workers)",
            MODEL_LABELS,
            multiprocess_mode="all",
            registry=r,
        )
        self.in_flight = Gauge(
            f"{PREFIX}_http_requests_in_flight",
            "Requests being answered now",
            MODEL_LABELS,
            multiprocess_mode="livesum",
            registry=r,
        )
        self.info = Gauge(
            f"{PREFIX}_model_info",
            "The served model (always 1)",
            [*MODEL_LABELS, "backend", "trained_with", "server_version"],
            multiprocess_mode="max",
            registry=r,
        )
        self.info.labels(
            **self.labels,
            backend=predictor.backend,
            trained_with=predictor.package_version or "unknown",
            server_version=__version__,
        ).set(1)
        self.in_flight.labels(**self.labels).set(0)
        self.worker_classified.labels(**self.labels).set(0)

    def exposition(self) -> bytes:
        """The current values in the Prometheus text format (summed over workers if shared)."""
        if self.shared_dir is None:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.shared_dir)
        return generate_latest(registry)

    def process_stopped(self) -> None:
        """Drop this process's live gauges from the shared folder (a worker that exits)."""
        if self.shared_dir is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid(), path=self.shared_dir)

    def classify(
        self,
        predictor: PredictorLike,
        sources: list[Source],
        costs: list[int] | None = None,
        budget: int | None = None,
    ) -> list[Outcome]:
        """``requests.classify``, timing preparation and the model apart. Blocking."""
        timed = _ModelTimer(predictor)
        start = time.perf_counter()
        outcomes = classify(cast(PredictorLike, timed), sources, costs, budget)
        total = time.perf_counter() - start
        self.worker_classified.labels(**self.labels).inc()
        self.preprocess.labels(**self.labels).observe(max(total - timed.seconds, 0.0))
        if timed.images:
            self.model.labels(**self.labels).observe(timed.seconds)
            self.images.labels(**self.labels).inc(timed.images)
        return outcomes


class _ModelTimer:
    """A predictor stand-in that adds up the time spent in ``predict_mnist``."""

    def __init__(self, predictor: PredictorLike) -> None:
        self._predictor = predictor
        self.seconds = 0.0
        self.images = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._predictor, name)

    def predict_mnist(self, images_28: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        try:
            return self._predictor.predict_mnist(images_28)
        finally:
            self.seconds += time.perf_counter() - start
            self.images += len(images_28)


class MetricsMiddleware:
    """Pure ASGI: counts every HTTP request by route template and status, times it, and
    tracks how many are in flight. A request that raises is counted as a 500."""

    def __init__(self, app: ASGIApp, metrics: ServingMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        m = self.metrics
        status = [500]

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        in_flight = m.in_flight.labels(**m.labels)
        in_flight.inc()
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_and_note)
        finally:
            in_flight.dec()
            route = route_label(scope)
            m.duration.labels(**m.labels, route=route).observe(time.perf_counter() - start)
            m.requests.labels(
                **m.labels, route=route, method=scope.get("method", ""), status=str(status[0])
            ).inc()


def route_label(scope: Scope) -> str:
    """The route template a request matched (bounded cardinality), else its mount, else ``other``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    app = scope.get("app")
    request_path = str(scope.get("path", ""))
    for candidate in getattr(app, "routes", ()):
        mount = getattr(candidate, "path", "")
        if isinstance(candidate, Mount) and request_path.startswith(mount + "/"):
            return mount
    return "other"


def shared_dir_for_workers(folder: Path) -> None:
    """Point this process (and the workers it starts) at ``folder`` for shared metrics."""
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(folder)
