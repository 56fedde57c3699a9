"""Helpers for the serving tests: test digits as photo-like PNGs, and the real server
(``mnist-classifier serve``) in a subprocess. The model they serve is conftest's
``trained_run``."""

from __future__ import annotations

import io
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from PIL import Image

STARTUP_TIMEOUT = 180.0  # seconds for `serve` to import torch, load the model and listen
URL_LINE = re.compile(r"open (http://\S+/)")


def mnist_png(image: np.ndarray, *, scale: int = 4, dark_on_light: bool = True) -> bytes:
    """PNG bytes of a (28, 28) uint8 MNIST image, scaled up, as a photo of ink on paper would be."""
    pixels = 255 - image if dark_on_light else image
    im = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), mode="L")
    im = im.resize((28 * scale, 28 * scale), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


@contextmanager
def running_server(
    target: str | os.PathLike[str] | None, *args: str
) -> Iterator[tuple[str, list[str]]]:
    """Run ``mnist-classifier serve TARGET --port 0`` and yield (its URL, its output lines so far).

    ``target`` None serves the model shipped in the package. The URL is read from the line the command prints once it listens; the server is
    stopped with SIGINT (as Ctrl-C would) when the block ends.
    """
    with running_server_process(target, *args) as (url, lines, _):
        yield url, lines


@contextmanager
def running_server_process(
    target: str | os.PathLike[str] | None, *args: str
) -> Iterator[tuple[str, list[str], subprocess.Popen[str]]]:
    """As :func:`running_server`, also yielding the server's process."""
    model = [] if target is None else [str(target)]
    cmd = [sys.executable, "-m", "mnist_classifier", "serve", *model, "--port", "0", *args]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    lines: list[str] = []
    found: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            match = URL_LINE.search(line)
            if match:
                found.put(match.group(1))
        found.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        try:
            url = found.get(timeout=STARTUP_TIMEOUT)
        except queue.Empty:
            url = None
        if url is None:
            pytest.fail("serve did not start:\n" + "\n".join(lines[-20:]), pytrace=False)
        yield url, lines, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join(timeout=5)


class FakePredictor:
    """A model stand-in that answers at once, whatever the image: the schema, the limits and
    the request handling are under test, not a model. Probabilities are uniform, or (with
    ``digit``) 0.82 for that digit."""

    model_name = "fake"
    checkpoint_path = "fake.pt"
    backend = "torch"
    mean = 0.1307
    std = 0.3081
    metrics = None
    parameters = None
    package_version = None

    def __init__(self, digit: int | None = None) -> None:
        self.digit = digit

    def predict_mnist(self, images_28: np.ndarray) -> np.ndarray:
        if self.digit is None:
            return np.full((len(images_28), 10), 0.1)
        out = np.full((len(images_28), 10), 0.02)
        out[:, self.digit] = 0.82
        return out
