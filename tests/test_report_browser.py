"""report.html in a real browser: every image loads and nothing is requested from outside."""

from __future__ import annotations

import pytest

from fake_run import make_fake_run
from mnist_classifier.evaluation.plots import PLOT_FILES
from mnist_classifier.evaluation.report import write_report

# tests/browser.py as a plugin: the fixtures chromium and browser_page. Its helpers are
# imported inside the tests, after pytest has loaded (and assert-rewritten) the module.
pytest_plugins = ["browser"]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Decode the fake dataset into a private cache, never the user's."""
    monkeypatch.setenv("MNIST_CLASSIFIER_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.browser
def test_report_loads_offline_in_chromium(browser_page, tmp_path):
    from browser import record_console_errors, record_requests, save_screenshot

    run = make_fake_run(tmp_path / "browser-run")
    report = write_report(run)
    page = browser_page
    requests = record_requests(page)
    errors = record_console_errors(page)

    url = report.resolve().as_uri()
    response = page.goto(url, wait_until="load")
    assert response is None or response.ok

    images = page.eval_on_selector_all(
        "img", "els => els.map(e => ({complete: e.complete, width: e.naturalWidth}))"
    )
    assert len(images) == len(PLOT_FILES)
    assert all(img["complete"] and img["width"] > 0 for img in images), images

    assert page.title() == "browser-run: mnist-classifier run report"
    assert page.locator("h1").inner_text() == "Run browser-run"

    save_screenshot(page, "report")
    leaving = [u for u in requests if u != url and not u.startswith("data:")]
    assert leaving == []
    assert url in requests
    assert errors == []


def test_missing_browser_skips_locally_and_fails_on_ci(monkeypatch):
    from browser import unavailable

    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        unavailable("no chromium")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no chromium"):
        unavailable("no chromium")
