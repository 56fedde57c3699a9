"""Soak test of ``mnist-classifier serve``: mixed good and bad traffic and stalled clients for a
bounded time, then requests served, answers by status, latency and the server's memory.

Starts the real server in a subprocess on 127.0.0.1 (a free port, no access log). For
``--seconds``, ``--clients`` threads each send, on their own keep-alive connection, a
random mix of requests (the same sequence for the same ``--seed``):

- good: JSON pixels, a drawn PNG upload (multipart), a photo-like JPEG as a raw body, a
  batch of four uploads;
- bad: invalid JSON, a file that is not an image, a PostScript file named ``x.png``, a
  wrong Content-Type, a body over the size cap, a cross-origin post, a blank pixel field.

Meanwhile ``--stalled`` threads keep that many clients stalled: each opens a connection,
sends part of its headers or part of a 6 MB upload, and waits for the server to give up
on it (its read timeout), then starts again. Every answer to the mixed traffic must have
the status its request calls for (200 for good, the documented 4xx for bad): any other
answer, or a 5xx, counts as a failure and the script exits 1.

The server's RSS is sampled every 0.2 s: at start (after a warm-up), at its peak, and at
the end, after every client has gone and a few seconds have passed.

    python benchmarks/soak.py [RUN_OR_CHECKPOINT] [--seconds 60] [--clients 8]
        [--stalled 16] [--read-timeout 5] [--seed 0]

Without RUN_OR_CHECKPOINT a small CNN is trained first (cnn-small, about a minute).
"""

from __future__ import annotations

import argparse
import collections
import datetime
import http.client
import json
import os
import random
import socket
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import (
    connect,
    drawing_payload,
    multipart,
    percentile_ms,
    photo_payload,
    pixels_payload,
    stop_server,
    train_small_model,
)

REQUEST_TIMEOUT = 60.0
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n0 0 moveto 28 28 lineto stroke\n"


def drawn_png() -> bytes:
    """The PNG inside the drawing payload (a 7 drawn as the page draws it)."""
    content_type, body = drawing_payload()
    boundary = content_type.split("boundary=", 1)[1].encode()
    part = body.split(b"--" + boundary)[1]
    return part.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n", 1)[0]


def batch_payload() -> tuple[str, bytes]:
    png = drawn_png()
    boundary = "soakbatchboundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="d{i}.png"\r\n'
        "Content-Type: image/png\r\n\r\n".encode()
        + png
        + b"\r\n"
        for i in range(4)
    ]
    return f"multipart/form-data; boundary={boundary}", b"".join(
        parts
    ) + f"--{boundary}--\r\n".encode()


def requests_mix() -> list[tuple[str, str, str, bytes, dict[str, str], int]]:
    """(kind, path, content type, body, extra headers, expected status) for each request kind."""
    drawing_ct, drawing_body = drawing_payload()
    pixels_ct, pixels_body = pixels_payload()
    photo_ct, photo_body = photo_payload()
    eps_ct, eps_body = multipart("file", "x.png", "image/png", EPS)
    text_ct, text_body = multipart("file", "notes.png", "image/png", b"just some text\n" * 20)
    batch_ct, batch_body = batch_payload()
    blank = json.dumps({"pixels": [[0] * 28] * 28}).encode()
    return [
        ("good pixels", "/api/predict", pixels_ct, pixels_body, {}, 200),
        ("good drawing", "/api/predict", drawing_ct, drawing_body, {}, 200),
        ("good photo", "/api/predict", photo_ct, photo_body, {}, 200),
        ("good batch", "/api/predict/batch", batch_ct, batch_body, {}, 200),
        ("bad json", "/api/predict", "application/json", b'{"pixels": [1, 2', {}, 400),
        ("not an image", "/api/predict", text_ct, text_body, {}, 415),
        ("postscript", "/api/predict", eps_ct, eps_body, {}, 415),
        ("content type", "/api/predict", "text/plain", b"hello", {}, 415),
        ("over the cap", "/api/predict", "image/png", b"", {}, 413),  # declared, not sent
        (
            "cross origin",
            "/api/predict",
            pixels_ct,
            pixels_body,
            {"Origin": "https://elsewhere.example"},
            403,
        ),
        ("blank pixels", "/api/predict", "application/json", blank, {}, 422),
    ]


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.by_status: collections.Counter[int | str] = collections.Counter()
        self.failures: list[str] = []
        self.stalled_done: collections.Counter[str] = collections.Counter()


def mixed_client(url: str, mix, deadline: float, seed: int, tally: Tally) -> None:
    parts = urllib.parse.urlsplit(url)
    rng = random.Random(seed)
    conn = connect(parts)
    while time.perf_counter() < deadline:
        kind, path, content_type, body, extra, expected = rng.choice(mix)
        t0 = time.perf_counter()
        status: int | str
        if kind == "over the cap":
            status = declared_too_large(parts)
            with tally.lock:
                tally.by_status[status] += 1
                tally.latencies.append(time.perf_counter() - t0)
                if status != expected:
                    tally.failures.append(f"{kind}: expected {expected}, got {status}")
            continue
        try:
            conn.request("POST", path, body=body, headers={"Content-Type": content_type, **extra})
            response = conn.getresponse()
            data = response.read()
            status = response.status
            json.loads(data)
            if response.getheader("connection", "").lower() == "close":
                conn.close()
                conn = connect(parts)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            status = type(exc).__name__
            conn.close()
            conn = connect(parts)
        elapsed = time.perf_counter() - t0
        with tally.lock:
            tally.by_status[status] += 1
            tally.latencies.append(elapsed)
            if status != expected:
                tally.failures.append(f"{kind}: expected {expected}, got {status}")
    conn.close()


def declared_too_large(parts: urllib.parse.SplitResult) -> int | str:
    """Declare a 9 MB upload and send none of it: the server refuses it from the header."""
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=REQUEST_TIMEOUT) as s:
            s.sendall(
                b"POST /api/predict HTTP/1.1\r\nHost: "
                + parts.netloc.encode()
                + b"\r\nContent-Type: image/png\r\nContent-Length: 9000000\r\n\r\n"
            )
            answer = s.recv(200)
            return int(answer.split(b" ", 2)[1]) if answer else "closed"
    except (OSError, ValueError, IndexError) as exc:
        return type(exc).__name__


def stalled_client(url: str, deadline: float, seed: int, tally: Tally) -> None:
    parts = urllib.parse.urlsplit(url)
    rng = random.Random(seed)
    host = parts.netloc.encode()
    while time.perf_counter() < deadline:
        how = rng.choice(["headers", "body"])
        try:
            with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
                if how == "headers":
                    sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: " + host + b"\r\nContent-Ty")
                else:
                    length = 6 * 1024 * 1024
                    sock.sendall(
                        b"POST /api/predict HTTP/1.1\r\nHost: "
                        + host
                        + b"\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n" % length
                    )
                    sock.sendall(b"\0" * (length - 100_000))
                sock.settimeout(max(1.0, deadline - time.perf_counter() + 30))
                answer = sock.recv(200)
                status = answer.split(b" ", 2)[1].decode() if answer else "closed"
        except OSError as exc:
            status = type(exc).__name__
        with tally.lock:
            tally.stalled_done[f"{how} -> {status}"] += 1


def rss_sampler(process: psutil.Process, samples: list[int], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            samples.append(process.memory_info().rss)
        except psutil.Error:
            return
        stop.wait(0.2)


def start_server(target: str, read_timeout: float):
    import subprocess

    cmd = [
        sys.executable, "-m", "mnist_classifier", "serve", target, "--port", "0",
        "--no-access-log", "--read-timeout", str(read_timeout),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("open http://"):
            url = line.split()[1]
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc, url
    raise SystemExit("the server did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", metavar="RUN_OR_CHECKPOINT")
    parser.add_argument("--seconds", type=float, default=60.0, help="traffic time (default 60)")
    parser.add_argument("--clients", type=int, default=8, help="mixed-traffic clients (default 8)")
    parser.add_argument("--stalled", type=int, default=16, help="stalled clients (default 16)")
    parser.add_argument(
        "--read-timeout", type=float, default=5.0, help="the server's --read-timeout (default 5)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.seconds <= 0 or args.clients < 1 or args.stalled < 0:
        parser.error("--seconds must be > 0, --clients >= 1, --stalled >= 0")

    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        target = args.checkpoint or train_small_model(Path(tmp))
        proc, url = start_server(target, args.read_timeout)
        process = psutil.Process(proc.pid)
        try:
            mix = requests_mix()
            warm = Tally()
            mixed_client(url, mix[:4], time.perf_counter() + 3, args.seed, warm)
            start_rss = process.memory_info().rss
            samples: list[int] = [start_rss]
            stop = threading.Event()
            sampler = threading.Thread(target=rss_sampler, args=(process, samples, stop))
            sampler.start()
            tally = Tally()
            deadline = time.perf_counter() + args.seconds
            threads = [
                threading.Thread(
                    target=mixed_client, args=(url, mix, deadline, args.seed + i, tally)
                )
                for i in range(args.clients)
            ] + [
                threading.Thread(target=stalled_client, args=(url, deadline, 1000 + i, tally))
                for i in range(args.stalled)
            ]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=args.seconds + REQUEST_TIMEOUT + 60)
            elapsed = time.perf_counter() - t0
            time.sleep(3.0)  # every client has gone: what stays is the server's own
            end_rss = process.memory_info().rss
            stop.set()
            sampler.join()
            samples.append(end_rss)
        finally:
            stop_server(proc)

    mib = 2**20
    served = sum(tally.by_status.values())
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"soak: {when}, {os.cpu_count()} CPUs shared by server and clients")
    print(
        f"command: python benchmarks/soak.py --seconds {args.seconds:g} --clients {args.clients}"
        f" --stalled {args.stalled} --read-timeout {args.read_timeout:g} --seed {args.seed}"
    )
    print()
    print("| measure | value |")
    print("| --- | --- |")
    print(f"| mixed requests answered | {served} in {elapsed:.0f} s ({served / elapsed:.1f}/s) |")
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(tally.by_status.items(), key=str))
    print(f"| answers by status | {statuses} |")
    print(f"| wrong answers (status not the one expected) | {len(tally.failures)} |")
    print(
        f"| latency p50 / p99 | {percentile_ms(tally.latencies, 50):.0f} ms /"
        f" {percentile_ms(tally.latencies, 99):.0f} ms |"
    )
    stalled = ", ".join(f"{k}: {v}" for k, v in sorted(tally.stalled_done.items()))
    print(f"| stalled clients, by how they ended | {stalled or 'none'} |")
    print(
        f"| server RSS start / peak / end | {start_rss / mib:.0f} / {max(samples) / mib:.0f} /"
        f" {end_rss / mib:.0f} MiB |"
    )
    for failure in tally.failures[:5]:
        print(f"    wrong: {failure}")
    server_errors = sum(v for k, v in tally.by_status.items() if isinstance(k, int) and k >= 500)
    return 1 if tally.failures or server_errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
