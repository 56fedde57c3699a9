"""The connection guard of ``serve``: uvicorn's HTTP/1.1 protocol (h11) with the limits that
only a connection can enforce, and its own refusals answered as ``{"error"}`` JSON.

- **Header deadline**: from connecting, or from the end of the previous answer on a
  kept-alive connection, the request line and headers must arrive within
  ``header_timeout`` seconds; a client that trickles them is answered 408 and
  disconnected (uvicorn itself waits forever). The body's deadlines belong to
  :class:`~mnist_classifier.serving.body_limit.BodySizeLimit`.
- **Connection cap**: more than ``max_connections`` open at once, and the newest is
  answered 503 and closed at once, before it can hold memory.
- **Malformed HTTP**: uvicorn's plain-text 400 becomes ``{"error": "..."}``.

Imported only by ``cli/serve.py``, with uvicorn (the ``serve`` extra).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .limits import ServerLimits

__all__ = ["guarded_protocol", "raw_json_response"]

REASONS = {400: "Bad Request", 408: "Request Timeout", 503: "Service Unavailable"}


def raw_json_response(status: int, message: str, *, retry_after: int | None = None) -> bytes:
    """A whole HTTP/1.1 answer ``{"error": message}`` that closes the connection."""
    body = json.dumps({"error": message}).encode()
    lines = [
        f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
    ]
    if retry_after is not None:
        lines.append(f"retry-after: {retry_after}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


def guarded_protocol(limits: ServerLimits) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol class with ``limits`` applied (pass it as ``Config(http=...)``)."""

    class GuardedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                self.logger.warning("connection refused: %d open", len(self.connections) - 1)
                self._answer_and_close(
                    503, "server busy: too many open connections; retry shortly", retry_after=1
                )
                return
            self._watch_headers()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._watch_headers()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._watch_headers()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_header_timer()
            super().connection_lost(exc)

        def send_400_response(self, msg: str) -> None:
            self._answer_and_close(400, f"malformed HTTP request ({msg.rstrip('.').lower()})")

        # -- the header deadline --------------------------------------------------------

        def _watch_headers(self) -> None:
            """Arm the deadline while a request's headers are awaited, disarm it after."""
            if self.transport is None or self.transport.is_closing():
                self._stop_header_timer()
            elif self.conn.their_state is h11.IDLE:
                if self._header_timer is None:
                    self._header_timer = self.loop.call_later(
                        limits.header_timeout, self._headers_too_slow
                    )
            else:
                self._stop_header_timer()

        def _stop_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
                return
            if self.cycle is not None and not self.cycle.response_complete:
                return  # an answer is still being written (pipelining): not the client's fault
            pending, _ = self.conn.trailing_data
            if pending:  # part of a request came: say why the connection ends
                self._answer_and_close(
                    408, f"request headers not received within {limits.header_timeout:g} s"
                )
            else:  # an idle connection: just close it
                self.transport.close()

        def _answer_and_close(
            self, status: int, message: str, *, retry_after: int | None = None
        ) -> None:
            self._stop_header_timer()
            if not self.transport.is_closing():
                self.transport.write(raw_json_response(status, message, retry_after=retry_after))
                self.transport.close()

    return GuardedH11Protocol
