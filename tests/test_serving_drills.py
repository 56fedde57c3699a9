"""Fault drills against the real server (``mnist-classifier serve`` in a subprocess) with raw
sockets: clients that stall in their headers or body, silent connections, floods of
connections, malformed HTTP, memory after stalled uploads, and a request in flight while
the server is stopped."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.request
from urllib.parse import urlsplit

import pytest

from serving_helpers import mnist_png, running_server_process

pytest.importorskip("fastapi")
psutil = pytest.importorskip("psutil")

pytestmark = pytest.mark.slow

READ_TIMEOUT = 2  # seconds: the drills' server gives up on slow clients after this
MAX_CONNECTIONS = 24
ANSWER_WAIT = 60.0  # generous: the machine may be loaded


@pytest.fixture(scope="module")
def server(trained_run):
    args = ("--no-access-log", "--read-timeout", str(READ_TIMEOUT))
    args += ("--max-connections", str(MAX_CONNECTIONS))
    with running_server_process(trained_run, *args) as (url, _, proc):
        yield url, proc


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=ANSWER_WAIT)
    return sock


def host_header(url: str) -> bytes:
    return urlsplit(url).netloc.encode()


def read_answer(sock: socket.socket) -> tuple[int | None, dict | None, bool]:
    """(status, JSON body, whether the server closed the connection) of the next answer."""
    data = b""
    closed = False
    deadline = time.monotonic() + ANSWER_WAIT
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            closed = True
            break
        if not chunk:
            closed = True
            break
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                None,
            )
            if length is not None and len(body) >= length:
                break
    if not data:
        return None, None, closed
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower(), head
    return status, json.loads(body), closed


def closes_soon(sock: socket.socket) -> bool:
    try:
        while True:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def health(url: str) -> int:
    with urllib.request.urlopen(url + "api/health", timeout=ANSWER_WAIT) as response:
        return response.status


def test_headers_that_trickle_get_408_and_the_connection_closes(server):
    url, _ = server
    with connect(url) as sock:
        sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: " + host_header(url) + b"\r\nContent-")
        assert health(url) == 200  # a stalled client holds nobody else up
        status, body, _ = read_answer(sock)
        assert status == 408 and "headers not received" in body["error"]
        assert closes_soon(sock)


def test_a_silent_connection_is_closed(server):
    url, _ = server
    with connect(url) as sock:
        started = time.monotonic()
        assert closes_soon(sock)
        assert time.monotonic() - started >= READ_TIMEOUT * 0.5


def test_a_body_that_stalls_gets_408(server):
    url, _ = server
    with connect(url) as sock:
        sock.sendall(
            b"POST /api/predict HTTP/1.1\r\nHost: " + host_header(url) + b"\r\n"
            b"Content-Type: image/png\r\nContent-Length: 100000\r\n\r\n" + b"\x89PNG" * 250
        )
        status, body, _ = read_answer(sock)
        assert status == 408 and "not received in time" in body["error"]
        assert closes_soon(sock)


def test_malformed_http_is_answered_as_json(server):
    url, _ = server
    with connect(url) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        status, body, _ = read_answer(sock)
        assert status == 400 and body["error"].startswith("malformed HTTP request")


def test_another_host_header_is_refused_on_loopback(server):
    url, _ = server
    with connect(url) as sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: rebound.example:80\r\n\r\n")
        status, body, _ = read_answer(sock)
        assert status == 400 and "not served here" in body["error"]


def test_connections_over_the_cap_get_503(server):
    url, _ = server
    socks = [connect(url) for _ in range(MAX_CONNECTIONS + 4)]
    try:
        for sock in socks:
            sock.settimeout(0.5)
        refused = []
        for sock in socks:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            if data.startswith(b"HTTP/1.1 503"):
                assert b'"error"' in data
                refused.append(sock)
        assert len(refused) >= 4
    finally:
        for sock in socks:
            sock.close()
    time.sleep(0.5)
    assert health(url) == 200


def test_memory_returns_after_stalled_uploads(server):
    url, proc = server
    process = psutil.Process(proc.pid)
    assert health(url) == 200
    start = process.memory_info().rss
    body_length = 4 * 1024 * 1024
    head = (
        b"POST /api/predict HTTP/1.1\r\nHost: " + host_header(url) + b"\r\n"
        b"Content-Type: image/png\r\nContent-Length: %d\r\n\r\n" % body_length
    )
    socks = []
    try:
        for _ in range(16):  # 16 x 4 MB: within the in-flight cap, so every one is held
            sock = connect(url)
            sock.sendall(head + b"\0" * (body_length - 4096))
            socks.append(sock)
        peak = process.memory_info().rss
        assert health(url) == 200
        answers = [read_answer(sock)[0] for sock in socks]
        assert answers == [408] * len(socks)
    finally:
        for sock in socks:
            sock.close()
    time.sleep(1.0)
    end = process.memory_info().rss
    mib = 2**20
    print(f"server RSS: start {start / mib:.0f} MiB, peak {peak / mib:.0f}, end {end / mib:.0f}")
    assert end - start < 48 * mib, (start / mib, peak / mib, end / mib)


def test_shutdown_drains_a_request_in_flight(trained_run, mnist):
    """A request whose body is still arriving when the server is stopped is answered."""
    image = mnist_png(mnist.test_images[0].numpy())
    label = int(mnist.test_labels[0])
    with running_server_process(trained_run, "--no-access-log") as (url, _, proc):
        with connect(url) as sock:
            sock.sendall(
                b"POST /api/predict HTTP/1.1\r\nHost: " + host_header(url) + b"\r\n"
                b"Content-Type: image/png\r\nContent-Length: %d\r\n\r\n"
                % len(image)
                + image[: len(image) // 2]
            )
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            time.sleep(6)  # longer than the 5 s uvicorn waited before cancelling requests
            sock.sendall(image[len(image) // 2 :])
            status, body, _ = read_answer(sock)
        assert status == 200, body
        assert body["digit"] == label
        assert proc.wait(timeout=60) in (0, 130)  # 130: stopped by SIGINT, as Ctrl-C
