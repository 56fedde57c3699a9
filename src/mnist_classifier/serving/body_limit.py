"""The request body's limits, as pure ASGI middleware: it sees the body before any parsing.

Size (one body), time (the longest pause inside a body, and the whole body) and memory
(the bodies of all requests in flight together) are checked here, so the app only ever
sees a body that arrived whole, in time, and fits.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio

from .requests import error_response

__all__ = ["BodySizeLimit"]

ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]
CLOSE = {"Connection": "close"}  # a refusal before the whole body is read ends the connection


class BodySizeLimit:
    """Refuse bodies over ``max_bytes`` (413), too slow (408) or too many at once (503).

    - Size: by Content-Length up front, else while reading (chunked uploads included).
    - Time: a pause of more than ``idle_timeout`` seconds between two pieces of the body,
      or more than ``total_timeout`` for all of it, ends the request with a 408.
    - Memory: the bodies held by the requests in flight (read, or declared by their
      Content-Length, and kept until their answer is sent) never pass
      ``max_inflight_bytes``; a request that would pass it is answered 503 at once.

    The body is read here, into one buffer, and handed to the app in one piece.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        *,
        max_inflight_bytes: int | None = None,
        idle_timeout: float | None = None,
        total_timeout: float | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_inflight_bytes = max_inflight_bytes
        self.idle_timeout = idle_timeout if idle_timeout is not None else math.inf
        self.total_timeout = total_timeout if total_timeout is not None else math.inf
        self.inflight_bytes = 0  # held now by all requests together

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"request body is over the limit of {self.max_bytes} bytes"
        declared = _content_length(scope)
        if declared == -1:
            await error_response(400, "Content-Length is not a number", CLOSE)(scope, receive, send)
            return
        if declared is not None and declared > self.max_bytes:
            await error_response(413, too_large, CLOSE)(scope, receive, send)
            return
        held = 0  # what this request counts in inflight_bytes

        def reserve(total: int) -> bool:
            """Count ``total`` bytes for this request, unless that passes the cap (a request
            alone is always let through, so one body of ``max_bytes`` is never refused)."""
            nonlocal held
            extra = total - held
            if extra <= 0:
                return True
            cap = self.max_inflight_bytes
            others = self.inflight_bytes - held
            if cap is not None and others > 0 and self.inflight_bytes + extra > cap:
                return False
            self.inflight_bytes += extra
            held = total
            return True

        busy = error_response(
            503,
            "server busy: too many uploads in progress; retry in a few seconds",
            {**CLOSE, "Retry-After": "5"},
        )
        try:
            if declared and not reserve(declared):
                await busy(scope, receive, send)
                return
            buffer = bytearray()
            deadline = anyio.current_time() + self.total_timeout
            while True:
                wait = min(self.idle_timeout, deadline - anyio.current_time())
                with anyio.move_on_after(max(wait, 0.0)) as waited:
                    message = await receive()
                if waited.cancelled_caught:
                    slow = (
                        f"request body not received in time (no data for {self.idle_timeout:g} s,"
                        f" or not whole within {self.total_timeout:g} s)"
                    )
                    await error_response(408, slow, CLOSE)(scope, receive, send)
                    return
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                if len(buffer) + len(chunk) > self.max_bytes:
                    await error_response(413, too_large, CLOSE)(scope, receive, send)
                    return
                if not reserve(len(buffer) + len(chunk)):
                    await busy(scope, receive, send)
                    return
                buffer += chunk
                if not message.get("more_body", False):
                    break
            body = bytes(buffer)
            del buffer
            delivered = False

            async def replay() -> dict[str, Any]:
                nonlocal delivered
                if not delivered:
                    delivered = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return dict(await receive())

            await self.app(scope, replay, send)
        finally:
            self.inflight_bytes -= held


def _content_length(scope: MutableMapping[str, Any]) -> int | None:
    """The declared Content-Length, None when absent, -1 when not a number."""
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return None
