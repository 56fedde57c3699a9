"""Headless Debian Chromium for tests, driven through Playwright's sync API.

Reuse it from a test module by loading it as a plugin, which provides the fixtures;
import its helpers inside the tests (a module-level import would come before pytest
loads the plugin, and pytest would warn that it cannot rewrite its asserts)::

    pytest_plugins = ["browser"]

    @pytest.mark.browser
    def test_page(browser_page):
        from browser import record_requests, save_screenshot
        ...

``chromium`` (one browser per test session) and ``browser_page`` (a fresh context
and page per test) skip the test when Chromium or Playwright is missing, except
on CI (``CI=true``), where a missing browser is a failure: a browser test must
not pass there by not running. Playwright's own browser download is never used.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_PATH = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS_DIR = Path(__file__).resolve().parent.parent / "test-artifacts"


def on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def unavailable(reason: str) -> None:
    """Skip the test, or fail it on CI where every browser test has to run."""
    if on_ci():
        pytest.fail(f"{reason} (CI=true: browser tests must run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A headless Chromium ``Browser`` shared by one test module.

    Not by the whole session: while Playwright's sync API is active it keeps an asyncio loop
    running in the main thread, and later tests that call ``asyncio.run``/``anyio.run`` would
    fail with "Already running asyncio in this thread"."""
    if not CHROMIUM_PATH.exists():
        unavailable(f"{CHROMIUM_PATH} not found (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM_PATH), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(chromium: Any) -> Iterator[Any]:
    """A new page in its own browser context (no shared cookies or cache), closed afterwards."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


def record_requests(page: Any) -> list[str]:
    """Start recording the URL of every request ``page`` makes; returns the live list."""
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    return urls


def record_console_errors(page: Any) -> list[str]:
    """Start recording console errors and uncaught page errors; returns the live list."""
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


def save_screenshot(page: Any, name: str, *, full_page: bool = True) -> Path:
    """Save a PNG screenshot of ``page`` as ``test-artifacts/<name>.png`` and return its path."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS_DIR / f"{safe}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
