"""Who may talk to the server: the Host it answers to and the web origins it accepts, as pure
ASGI middleware that runs before anything else reads the request.

- **Host**: with ``allowed_hosts`` set, a request whose ``Host`` header names another host is
  refused (400). This is what stops DNS rebinding: a page on ``evil.example`` whose name
  is made to point at 127.0.0.1 still sends ``Host: evil.example``.
- **Origin**: a request that carries an ``Origin`` (browsers send one with every
  cross-origin request and every POST) must come from the server's own origin (the one
  its ``Host`` header names) or from one of ``cors_origins``; any other is refused (403),
  so a web page elsewhere cannot post uploads to a server on the user's machine. Without
  an ``Origin``, a browser's ``Sec-Fetch-Site: cross-site`` on a POST is refused too.
  Clients that are not browsers (curl, scripts) send neither and are not affected.
- **CORS**: for an origin in ``cors_origins`` the answers carry
  ``Access-Control-Allow-Origin`` (with ``Vary: Origin``) and preflight requests
  (``OPTIONS`` with ``Access-Control-Request-Method``) are answered 204. No credentials:
  the API has none.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from .requests import error_response

__all__ = ["OriginPolicy", "normalise_origin", "split_host"]

ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]

CORS_METHODS = "GET, POST, OPTIONS"
CORS_HEADERS = "Content-Type, X-Request-ID"
CORS_MAX_AGE = "600"  # seconds a browser may cache a preflight answer
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, default port dropped; ConfigError otherwise.

    Used for ``--cors-origin`` values, so that ``HTTP://Example.com:80/`` allows what
    browsers send as ``http://example.com``.
    """
    text = origin.strip()
    parts = urlsplit(text)
    if (
        parts.scheme not in DEFAULT_PORTS
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
    ):
        raise ConfigError(
            f"--cors-origin {origin!r} is not an origin; write it as scheme://host[:port],"
            " for example https://example.com or http://localhost:3000"
        )
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"--cors-origin {origin!r} has an invalid port") from None
    host = parts.hostname.lower()
    shown = f"[{host}]" if ":" in host else host
    if port is None or port == DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{shown}"
    return f"{parts.scheme}://{shown}:{port}"


def split_host(value: str) -> tuple[str, int | None]:
    """A Host header (``name``, ``name:port``, ``[v6]:port``) as (lower-case name, port)."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        name, rest = (value[1:end], value[end + 1 :]) if end != -1 else (value, "")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        name, port_text = value.split(":", 1)
    else:
        name, port_text = value, ""
    try:
        port = int(port_text) if port_text else None
    except ValueError:
        port = -1
    return name.rstrip("."), port


class OriginPolicy:
    """Refuse requests for other hosts (400) and from other origins (403); answer CORS."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        cors_origins: Iterable[str] = (),
        allowed_hosts: Iterable[str] | None = None,
    ) -> None:
        self.app = app
        self.cors_origins = frozenset(normalise_origin(o) for o in cors_origins)
        hosts = None if allowed_hosts is None else [h.strip().lower() for h in allowed_hosts]
        self.allowed_hosts = None if hosts is None or "*" in hosts else tuple(hosts)

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        host = headers.get("host", "")
        if not self._host_allowed(host):
            shown = host[:100] or "(none)"
            message = f"Host {shown} is not served here (start the server with --allowed-host)"
            await error_response(400, message, {"Connection": "close"})(scope, receive, send)
            return
        method = scope.get("method", "GET")
        origin = headers.get("origin")
        if origin is None:
            site = headers.get("sec-fetch-site", "")
            if site == "cross-site" and method not in SAFE_METHODS:
                await _refuse(scope, receive, send, "a cross-site browser request")
                return
            await self.app(scope, receive, send)
            return
        try:
            canonical = normalise_origin(origin)
        except ConfigError:
            canonical = origin.strip().lower()
        if canonical in self.cors_origins:
            if method == "OPTIONS" and "access-control-request-method" in headers:
                await _preflight(canonical, send)
                return
            await self.app(scope, receive, _with_cors(send, canonical))
            return
        if _same_origin(origin, host):
            await self.app(scope, receive, send)
            return
        await _refuse(scope, receive, send, f"origin {origin[:100]}")

    def _host_allowed(self, host: str) -> bool:
        if self.allowed_hosts is None:
            return True
        name, port = split_host(host)
        if not name or port == -1:
            return False
        return any(
            fnmatch.fnmatchcase(name, pattern) if pattern.startswith("*.") else name == pattern
            for pattern in self.allowed_hosts
        )


def _headers(scope: MutableMapping[str, Any]) -> dict[str, str]:
    """The request's headers by lower-case name (the first of repeated ones)."""
    out: dict[str, str] = {}
    for key, value in scope.get("headers", ()):
        out.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
    return out


def _same_origin(origin: str, host: str) -> bool:
    """Whether ``origin`` names the host (and port, when the Host header has one) served."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return False  # "null" (sandboxed frames, file: pages) and anything malformed
    try:
        origin_port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        return False
    name, port = split_host(host)
    if not name or name != parts.hostname.lower().rstrip("."):
        return False
    # Without a port, Host means the scheme's default: whatever a TLS proxy in front chose.
    return port is None or port == origin_port


async def _refuse(scope: MutableMapping[str, Any], receive: Any, send: Any, who: str) -> None:
    message = (
        f"cross-origin request refused: {who} is not this server's own"
        " (start the server with --cors-origin ORIGIN to allow an origin)"
    )
    await error_response(403, message, {"Connection": "close"})(scope, receive, send)


async def _preflight(origin: str, send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 204,
            "headers": [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-methods", CORS_METHODS.encode()),
                (b"access-control-allow-headers", CORS_HEADERS.encode()),
                (b"access-control-max-age", CORS_MAX_AGE.encode()),
                (b"vary", b"Origin"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def _with_cors(send: Any, origin: str) -> Any:
    async def send_with_cors(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = [
                (k, v)
                for k, v in message.get("headers", [])
                if k.lower() not in (b"access-control-allow-origin", b"vary")
            ]
            headers += [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-expose-headers", b"X-Request-ID"),
                (b"vary", b"Origin"),
            ]
            message = {**message, "headers": headers}
        await send(message)

    return send_with_cors
