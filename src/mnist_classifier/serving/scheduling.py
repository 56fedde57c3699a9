"""How classification work is scheduled: two lanes weighed by decoded bytes, and the drain.

:class:`WorkLanes`: a request is weighed by the bytes its images decode into (read from
their headers, nothing decoded) and runs in the light lane or the heavy one, each with its
own worker slots, so small requests are answered while big ones run.
:class:`AnswerWhenCancelled`: a request still unanswered when the server stops after its
drain time gets a 503 ``{"error"}``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import anyio
import numpy as np

from ..inference.image_io import probe_decoded_bytes
from .limits import ServerLimits
from .requests import error_response

logger = logging.getLogger("mnist_classifier.serving.app")  # the app's own log

__all__ = ["AnswerWhenCancelled", "WorkLanes", "decode_cost"]

T = TypeVar("T")


def decode_cost(sources: Sequence[bytes | np.ndarray]) -> list[int]:
    """The bytes each source decodes into: its header's word for files, the array for pixels."""
    return [
        int(s.nbytes) if isinstance(s, np.ndarray) else probe_decoded_bytes(bytes(s))
        for s in sources
    ]


class WorkLanes:
    """Worker slots in two lanes: light requests never queue behind heavy ones.

    ``workers`` slots serve the light lane and ``max(1, workers // 2)`` the heavy one, so
    heavy requests can never take every CPU either. The limiters are created on first use,
    inside the running event loop.
    """

    def __init__(self, workers: int | None = None, light_bytes: int | None = None) -> None:
        self.workers = workers or max(2, os.cpu_count() or 1)
        self.heavy_workers = max(1, self.workers // 2)
        self.light_bytes = (
            ServerLimits().light_request_bytes if light_bytes is None else light_bytes
        )
        self._light: anyio.CapacityLimiter | None = None
        self._heavy: anyio.CapacityLimiter | None = None

    def lane(self, cost: int) -> str:
        """``"light"`` or ``"heavy"`` for a request decoding into ``cost`` bytes."""
        return "light" if cost <= self.light_bytes else "heavy"

    async def run(self, cost: int, work: Callable[[], T]) -> T:
        """Run the blocking ``work`` in a worker thread of the lane ``cost`` belongs to."""
        if self._light is None or self._heavy is None:
            self._light = anyio.CapacityLimiter(self.workers)
            self._heavy = anyio.CapacityLimiter(self.heavy_workers)
        limiter = self._light if self.lane(cost) == "light" else self._heavy
        return await anyio.to_thread.run_sync(work, limiter=limiter)


class _StartWatcher:
    """An ASGI ``send`` that remembers whether the answer has started (then no other can)."""

    def __init__(self, send: Any) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Any) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self.send(message)


class AnswerWhenCancelled:
    """Pure ASGI middleware: a request cancelled before its answer started (the server
    shutting down after its drain time) is answered 503 ``{"error"}``, not a bare 500."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        watch = _StartWatcher(send)
        try:
            await self.app(scope, receive, watch)
        except asyncio.CancelledError:
            if not watch.started:
                reply = error_response(
                    503,
                    "server shutting down: the request was not finished in time; retry",
                    {"Connection": "close", "Retry-After": "5"},
                )
                with anyio.CancelScope(shield=True):
                    await reply(scope, receive, send)
            raise


class AnswerUnhandled:
    """Pure ASGI middleware, innermost: an error no handler foresaw (a bug) is logged with its
    traceback and answered 500 ``{"error"}`` here, inside the other middleware, so that the
    answer still carries its request id and CORS headers like every other one."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        watch = _StartWatcher(send)
        try:
            await self.app(scope, receive, watch)
        except Exception:
            if watch.started:  # too late for an answer of our own: the server logs and closes
                raise
            logger.error("unhandled error answering %s", scope.get("path"), exc_info=True)
            await error_response(500, "internal error (logged by the server)")(scope, receive, send)
