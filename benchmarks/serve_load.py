"""Load test of ``mnist-classifier serve``: requests/s and latency at 1, 8 and 32 clients,
with 1 and 2 worker processes (``serve --workers N``), for each ``--backends`` choice.

For each backend and worker count, starts the real server in a subprocess on 127.0.0.1 (a free port,
no access log) and waits until it is ready; all of them run at once, idle but for the one
being measured. Then, for each payload and each concurrency level, and in turn for each
worker count (``--repeats`` times, interleaved, so that a noisy machine hits them alike),
runs that many client threads, each with its own keep-alive HTTP connection, sending
``POST /api/predict`` back to back for ``--seconds`` (and at most ``--max-requests`` per
level). The kernel hands each new connection to one worker, so a single client only ever
reaches one of them. Every answer must
be 200 with a digit; anything else counts as an error, and the script exits 1 if
there was any. Payloads:

- ``drawing``: what the page sends while you draw: a 300x300 PNG of a digit drawn
  in white strokes on black (multipart field ``file``); the server preprocesses it.
- ``pixels``: a JSON ``{"pixels": 28x28}`` MNIST test digit, used as it is.
- ``photo``: a 640x480 JPEG of a digit in dark ink on grey paper with a light gradient.

Clients and server share the machine's CPUs, so the figures are for this machine
as a whole; the table header says how many CPUs there were.

    python benchmarks/serve_load.py [RUN_OR_CHECKPOINT] [--seconds 5] [--levels 1,8,32]
        [--payloads drawing,pixels,photo] [--max-requests 20000] [--workers 1,2] [--repeats 3]
        [--backends auto,torch]

Without RUN_OR_CHECKPOINT the server serves the model shipped in the package (as
``serve`` does). The JSON-pixels p50 at 1 client with the default backend:

    python benchmarks/serve_load.py --payloads pixels --levels 1 --workers 1 --backends auto,torch
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

STARTUP_TIMEOUT = 180.0  # seconds for the server to import torch, load the model and listen
REQUEST_TIMEOUT = 30.0


# ---------------------------------------------------------------------------------------------
# Payloads: (content type, body)


def drawing_payload() -> tuple[str, bytes]:
    """A 7 drawn as the page draws it: round white strokes on a 200x200 pad in a 300x300 field."""
    im = Image.new("L", (300, 300), 0)
    draw = ImageDraw.Draw(im)
    points = [
        (50 + 0.24 * 200, 50 + 0.2 * 200),
        (50 + 0.76 * 200, 50 + 0.2 * 200),
        (50 + 0.42 * 200, 50 + 0.86 * 200),
    ]
    draw.line(points, fill=255, width=16, joint="curve")
    for x, y in (points[0], points[-1]):
        draw.ellipse((x - 8, y - 8, x + 8, y + 8), fill=255)
    return multipart("file", "drawing.png", "image/png", _encode(im, "PNG"))


def pixels_payload() -> tuple[str, bytes]:
    digit = _mnist_digit()
    return "application/json", json.dumps({"pixels": digit.tolist()}).encode()


def photo_payload() -> tuple[str, bytes]:
    """A digit in dark ink on paper lit from one side, 640x480, as a phone photo might be."""
    digit = np.asarray(
        Image.fromarray(_mnist_digit()).resize((300, 300), Image.Resampling.BILINEAR)
    )
    x = np.linspace(0.0, 1.0, 640)[None, :]
    paper = 200.0 - 60.0 * x + np.zeros((480, 1))  # brighter on the left
    paper[90:390, 170:470] *= 1.0 - 0.8 * digit.astype(np.float64) / 255.0
    im = Image.fromarray(np.clip(paper, 0, 255).astype(np.uint8))
    return multipart("file", "photo.jpg", "image/jpeg", _encode(im, "JPEG"))


PAYLOADS = {"drawing": drawing_payload, "pixels": pixels_payload, "photo": photo_payload}


def _mnist_digit() -> np.ndarray:
    from mnist_classifier.data.sources import load_dataset

    return load_dataset().test_images[0].numpy()  # a 7


def _encode(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def multipart(field_name: str, filename: str, content_type: str, data: bytes) -> tuple[str, bytes]:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field_name}"; '
        f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'
    ).encode()
    return (
        f"multipart/form-data; boundary={boundary}",
        head + data + f"\r\n--{boundary}--\r\n".encode(),
    )


# ---------------------------------------------------------------------------------------------
# The server


def start_server(
    target: str | None, workers: int = 1, backend: str = "auto"
) -> tuple[subprocess.Popen[str], str]:
    """Run ``mnist-classifier serve [TARGET] --port 0 --workers N --backend B``; return the
    process and its URL once ``/readyz`` answers (workers load their models after the URL is
    printed). No TARGET: the bundled model."""
    cmd = [
        sys.executable,
        "-m",
        "mnist_classifier",
        "serve",
        *([target] if target else []),
        "--backend",
        backend,
        "--port",
        "0",
        "--no-access-log",
        "--workers",
        str(workers),
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    urls: queue.Queue[str | None] = queue.Queue()
    lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())
            if line.startswith("open http://"):
                urls.put(line.split()[1])
        urls.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        url = urls.get(timeout=STARTUP_TIMEOUT)
    except queue.Empty:
        url = None
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while url is not None and not _ready(url):
        if time.monotonic() > deadline or proc.poll() is not None:
            url = None
        time.sleep(0.5)
    if url is None:
        stop_server(proc)
        sys.exit("the server did not start:\n" + "\n".join(lines[-20:]))
    return proc, url


def _ready(url: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=REQUEST_TIMEOUT)
        try:
            conn.request("GET", "/readyz")
            return conn.getresponse().status == 200
        finally:
            conn.close()
    except OSError:
        return False


def stop_server(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------------------------------------
# Clients


@dataclass
class Level:
    """What one concurrency level measured."""

    clients: int
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run_level(
    url: str, content_type: str, body: bytes, clients: int, seconds: float, max_requests: int
) -> Level:
    """``clients`` threads post ``body`` back to back until the time or request budget is spent."""
    parts = urllib.parse.urlsplit(url)
    level = Level(clients)
    lock = threading.Lock()
    budget = [max_requests]
    start_line = threading.Barrier(clients + 1)
    deadline = [0.0]

    def take() -> bool:
        with lock:
            if budget[0] <= 0 or time.perf_counter() >= deadline[0]:
                return False
            budget[0] -= 1
            return True

    def client() -> None:
        conn = connect(parts)
        latencies: list[float] = []
        errors: list[str] = []
        start_line.wait()
        while take():
            t0 = time.perf_counter()
            try:
                conn.request(
                    "POST", "/api/predict", body=body, headers={"Content-Type": content_type}
                )
                response = conn.getresponse()
                data = response.read()
                ok = response.status == 200 and "digit" in json.loads(data)
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors.append(f"{response.status}: {data[:120]!r}")
            except (OSError, http.client.HTTPException, ValueError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection(
                    parts.hostname, parts.port, timeout=REQUEST_TIMEOUT
                )
        conn.close()
        with lock:
            level.latencies.extend(latencies)
            level.errors.extend(errors)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    deadline[0] = t0 + seconds
    start_line.wait()
    for t in threads:
        t.join(timeout=seconds + REQUEST_TIMEOUT + 10)
    level.seconds = time.perf_counter() - t0
    return level


def connect(parts: urllib.parse.SplitResult) -> http.client.HTTPConnection:
    """A keep-alive connection with Nagle's algorithm off, as browsers and curl have it
    (http.client writes a request's headers and body in two sends)."""
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=REQUEST_TIMEOUT)
    conn.connect()
    assert conn.sock is not None
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def percentile_ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) * 1000.0 if values else float("nan")


# ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", metavar="RUN_OR_CHECKPOINT")
    parser.add_argument("--seconds", type=float, default=5.0, help="per level (default 5)")
    parser.add_argument("--levels", default="1,8,32", help="concurrent clients (default 1,8,32)")
    parser.add_argument(
        "--payloads", default="drawing,pixels,photo", help=f"any of {', '.join(PAYLOADS)}"
    )
    parser.add_argument("--max-requests", type=int, default=20000, help="per level (default 20000)")
    parser.add_argument(
        "--warmup", type=int, default=20, help="requests before each payload's levels"
    )
    parser.add_argument(
        "--workers", default="1,2", help="server worker processes to compare (default 1,2)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of each level per worker count (default 3)"
    )
    parser.add_argument(
        "--backends", default="auto", help="serve --backend values to compare (default auto)"
    )
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",")]
    worker_counts = [int(x) for x in args.workers.split(",")]
    if any(n < 1 for n in worker_counts) or args.repeats < 1:
        parser.error("--workers and --repeats take whole numbers of at least 1")
    levels = [int(x) for x in args.levels.split(",")]
    payloads = [p.strip() for p in args.payloads.split(",")]
    unknown = [p for p in payloads if p not in PAYLOADS]
    if unknown or any(n < 1 for n in levels) or args.seconds <= 0:
        parser.error(f"bad --payloads/--levels/--seconds ({', '.join(unknown) or 'values'})")

    target = args.checkpoint
    configs = [(b, n) for b in backends for n in worker_counts]
    servers: dict[tuple[str, int], tuple[subprocess.Popen[str], str]] = {}
    try:
        for backend, n in configs:  # all running at once; only the one measured is busy
            servers[backend, n] = start_server(target, n, backend)
        models = {c: json.loads(_get(url, "/api/model")) for c, (_, url) in servers.items()}
        first = models[configs[0]]
        print(
            f"model {first.get('source') or first['model']}, {os.cpu_count()} CPUs shared by "
            f"server and clients, {args.seconds:g} s per level, {args.repeats} repeats "
            f"(servers interleaved; req/s is the median over repeats)"
        )
        header = (
            f"| {'payload':<8} | {'clients':>7} | {'backend':<12} | {'workers':>7} | "
            f"{'requests':>8} | {'req/s':>8} | {'p50 ms':>8} | {'p99 ms':>8} | {'errors':>6} |"
        )
        print(header)
        print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
        failed = 0
        for name in payloads:
            content_type, body = PAYLOADS[name]()
            warm_failed = False
            for _, url in servers.values():
                warm = run_level(url, content_type, body, 1, 60.0, args.warmup)
                if warm.errors:
                    print(f"{name}: warm-up failed: {warm.errors[0]}")
                    failed += len(warm.errors)
                    warm_failed = True
            if warm_failed:
                continue
            for clients in levels:
                runs: dict[tuple[str, int], list[Level]] = {c: [] for c in configs}
                for _ in range(args.repeats):
                    for c in configs:
                        runs[c].append(
                            run_level(
                                servers[c][1],
                                content_type,
                                body,
                                clients,
                                args.seconds,
                                args.max_requests,
                            )
                        )
                for c in configs:
                    done = sum(len(level.latencies) for level in runs[c])
                    rate = float(np.median([len(lv.latencies) / lv.seconds for lv in runs[c]]))
                    latencies = [t for level in runs[c] for t in level.latencies]
                    errors = [e for level in runs[c] for e in level.errors]
                    failed += len(errors)
                    shown = f"{c[0]}={models[c]['backend']}" if c[0] == "auto" else c[0]
                    print(
                        f"| {name:<8} | {clients:>7} | {shown:<12} | {c[1]:>7} | {done:>8} | "
                        f"{rate:>8.1f} | {percentile_ms(latencies, 50):>8.2f} | "
                        f"{percentile_ms(latencies, 99):>8.2f} | {len(errors):>6} |",
                        flush=True,
                    )
                    for error in errors[:3]:
                        print(f"    error: {error}")
    finally:
        for proc, _ in servers.values():
            stop_server(proc)
    return 1 if failed else 0


def _get(url: str, path: str) -> bytes:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=REQUEST_TIMEOUT)
    try:
        conn.request("GET", path)
        return conn.getresponse().read()
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
