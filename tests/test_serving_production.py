"""What deployments expect of the server: /metrics, /healthz and /readyz, X-Request-ID,
offline API docs, the public-host warning, and (slow) several worker processes."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("prometheus_client")

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from prometheus_client.parser import text_string_to_metric_families

from mnist_classifier.cli import main
from mnist_classifier.serving.app import create_app
from serving_helpers import mnist_png, running_server


@pytest.fixture(scope="module")
def predictor(trained_run):
    from mnist_classifier.inference.predictor import load_predictor

    return load_predictor(trained_run, backend="torch")


@pytest.fixture
def client(predictor):
    # A fresh app per test: its metrics start from zero.
    with TestClient(create_app(predictor), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def digits(mnist):
    return mnist.test_images[:8].numpy(), mnist.test_labels[:8].numpy()


def families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample_value(family: Any, suffix: str = "", **labels: str) -> float:
    """The one sample of ``family`` named ``family.name + suffix`` whose labels include ``labels``."""
    found = [
        s.value
        for s in family.samples
        if s.name == family.name + suffix and labels.items() <= s.labels.items()
    ]
    assert len(found) == 1, (family.name, suffix, labels, family.samples)
    return found[0]


# ---------------------------------------------------------------------------------------------
# /metrics


def test_metrics_count_requests_by_route_and_status_and_time_both_stages(client, digits):
    images, labels = digits
    for image in images[:3]:
        assert client.post("/api/predict", json={"pixels": image.tolist()}).status_code == 200
    png = mnist_png(images[3])
    assert client.post("/api/predict", content=png, headers={"content-type": "image/png"}).json()[
        "digit"
    ] == int(labels[3])
    assert (
        client.post(
            "/api/predict", content=b"{", headers={"content-type": "application/json"}
        ).status_code
        == 400
    )
    assert client.get("/no/such/page").status_code == 404
    assert client.get("/static/app.css").status_code == 200

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    got = families(response.text)
    requests = got["mnist_classifier_http_requests"]
    assert requests.type == "counter"
    model = {"model": "cnn-small"}
    assert (
        sample_value(requests, "_total", route="/api/predict", method="POST", status="200", **model)
        == 4
    )
    assert sample_value(requests, "_total", route="/api/predict", status="400") == 1
    assert sample_value(requests, "_total", route="other", status="404") == 1
    assert sample_value(requests, "_total", route="/static", status="200") == 1
    # Every series names the model and its version (a content hash of the checkpoint).
    for family in (requests, got["mnist_classifier_http_request_duration_seconds"]):
        for sample in family.samples:
            assert sample.labels["model"] == "cnn-small"
            assert re.fullmatch(r"[0-9a-f]{12}", sample.labels["model_version"])

    duration = got["mnist_classifier_http_request_duration_seconds"]
    assert duration.type == "histogram"
    assert sample_value(duration, "_count", route="/api/predict") == 5
    preprocess = got["mnist_classifier_preprocess_seconds"]
    inference = got["mnist_classifier_model_seconds"]
    assert preprocess.type == inference.type == "histogram"
    # Four requests reached preparation and the model; the invalid JSON never got there.
    assert sample_value(preprocess, "_count") == 4
    assert sample_value(inference, "_count") == 4
    assert sample_value(inference, "_sum") > 0
    assert sample_value(got["mnist_classifier_images"], "_total") == 4
    assert sample_value(got["mnist_classifier_worker_classify_requests"]) == 4
    # This /metrics request itself is the one in flight.
    assert sample_value(got["mnist_classifier_http_requests_in_flight"]) == 1
    info = got["mnist_classifier_model_info"]
    assert sample_value(info, backend="torch", model="cnn-small") == 1


def test_a_batch_counts_its_images_and_a_refused_image_no_model_time(client, digits):
    images, _ = digits
    batch = {"images": [image.tolist() for image in images[:5]]}
    assert client.post("/api/predict/batch", json=batch).status_code == 200
    blank = [[0] * 28 for _ in range(28)]
    assert client.post("/api/predict", json={"pixels": blank}).status_code == 422
    got = families(client.get("/metrics").text)
    assert sample_value(got["mnist_classifier_images"], "_total") == 5
    assert sample_value(got["mnist_classifier_model_seconds"], "_count") == 1
    assert sample_value(got["mnist_classifier_preprocess_seconds"], "_count") == 2
    requests = got["mnist_classifier_http_requests"]
    assert sample_value(requests, "_total", route="/api/predict/batch", status="200") == 1
    assert sample_value(requests, "_total", route="/api/predict", status="422") == 1


def test_an_unforeseen_error_is_counted_as_500(predictor):
    app = create_app(predictor)

    def broken() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/broken", broken)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        assert test_client.get("/broken").status_code == 500
        got = families(test_client.get("/metrics").text)
    assert (
        sample_value(got["mnist_classifier_http_requests"], "_total", route="/broken", status="500")
        == 1
    )


# ---------------------------------------------------------------------------------------------
# Probes


def test_healthz_and_readyz(client, predictor):
    import os

    live = client.get("/healthz")
    assert live.status_code == 200
    assert live.json() == {"status": "ok", "model": "cnn-small", "pid": os.getpid()}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_readyz_answers_503_until_the_model_is_usable(predictor):
    app = create_app(predictor)
    app.state.ready = False
    with TestClient(app) as test_client:
        response = test_client.get("/readyz")
        assert response.status_code == 503
        assert response.json() == {"error": "not ready: the model is not loaded"}
        assert test_client.get("/healthz").status_code == 200
        app.state.ready = True
        assert test_client.get("/readyz").status_code == 200


# ---------------------------------------------------------------------------------------------
# X-Request-ID


def test_a_request_id_is_made_when_absent_and_kept_when_valid(client):
    made = client.get("/api/health").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert client.get("/api/health").headers["x-request-id"] != made
    given = "req-42.abc:7/x@y+z="
    assert (
        client.get("/api/health", headers={"X-Request-ID": given}).headers["x-request-id"] == given
    )
    # Error answers carry it too, including those of the body-size middleware.
    too_big = client.post(
        "/api/predict",
        content=b"x",
        headers={
            "X-Request-ID": "big-1",
            "content-type": "image/png",
            "content-length": str(10**9),
        },
    )
    assert too_big.status_code == 413 and too_big.headers["x-request-id"] == "big-1"
    assert client.get("/nowhere", headers={"X-Request-ID": "nf"}).headers["x-request-id"] == "nf"


@pytest.mark.parametrize(
    "bad", ["", "x" * 129, "has space", 'quote"', "é", "semi;colon", "a,b", "<script>"]
)
def test_an_invalid_request_id_is_replaced(client, bad):
    echoed = client.get("/api/health", headers={"X-Request-ID": bad.encode()}).headers[
        "x-request-id"
    ]
    assert echoed != bad and re.fullmatch(r"[0-9a-f]{32}", echoed)


def test_a_repeated_request_id_header_is_replaced(client):
    echoed = client.get(
        "/api/health", headers=[("X-Request-ID", "one"), ("X-Request-ID", "two")]
    ).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", echoed)


def test_the_request_id_reaches_the_access_log_filter():
    from mnist_classifier.serving.request_id import (
        RequestIdLogFilter,
        current_request_id,
        log_config,
    )

    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, "x", (), None)
    token = current_request_id.set("abc-123")
    try:
        assert RequestIdLogFilter().filter(record)
    finally:
        current_request_id.reset(token)
    assert record.request_id == "abc-123"
    config = log_config()
    assert config["formatters"]["access"]["fmt"].endswith("request_id=%(request_id)s")
    assert config["handlers"]["access"]["filters"] == ["request_id"]


# ---------------------------------------------------------------------------------------------
# Offline docs


def test_docs_pages_use_only_local_assets_under_a_strict_csp(client):
    for path in ("/docs", "/redoc"):
        page = client.get(path)
        assert page.status_code == 200, path
        html = page.text
        assert (
            "http://" not in html
            and "https://" not in html
            and "//" not in html.replace("<!--", "")
        )
        assert "<script>" not in html  # no inline script
        csp = page.headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["script-src"] == "'self'"
        assert directives["default-src"] == "'self'"
        assert directives["connect-src"] == "'self'"
        assert directives["font-src"] == "'self'"
        for src in re.findall(r'(?:src|href)="([^"]+)"', html):
            asset = client.get("/" + src)
            assert asset.status_code == 200, src
    assert "unsafe-inline" not in client.get("/docs").headers["content-security-policy"]
    assert len(client.get("/docs-assets/swagger-ui-bundle.js").content) > 100_000
    redoc_js = client.get("/docs-assets/redoc.standalone.js").text
    assert len(redoc_js) > 100_000
    assert "cdn.redoc.ly" not in redoc_js  # the footer logo's URL is dropped
    assert "document.currentScript.nonce" in redoc_js
    redoc = client.get("/redoc")
    nonce = re.search(r"'nonce-([^']+)'", redoc.headers["content-security-policy"]).group(1)
    assert redoc.text.count(f'nonce="{nonce}"') == 2
    assert nonce not in client.get("/redoc").headers["content-security-policy"]  # fresh each time
    assert "openapi.json" in client.get("/static/docs.js").text


# ---------------------------------------------------------------------------------------------
# The serve command


def test_serve_refuses_zero_workers(trained_run, capsys):
    assert main(["serve", str(trained_run), "--workers", "0"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err


def test_a_public_host_prints_one_warning_line_about_authentication():
    from mnist_classifier.cli.serve import public_host_warning

    line = public_host_warning("0.0.0.0")
    assert "\n" not in line
    assert "0.0.0.0" in line and "no authentication" in line and "reverse proxy" in line


def test_serve_on_a_public_host_warns_once_on_stderr(trained_run, capsys, monkeypatch):
    import uvicorn

    served: list[Any] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: served.append(sockets))
    assert main(["serve", str(trained_run), "--host", "0.0.0.0", "--port", "0"]) == 0
    assert served  # it got as far as starting the server (stubbed here)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "0.0.0.0" in err[0] and "no authentication" in err[0] and "reverse proxy" in err[0]
    assert main(["serve", str(trained_run), "--port", "0"]) == 0
    assert "no authentication" not in capsys.readouterr().err


@pytest.mark.slow
def test_the_real_server_logs_request_ids(trained_run):
    with running_server(trained_run) as (url, lines):
        request = urllib.request.Request(url + "api/health", headers={"X-Request-ID": "trace-me-1"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.headers["X-Request-ID"] == "trace-me-1"
        wait_for(lambda: any("request_id=trace-me-1" in line for line in lines), lines)
    access = next(line for line in lines if "request_id=trace-me-1" in line)
    assert "GET /api/health" in access and "200" in access


def wait_for(condition: Any, lines: list[str], timeout: float = 30.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout * 10)):
        if condition():
            return
        done.wait(0.1)
    pytest.fail("not seen in the server's output:\n" + "\n".join(lines[-20:]), pytrace=False)


def get_json(url: str, timeout: float = 60.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


@pytest.mark.slow
def test_two_workers_each_serve_predictions_and_metrics_add_up(
    trained_run, digits, tmp_path: Path, monkeypatch
):
    images, labels = digits
    shared = tmp_path / "metrics"  # the workers' shared metrics folder (made by serve)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(shared))
    with running_server(trained_run, "--workers", "2", "--no-access-log") as (url, lines):
        # The workers load their models after the URL is printed: wait until both are up, or
        # the first one, answering in well under a millisecond, takes every connection.
        assert get_json(url + "healthz", timeout=180)["status"] == "ok"
        wait_for(
            lambda: sum("Application startup complete" in line for line in lines) >= 2,
            lines,
            timeout=180,
        )
        sent = 0
        pids: set[str] = set()
        errors: list[str] = []
        lock = threading.Lock()

        def client(index: int) -> None:
            nonlocal sent
            image, label = images[index % len(images)], int(labels[index % len(labels)])
            request = urllib.request.Request(
                url + "api/predict",
                data=json.dumps({"pixels": image.tolist()}).encode(),
                headers={"Content-Type": "application/json"},
            )
            try:  # a new connection per request, so the kernel can hand it to either worker
                with urllib.request.urlopen(request, timeout=120) as response:
                    digit = json.load(response)["digit"]
            except OSError as exc:
                with lock:
                    errors.append(repr(exc))
                return
            with lock:
                sent += 1
                if digit != label:
                    errors.append(f"image {index}: {digit} != {label}")

        for _round in range(10):  # bounded: at most 10 rounds of 16 concurrent requests
            threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=180)
            assert not errors, errors
            text = urllib.request.urlopen(url + "metrics", timeout=60).read().decode()
            per_worker = families(text)["mnist_classifier_worker_classify_requests"]
            pids = {s.labels["pid"] for s in per_worker.samples if s.value > 0}
            if len(pids) == 2:
                break
        assert len(pids) == 2, "only one worker answered:\n" + "\n".join(lines[-20:])
        # Whichever worker answers /metrics, the counts are the sum over both workers.
        for _ in range(4):
            got = families(urllib.request.urlopen(url + "metrics", timeout=60).read().decode())
            total = sample_value(
                got["mnist_classifier_http_requests"], "_total", route="/api/predict", status="200"
            )
            assert total == sent
            assert (
                sum(s.value for s in got["mnist_classifier_worker_classify_requests"].samples)
                == sent
            )
        assert str(get_json(url + "healthz")["pid"]) in pids
        # Every worker applies the origin policy and the guarded protocol, as one process does.
        for _ in range(4):
            foreign = urllib.request.Request(
                url + "api/predict",
                data=json.dumps({"pixels": images[0].tolist()}).encode(),
                headers={"Content-Type": "application/json", "Origin": "https://elsewhere.example"},
            )
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(foreign, timeout=60)
            assert refused.value.code == 403
        with socket.create_connection(
            (urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port), timeout=60
        ) as raw:
            raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            reply = raw.recv(4096).decode("latin-1")
        assert reply.startswith("HTTP/1.1 400") and '{"error"' in reply
    assert any("2 worker processes" in line for line in lines)
    # Both workers wrote there, and dropped their in-flight gauges as they stopped.
    assert len(list(shared.glob("gauge_all_*.db"))) == 2
    assert list(shared.glob("gauge_livesum_*.db")) == []
