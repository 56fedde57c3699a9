"""``X-Request-ID``: one identifier per request, echoed in the answer and in the access log.

A client (or a reverse proxy in front) may send its own ``X-Request-ID``; it is kept when it
is 1 to 128 characters of letters, digits and ``. _ : - + = / @``, and replaced by a fresh
random one otherwise (as it is when absent), so a log line never carries a client's control
characters or an unbounded string. The answer carries the identifier in ``X-Request-ID``.

The access log learns it through a context variable: :class:`RequestIdMiddleware` sets it
in the request's own task, uvicorn writes the access line from that task when the answer
starts, and :class:`RequestIdLogFilter` copies it onto the log record as ``request_id``.
:func:`log_config` is uvicorn's logging configuration with the identifier appended to
each access line.
"""

from __future__ import annotations

import copy
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

__all__ = [
    "HEADER",
    "RequestIdLogFilter",
    "RequestIdMiddleware",
    "current_request_id",
    "log_config",
    "valid_request_id",
]

HEADER = "X-Request-ID"
MAX_LENGTH = 128
_VALID = re.compile(rf"[A-Za-z0-9._:+=/@-]{{1,{MAX_LENGTH}}}")
_HEADER_KEY = HEADER.lower().encode("latin-1")

current_request_id: ContextVar[str | None] = ContextVar("mnist_classifier_request_id", default=None)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def valid_request_id(value: str) -> bool:
    """Whether a client's ``X-Request-ID`` is kept as it is."""
    return _VALID.fullmatch(value) is not None


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Pure ASGI: picks the request's identifier, exposes it, and adds it to the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = [v for k, v in scope.get("headers", ()) if k == _HEADER_KEY]
        given = sent[0].decode("latin-1") if len(sent) == 1 else ""
        request_id = given if valid_request_id(given) else new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        # Not reset afterwards: the request's task ends with it, and an answer written by
        # an outer layer (an unhandled error's 500) is still logged with its identifier.
        current_request_id.set(request_id)
        encoded = request_id.encode("latin-1")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", ()) if k.lower() != _HEADER_KEY
                ]
                headers.append((_HEADER_KEY, encoded))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


class RequestIdLogFilter(logging.Filter):
    """Adds ``request_id`` (``-`` outside a request) to every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get() or "-"
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's logging configuration, its access lines ending in ``request_id=...``."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    access = config["formatters"]["access"]
    access["fmt"] = access["fmt"] + " request_id=%(request_id)s"
    config.setdefault("filters", {})["request_id"] = {"()": RequestIdLogFilter}
    config["handlers"]["access"]["filters"] = ["request_id"]
    return config
