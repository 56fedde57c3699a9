"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) served entirely by this server.

FastAPI's own pages load Swagger UI and ReDoc from a CDN (and ReDoc's web fonts from a font
host) and start Swagger UI with an inline script. These pages work offline instead: the
JavaScript and CSS come from the ``fastapi-offline`` package (MIT; it ships the Swagger UI
and ReDoc distributions, each under its own licence, Apache-2.0 and MIT), mounted at
``/docs-assets``; the pages themselves and Swagger UI's start-up script are files in
``static/``; no web font is loaded (ReDoc falls back to the system's sans-serif). Every URL
in the pages is relative, so they also work under a reverse proxy's path prefix. ReDoc's
bundle is served with two small changes (:data:`REDOC_PATCHES`): the footer's logo, the
one thing it would fetch from another host, is dropped, and the page's style nonce is
known to it from the start.

Both pages are sent with a strict Content-Security-Policy: scripts, styles, images and
fetches from this server only, no inline script. ReDoc writes its generated styles into
``<style>`` elements, so ``/redoc`` allows those that carry the page's nonce (a fresh one
per answer, set on the bundle's script element and handed to ReDoc's ``nonce`` option by
``static/redoc-init.js``) and no other inline style; its search runs in a ``blob:`` worker.
"""

from __future__ import annotations

import secrets
from functools import cache
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS_URL", "DOCS_CSP", "REDOC_CSP", "add_docs_pages", "assets_dir"]

ASSETS_URL = "/docs-assets"
REDOC_JS = "redoc.standalone.js"
REDOC_LOGO_URL = "https://cdn.redoc.ly/redoc/logo-mini.svg"
_STATIC = Path(__file__).resolve().parent / "static"

_COMMON = (
    "default-src 'self'; img-src 'self' data:; script-src 'self'; connect-src 'self'; "
    "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
DOCS_CSP = f"{_COMMON}; style-src 'self'; worker-src 'none'"
# ReDoc's search runs in a worker made from a blob: URL.
REDOC_CSP = _COMMON + "; style-src 'self' 'nonce-{nonce}'; worker-src 'self' blob:"
_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def assets_dir() -> Path:
    """The folder holding ``swagger-ui-bundle.js``, ``swagger-ui.css`` and ``redoc.standalone.js``."""
    return Path(str(files("fastapi_offline") / "static"))


def add_docs_pages(app: FastAPI) -> None:
    """Add ``/docs``, ``/redoc`` and ``/docs-assets`` to ``app`` (created with ``docs_url=None``
    and ``redoc_url=None``)."""

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> FileResponse:
        return FileResponse(
            _STATIC / "docs.html", headers={"Content-Security-Policy": DOCS_CSP, **_HEADERS}
        )

    redoc_page = (_STATIC / "redoc.html").read_text(encoding="utf-8")

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        nonce = secrets.token_urlsafe(18)
        return HTMLResponse(
            redoc_page.replace("{style_nonce}", nonce),
            headers={"Content-Security-Policy": REDOC_CSP.format(nonce=nonce), **_HEADERS},
        )

    @app.get(f"{ASSETS_URL}/{REDOC_JS}", include_in_schema=False)
    async def redoc_js() -> Response:
        return Response(
            redoc_script(),
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=3600", **_HEADERS},
        )

    app.mount(ASSETS_URL, StaticFiles(directory=assets_dir()), name="docs-assets")


# The two changes made to ReDoc's bundle when it is served: (found, replacement).
REDOC_PATCHES = (
    # The footer's logo from Redocly's CDN: an empty src loads nothing, and ReDoc's error
    # handler then drops the image (the footer keeps its text link).
    (f'src:"{REDOC_LOGO_URL}"', 'src:""'),
    # The style nonce, known from the start (webpack's ``__webpack_nonce__``), so that the
    # stylesheets the bundle inserts as it loads (its scroll bars) carry it too; ReDoc's own
    # ``nonce`` option only covers the styles it generates later.
    ("n.nc=void 0", "n.nc=document.currentScript&&document.currentScript.nonce||void 0"),
)


@cache
def redoc_script() -> bytes:
    """ReDoc's bundle as served: :data:`REDOC_PATCHES` applied. A missing pattern (another
    ReDoc version) is an error here rather than a page that quietly reaches the network."""
    script = (assets_dir() / REDOC_JS).read_text(encoding="utf-8")
    for found, replacement in REDOC_PATCHES:
        if script.count(found) != 1:
            raise RuntimeError(f"{REDOC_JS}: expected {found!r} once; update REDOC_PATCHES")
        script = script.replace(found, replacement)
    return script.encode("utf-8")
