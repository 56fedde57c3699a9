"""The server's policies, in process: origins and hosts, body deadlines and the in-flight
upload cap, the light and heavy lanes, the per-request decoding budget, EPS uploads,
JSON for every refusal, and the limits the OpenAPI schema states."""

from __future__ import annotations

import io
import threading
from typing import Any

import anyio
import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from mnist_classifier.cli import main
from mnist_classifier.cli.serve import allowed_hosts
from mnist_classifier.serving import requests as serving_requests
from mnist_classifier.serving.app import create_app
from mnist_classifier.serving.body_limit import BodySizeLimit
from mnist_classifier.serving.limits import ServerLimits
from mnist_classifier.serving.schemas import MAX_BATCH, MAX_BODY_BYTES
from mnist_classifier.serving.security import normalise_origin, split_host
from serving_helpers import FakePredictor


def pixels() -> list[list[int]]:
    grid = [[0] * 28 for _ in range(28)]
    for row in range(6, 22):
        grid[row][14] = 255
    return grid


def png(size: tuple[int, int], mode: str = "L") -> bytes:
    im = Image.new(mode, size, 255 if mode == "L" else (255,) * len(mode))
    im.paste(
        0 if mode == "L" else (0,) * len(mode),
        (size[0] // 3, size[1] // 4, size[0] // 2, size[1] * 3 // 4),
    )
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def assert_json_error(response: Any, status: int, *fragments: str) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.fixture
def client():
    with TestClient(create_app(FakePredictor(digit=4)), raise_server_exceptions=False) as c:
        yield c


# ---------------------------------------------------------------------------------------------
# Origins and hosts


def test_a_page_on_another_origin_cannot_post(client):
    response = client.post(
        "/api/predict", json={"pixels": pixels()}, headers={"Origin": "https://evil.example"}
    )
    assert_json_error(response, 403, "https://evil.example", "--cors-origin")
    assert "access-control-allow-origin" not in response.headers
    for origin in ("null", "http://testserver.evil.example", "file://", "garbage"):
        response = client.post(
            "/api/predict", json={"pixels": pixels()}, headers={"Origin": origin}
        )
        assert response.status_code == 403, origin


def test_a_cross_site_form_post_without_origin_is_refused(client):
    response = client.post(
        "/api/predict", json={"pixels": pixels()}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert_json_error(response, 403)


def test_same_origin_and_non_browser_clients_are_served(client):
    for headers in ({}, {"Origin": "http://testserver"}, {"Sec-Fetch-Site": "same-origin"}):
        response = client.post("/api/predict", json={"pixels": pixels()}, headers=headers)
        assert response.status_code == 200, (headers, response.text)
        assert "access-control-allow-origin" not in response.headers
    # Behind a TLS proxy the Host has no port: the origin's scheme and port are its own.
    response = client.post(
        "/api/predict",
        json={"pixels": pixels()},
        headers={"Host": "digits.example", "Origin": "https://digits.example"},
    )
    assert response.status_code == 200
    response = client.post(
        "/api/predict",
        json={"pixels": pixels()},
        headers={"Host": "127.0.0.1:8000", "Origin": "http://127.0.0.1:9999"},
    )
    assert response.status_code == 403


def test_cors_origin_gets_cors_headers_and_preflight():
    app = create_app(FakePredictor(digit=4), cors_origins=["HTTP://Localhost:3000/"])
    with TestClient(app) as c:
        origin = {"Origin": "http://localhost:3000"}
        response = c.post("/api/predict", json={"pixels": pixels()}, headers=origin)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "http://localhost:3000"
        assert "Origin" in response.headers["vary"]
        preflight = c.options(
            "/api/predict",
            headers={
                **origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == "http://localhost:3000"
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert "Content-Type" in preflight.headers["access-control-allow-headers"]
        other = c.options(
            "/api/predict",
            headers={"Origin": "http://localhost:3001", "Access-Control-Request-Method": "POST"},
        )
        assert_json_error(other, 403)
        assert "access-control-allow-origin" not in other.headers


def test_allowed_hosts_refuse_other_host_headers():
    app = create_app(
        FakePredictor(digit=4), allowed_hosts=["localhost", "127.0.0.1", "::1", "*.lan"]
    )
    with TestClient(app) as c:
        for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", "pi.lan", "LOCALHOST"):
            assert c.get("/api/health", headers={"Host": host}).status_code == 200, host
        for host in ("evil.example", "localhost.evil.example", "lan", "127.0.0.1:x", ""):
            response = c.get("/api/health", headers={"Host": host})
            assert_json_error(response, 400, "not served here")


def test_default_allowed_hosts_protect_loopback_only():
    assert allowed_hosts("127.0.0.1", None) == ["127.0.0.1", "::1", "localhost"]
    assert allowed_hosts("0.0.0.0", None) is None
    assert allowed_hosts("0.0.0.0", ["digits.lan"]) == ["digits.lan"]


def test_origin_and_host_parsing():
    assert normalise_origin("https://Example.com:443") == "https://example.com"
    assert normalise_origin("http://[::1]:8000") == "http://[::1]:8000"
    assert split_host("[::1]:8000") == ("::1", 8000)
    assert split_host("Example.COM.") == ("example.com", None)


@pytest.mark.parametrize("bad", ["example.com", "ftp://x", "http://x/path", "http://x:99999", "*"])
def test_a_bad_cors_origin_is_a_usage_error(bad, capsys, tmp_path):
    assert main(["serve", str(tmp_path), "--cors-origin", bad]) == 2
    err = capsys.readouterr().err.strip()
    assert "--cors-origin" in err and len(err.splitlines()) == 1


# ---------------------------------------------------------------------------------------------
# Body deadlines and the in-flight cap (the middleware alone, with scripted clients)


async def echo_app(scope, receive, send):
    message = await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(len(message["body"])).encode()})


def call(middleware, chunks, delays, declared=None):
    """Run one request through ``middleware``; the body comes in ``chunks`` after ``delays``."""
    headers = [] if declared is None else [(b"content-length", str(declared).encode())]
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    sent: list[dict[str, Any]] = []
    pieces = list(zip(chunks, delays, strict=True))

    async def receive():
        if not pieces:
            await anyio.sleep(3600)
        chunk, delay = pieces.pop(0)
        await anyio.sleep(delay)
        return {"type": "http.request", "body": chunk, "more_body": bool(pieces)}

    async def send(message):
        sent.append(message)

    async def run():
        await middleware(scope, receive, send)

    anyio.run(run)
    status = sent[0]["status"]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return status, body, dict(sent[0]["headers"])


def test_a_body_that_stalls_gets_408_and_closes():
    limit = BodySizeLimit(echo_app, 1000, idle_timeout=0.2, total_timeout=5)
    status, body, headers = call(limit, [b"a" * 10, b"b" * 10], [0, 2])
    assert status == 408 and b"not received in time" in body
    assert headers[b"connection"] == b"close"
    assert limit.inflight_bytes == 0
    assert call(limit, [b"a" * 10, b"b" * 10], [0, 0.05])[:2] == (200, b"20")


def test_a_body_that_trickles_past_the_total_deadline_gets_408():
    limit = BodySizeLimit(echo_app, 1000, idle_timeout=1, total_timeout=0.5)
    status, _, _ = call(limit, [b"a"] * 10, [0.1] * 10)
    assert status == 408


def test_inflight_upload_bytes_are_capped():
    limit = BodySizeLimit(echo_app, 1000, max_inflight_bytes=1500)
    results: list[int] = []

    async def two_uploads():
        async def upload(delay_between):
            scope = {
                "type": "http",
                "method": "POST",
                "path": "/",
                "headers": [(b"content-length", b"1000")],
            }
            pieces = [b"x" * 500, b"x" * 500]

            async def receive():
                chunk = pieces.pop(0)
                await anyio.sleep(delay_between)
                return {"type": "http.request", "body": chunk, "more_body": bool(pieces)}

            async def send(message):
                if message["type"] == "http.response.start":
                    results.append(message["status"])

            await limit(scope, receive, send)

        async with anyio.create_task_group() as tg:
            tg.start_soon(upload, 0.3)
            await anyio.sleep(0.1)
            tg.start_soon(upload, 0)

    anyio.run(two_uploads)
    assert sorted(results) == [200, 503]
    assert limit.inflight_bytes == 0
    # Alone, a body of the full size always passes, whatever the cap.
    assert (
        call(BodySizeLimit(echo_app, 1000, max_inflight_bytes=10), [b"x" * 1000], [0], 1000)[0]
        == 200
    )


# ---------------------------------------------------------------------------------------------
# Work: lanes and the per-request budget


def test_small_requests_are_answered_while_big_ones_run(monkeypatch):
    """Two heavy requests hold their lane; a JSON request still gets through at once."""
    release = threading.Event()
    started = threading.Semaphore(0)
    real_prepare = serving_requests.prepare_image

    def slow_for_big(source, **kwargs):
        if isinstance(source, bytes):
            started.release()
            assert release.wait(timeout=120)
        return real_prepare(source, **kwargs)

    monkeypatch.setattr(serving_requests, "prepare_image", slow_for_big)
    big = png((2000, 1500), "RGB")  # 12 MB decoded: heavy
    answers: list[Any] = []
    with TestClient(create_app(FakePredictor(digit=4), max_workers=2)) as c:

        def post_big():
            files = [("files", ("big.png", big, "image/png"))]
            answers.append(c.post("/api/predict/batch", files=files))

        heavy = [threading.Thread(target=post_big) for _ in range(2)]
        for t in heavy:
            t.start()
        assert started.acquire(timeout=120)  # one heavy request is being decoded
        small: list[Any] = []
        worker = threading.Thread(
            target=lambda: small.append(c.post("/api/predict", json={"pixels": pixels()}))
        )
        worker.start()
        worker.join(timeout=60)
        still_blocked = not answers
        release.set()
        for t in heavy:
            t.join(timeout=120)
    assert still_blocked, "the heavy requests were not held"
    assert small and small[0].status_code == 200
    assert [a.status_code for a in answers] == [200, 200]


def test_a_request_decoding_too_much_is_cut_off():
    limits = ServerLimits(max_request_decoded_bytes=1_500_000)
    image = png((400, 400), "RGB")  # 640,000 bytes decoded
    with TestClient(create_app(FakePredictor(digit=4), limits=limits)) as c:
        files = [("files", (f"{i}.png", image, "image/png")) for i in range(3)]
        items = c.post("/api/predict/batch", files=files).json()
    assert [i["digit"] for i in items] == [4, 4, None]
    assert "decode into more than" in items[2]["error"]


def test_a_postscript_upload_named_png_is_refused(client, monkeypatch):
    from PIL import EpsImagePlugin

    def never(*args, **kwargs):
        raise AssertionError("Ghostscript must not run")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", never)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n0 0 moveto 28 28 lineto stroke\n"
    for response in (
        client.post("/api/predict", files={"file": ("x.png", eps, "image/png")}),
        client.post("/api/predict", content=eps, headers={"Content-Type": "image/png"}),
    ):
        message = assert_json_error(response, 415, "not an image in an accepted format")
        assert "/tmp" not in message and "gs" not in message.split()


def test_an_unhandled_error_is_json(client, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail at /srv/app.py")

    monkeypatch.setattr("mnist_classifier.serving.metrics.classify", broken)
    response = client.post(
        "/api/predict", json={"pixels": pixels()}, headers={"X-Request-ID": "bug-report-1"}
    )
    message = assert_json_error(response, 500, "internal error")
    assert "secret" not in message
    assert response.headers["x-request-id"] == "bug-report-1"  # a 500 is traceable too


# ---------------------------------------------------------------------------------------------
# The OpenAPI schema states the limits


def test_openapi_states_the_limits(client):
    spec = client.get("/openapi.json").json()
    single = spec["paths"]["/api/predict"]["post"]["requestBody"]["content"]
    batch = spec["paths"]["/api/predict/batch"]["post"]["requestBody"]["content"]
    files = batch["multipart/form-data"]["schema"]["properties"]["files"]
    assert files["minItems"] == 1 and files["maxItems"] == MAX_BATCH
    images = batch["application/json"]["schema"]["properties"]["images"]
    assert images["minItems"] == 1 and images["maxItems"] == MAX_BATCH
    pixels_schema = single["application/json"]["schema"]["properties"]["pixels"]
    assert pixels_schema["minItems"] == pixels_schema["maxItems"] == 28
    row = pixels_schema["items"]
    assert row["minItems"] == row["maxItems"] == 28
    assert row["items"]["minimum"] == 0 and row["items"]["maximum"] == 255
    # Not blank: some pixel of ink and some of background.
    assert pixels_schema["allOf"], pixels_schema
    assert (
        str(MAX_BODY_BYTES)
        in spec["paths"]["/api/predict"]["post"]["responses"]["413"]["description"]
    )


def test_server_limits_default_to_the_schema_limits():
    assert ServerLimits().max_body_bytes == MAX_BODY_BYTES


@pytest.mark.parametrize("name", ["localhost:8000", "", "digits.example.org/api", "a b"])
def test_an_allowed_host_no_host_header_can_match_is_refused(name, capsys, tmp_path):
    from mnist_classifier.cli import main

    assert main(["serve", str(tmp_path / "no-model"), "--allowed-host", name]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--allowed-host" in err[0] and "without port or path" in err[0]


def test_allowed_hosts_accepts_names_patterns_and_ipv6():
    assert allowed_hosts("0.0.0.0", ["*.example.org", "::1", "[::1]", "digits"]) is not None
