"""``/healthz`` and ``/readyz``: the probes orchestrators (Kubernetes, load balancers) expect.

- ``GET /healthz``: liveness, the process answers: 200 ``{"status": "ok", "model", "pid"}``.
- ``GET /readyz``: readiness, this process can classify: 200 ``{"status": "ready", ...}``
  once its model is loaded, else 503 ``{"error": ...}``. ``serve`` loads the model before a
  process accepts connections, so a server that answers is ready; ``app.state.ready`` is
  the switch, for code that builds the app before its model is usable (or takes a process
  out of rotation).

``pid`` tells which worker process answered (``serve --workers N``).
"""

from __future__ import annotations

import os

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from .requests import PredictorLike, error_response
from .schemas import HealthOut

__all__ = ["ProbeOut", "add_probes"]


class ProbeOut(HealthOut):
    pid: int = Field(description="the process that answered (one of the workers)")


def add_probes(app: FastAPI, predictor: PredictorLike | None) -> None:
    """Add ``/healthz`` and ``/readyz``; ready as soon as ``predictor`` is there."""
    app.state.ready = predictor is not None
    name = predictor.model_name if predictor is not None else ""

    @app.get("/healthz", response_model=ProbeOut, summary="Liveness: the process answers")
    async def healthz() -> ProbeOut:
        return ProbeOut(status="ok", model=name, pid=os.getpid())

    @app.get(
        "/readyz",
        response_model=ProbeOut,
        summary="Readiness: the model is loaded and requests are classified",
        responses={503: {"description": "not ready (the model is not loaded yet)"}},
    )
    async def readyz(request: Request) -> ProbeOut | JSONResponse:
        if not getattr(request.app.state, "ready", False):
            return error_response(503, "not ready: the model is not loaded")
        return ProbeOut(status="ready", model=name, pid=os.getpid())
