"""The drawing page in headless Chromium, against the real ``mnist-classifier serve``.

Digits are drawn with mouse strokes (and one with touch), a photo is uploaded through
the file input and another dropped on the pad; the page must show the right digit,
ask nothing of any other host, and log no errors.
"""

from __future__ import annotations

import base64
import itertools
import math
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi")

from serving_helpers import mnist_png, running_server

pytest_plugins = ["browser"]

pytestmark = pytest.mark.browser

ANSWER_TIMEOUT_MS = 60_000  # the shared test machine can be slow; the page is not

# Digits as strokes in pad coordinates (0-1), each a polyline; chosen to be unambiguous.
ONE = [[(0.55, 0.14), (0.45, 0.86)]]
SEVEN = [[(0.24, 0.2), (0.76, 0.2), (0.42, 0.86)]]
ZERO = [
    [
        (0.5 + 0.22 * math.sin(2 * math.pi * t / 32), 0.5 - 0.32 * math.cos(2 * math.pi * t / 32))
        for t in range(33)
    ]
]


@pytest.fixture(scope="module")
def server_url(trained_run) -> Iterator[str]:
    with running_server(trained_run, "--no-access-log") as (url, _lines):
        yield url


def points_on(
    page: Any, stroke: list[tuple[float, float]], steps: int = 8
) -> list[tuple[float, float]]:
    """Page coordinates along ``stroke`` (pad fractions), ``steps`` points per segment."""
    box = page.locator("#pad").bounding_box()
    out = [(box["x"] + stroke[0][0] * box["width"], box["y"] + stroke[0][1] * box["height"])]
    for (x0, y0), (x1, y1) in itertools.pairwise(stroke):
        for i in range(1, steps + 1):
            t = i / steps
            out.append(
                (
                    box["x"] + (x0 + (x1 - x0) * t) * box["width"],
                    box["y"] + (y0 + (y1 - y0) * t) * box["height"],
                )
            )
    return out


def draw(page: Any, strokes: list[list[tuple[float, float]]]) -> None:
    """Draw ``strokes`` with the mouse: press, move through the points, release."""
    for stroke in strokes:
        points = points_on(page, stroke)
        page.mouse.move(*points[0])
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*point)
        page.mouse.up()


def draw_by_touch(page: Any, stroke: list[tuple[float, float]]) -> None:
    """Draw one stroke with a finger (touch events through the DevTools protocol)."""
    cdp = page.context.new_cdp_session(page)
    points = points_on(page, stroke)
    x, y = points[0]
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
    for x, y in points[1:]:
        cdp.send(
            "Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]}
        )
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def final_answer(page: Any) -> str:
    """Wait for the answer to the finished drawing or upload (the live region), return the digit."""
    page.wait_for_function(
        "() => document.getElementById('announce').textContent.startsWith('Prediction:')"
        " || document.getElementById('error').textContent !== ''",
        timeout=ANSWER_TIMEOUT_MS,
    )
    assert page.text_content("#error") == ""
    return page.text_content("#digit")


def clear(page: Any) -> None:
    page.click("#clear")
    assert page.text_content("#announce") == "Pad cleared"
    assert page.text_content("#digit") == "?"


def check_answer_shown(page: Any, digit: str) -> None:
    """The bar chart's highlighted row and the 28x28 image agree with the shown digit."""
    top = page.eval_on_selector_all("#bars li", "els => els.map(e => e.classList.contains('top'))")
    assert len(top) == 10 and top.index(True) == int(digit) and top.count(True) == 1
    seen = page.eval_on_selector(
        "#seen", "img => [img.naturalWidth, img.naturalHeight, img.src.slice(0, 22)]"
    )
    assert seen == [28, 28, "data:image/png;base64,"]
    assert page.text_content("#announce").startswith(f"Prediction: {digit},")


def only_local(requests: list[str], base: str) -> list[str]:
    return [u for u in requests if not (u.startswith(base) or u.startswith(("data:", "blob:")))]


def test_drawn_digits_are_recognised(browser_page, server_url, mnist):
    from browser import record_console_errors, record_requests, save_screenshot

    page = browser_page
    requests = record_requests(page)
    errors = record_console_errors(page)
    page.goto(server_url)
    page.wait_for_function(
        "() => document.getElementById('model-info').textContent.includes('cnn-small')"
    )
    assert page.is_disabled("#undo") and page.is_disabled("#clear")

    for digit, strokes in (("1", ONE), ("7", SEVEN), ("0", ZERO)):
        draw(page, strokes)
        assert final_answer(page) == digit, f"drew {digit}"
        check_answer_shown(page, digit)
        if digit != "0":
            clear(page)
    page.wait_for_timeout(300)  # let the bars finish their transition for the picture
    save_screenshot(page, "webapp-drawn-0")

    # Undo: a stray stroke across the 0 changes the answer; undoing it brings the 0 back.
    page.evaluate("() => { document.getElementById('announce').textContent = ''; }")
    draw(page, [[(0.1, 0.9), (0.9, 0.1)]])
    final_answer(page)
    page.evaluate("() => { document.getElementById('announce').textContent = ''; }")
    page.click("#undo")
    assert final_answer(page) == "0"
    clear(page)
    assert page.is_disabled("#undo") and page.is_disabled("#clear")

    assert any(u.endswith("/api/predict") for u in requests)
    assert only_local(requests, server_url) == []
    assert errors == []


def test_uploaded_and_dropped_photos_are_recognised(browser_page, server_url, mnist, tmp_path):
    from browser import record_console_errors, record_requests, save_screenshot

    page = browser_page
    requests = record_requests(page)
    errors = record_console_errors(page)
    page.goto(server_url)

    # A real MNIST test digit, as dark ink on light paper, scaled up 8x.
    image, label = mnist.test_images[0].numpy(), int(mnist.test_labels[0])
    photo = tmp_path / "photo.png"
    photo.write_bytes(mnist_png(image, scale=8))
    page.set_input_files("#file", str(photo))
    assert final_answer(page) == str(label)
    check_answer_shown(page, str(label))
    assert page.is_enabled("#clear")
    page.wait_for_timeout(300)
    save_screenshot(page, "webapp-upload")

    # Dropped on the pad: another test digit.
    clear(page)
    image, label = mnist.test_images[1].numpy(), int(mnist.test_labels[1])
    data = base64.b64encode(mnist_png(image, scale=6)).decode()
    page.evaluate(
        """data => {
            const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "dropped.png", {type: "image/png"}));
            const zone = document.getElementById("drop-zone");
            zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: transfer, bubbles: true, cancelable: true}));
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }""",
        data,
    )
    assert final_answer(page) == str(label)

    # A file that is not an image: the server's one-line reason is shown, nothing breaks.
    clear(page)
    text = tmp_path / "notes.txt"
    text.write_text("not a picture")
    page.set_input_files("#file", str(text))
    page.wait_for_function(
        "() => document.getElementById('error').textContent.includes('not an image')",
        timeout=ANSWER_TIMEOUT_MS,
    )
    assert page.text_content("#digit") == "?"

    assert only_local(requests, server_url) == []
    # The refused upload is answered 415, which Chromium logs as a failed resource load.
    assert [e for e in errors if "415" not in e] == []


def test_phone_viewport_draw_by_touch(chromium, server_url):
    from browser import record_console_errors, save_screenshot

    context = chromium.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    try:
        page = context.new_page()
        errors = record_console_errors(page)
        page.goto(server_url)
        draw_by_touch(page, ONE[0])
        assert final_answer(page) == "1"
        # Nothing sticks out sideways, and the answer shows without scrolling.
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
        assert page.evaluate("() => window.scrollY") == 0
        box = page.locator("#digit").bounding_box()
        assert box is not None and box["y"] + box["height"] <= 844
        save_screenshot(page, "webapp-phone", full_page=False)
        assert errors == []
    finally:
        context.close()
