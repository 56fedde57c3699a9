"""``/docs`` and ``/redoc`` in headless Chromium with every request off this machine blocked:
the pages must render, ask nothing of any other host (no CDN, no web fonts, no logo) and
break none of their Content-Security-Policy rules (a violation is a console error)."""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi")

from serving_helpers import running_server

pytest_plugins = ["browser"]

pytestmark = pytest.mark.browser

RENDER_TIMEOUT_MS = 60_000  # the shared test machine can be slow


@pytest.fixture(scope="module")
def server_url(trained_run) -> Iterator[str]:
    with running_server(trained_run, "--no-access-log") as (url, _lines):
        yield url


def is_loopback(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("blob", "data"):  # made inside the page
        return parts.scheme == "data" or is_loopback(url[len("blob:") :])
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def block_the_network(page: Any) -> list[str]:
    """Abort every request that would leave this machine; returns the live list of them."""
    outside: list[str] = []

    def handle(route: Any) -> None:
        url = route.request.url
        if is_loopback(url):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    page.route("**/*", handle)
    return outside


def test_swagger_ui_renders_offline_and_can_call_the_api(browser_page, server_url):
    from browser import record_console_errors, record_requests, save_screenshot

    page = browser_page
    outside = block_the_network(page)
    requests = record_requests(page)
    errors = record_console_errors(page)
    page.goto(server_url + "docs")
    operation = page.locator(".opblock-summary-path", has_text="/api/predict/batch")
    operation.wait_for(timeout=RENDER_TIMEOUT_MS)
    assert page.locator(".swagger-ui .info .title").inner_text().startswith("mnist-classifier")
    # Try the health endpoint from the page: the call goes to this server only.
    page.locator(".opblock-summary-path", has_text="/api/health").first.click()
    page.get_by_role("button", name="Try it out").click()
    page.get_by_role("button", name="Execute").click()
    page.locator(".live-responses-table .response-col_status", has_text="200").wait_for(
        timeout=RENDER_TIMEOUT_MS
    )
    save_screenshot(page, "docs-offline")
    assert outside == []
    assert requests and all(is_loopback(url) for url in requests), requests
    assert any(url.endswith("/docs-assets/swagger-ui-bundle.js") for url in requests)
    assert errors == []


def test_redoc_renders_offline_without_web_fonts(browser_page, server_url):
    from browser import record_console_errors, record_requests, save_screenshot

    page = browser_page
    outside = block_the_network(page)
    requests = record_requests(page)
    errors = record_console_errors(page)
    page.goto(server_url + "redoc")
    page.get_by_role("heading", name="Classify one image").wait_for(timeout=RENDER_TIMEOUT_MS)
    page.wait_for_load_state("networkidle")
    save_screenshot(page, "redoc-offline")
    assert outside == []
    assert requests and all(is_loopback(url) for url in requests), requests
    assert not any("font" in url for url in requests), requests
    # ReDoc's styles were applied (they carry the page's nonce), not refused by the CSP.
    nonces = page.evaluate("Array.from(document.querySelectorAll('style')).map(s => s.nonce)")
    assert nonces and all(nonces), nonces
    assert errors == []
