"""The server's limits on time, connections, memory and work, in one place.

One :class:`ServerLimits` holds every number (seconds, bytes, counts), so the app, the
connection protocol, the CLI and the documentation read them from one place. Standard
library only: ``serve --help`` shows the defaults without loading numpy or FastAPI.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ServerLimits"]


@dataclass(frozen=True)
class ServerLimits:
    """What one server allows. Times in seconds, sizes in bytes."""

    # Connections
    max_connections: int = 256  # open at once; more are answered 503 and closed
    header_timeout: float = 10.0  # from connecting (or the previous answer) to the last header
    body_idle_timeout: float = 10.0  # the longest pause between two pieces of a body
    body_timeout: float = 60.0  # the whole body, from its first byte to its last
    shutdown_drain: int = 30  # how long shutting down waits for requests in flight
    # Memory
    max_body_bytes: int = 8 * 1024 * 1024  # one request's body (schemas.MAX_BODY_BYTES)
    max_inflight_body_bytes: int = 128 * 1024 * 1024  # bodies held by all requests together
    # Work
    # One image may decode into image_io.MAX_DECODED_BYTES; all images of a request together:
    max_request_decoded_bytes: int = 256 * 1024 * 1024
    light_request_bytes: int = 8 * 1024 * 1024  # decoded bytes up to which a request is light
