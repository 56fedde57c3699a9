"""The HTTP API and the page's files, through FastAPI's TestClient, with a real small model.

Every bad request must get a 4xx and ``{"error": "..."}``, never a 500.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import threading
import urllib.request
import warnings
import zlib
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

with warnings.catch_warnings():
    # Starlette >= 1.x suggests httpx2 for its TestClient; httpx (a dev dependency) works.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from mnist_classifier.cli import main
from mnist_classifier.errors import IMAGE_ERROR_REASONS, ImageError
from mnist_classifier.serving.app import MAX_BATCH, MAX_BODY_BYTES, STATIC_DIR, create_app
from serving_helpers import mnist_png, running_server

API_PATHS = {
    "/api/health": "get",
    "/api/model": "get",
    "/api/predict": "post",
    "/api/predict/batch": "post",
}


@pytest.fixture(scope="module")
def predictor(trained_run):
    from mnist_classifier.inference.predictor import load_predictor

    return load_predictor(trained_run, backend="torch")


@pytest.fixture(scope="module")
def client(predictor):
    # raise_server_exceptions=False: a bug answers 500 here as it would for a real client,
    # so the tests below see (and reject) it instead of an exception.
    with TestClient(create_app(predictor), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def digits(mnist):
    """The first 20 test images (uint8, 28x28) and their labels."""
    return mnist.test_images[:20].numpy(), mnist.test_labels[:20].numpy()


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def decode_data_url(url: str) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url[len(prefix) :]))))


def assert_error(response: Any, status: int, *fragments: str) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    message = body["error"]
    assert isinstance(message, str) and message and "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def assert_prediction(body: dict[str, Any]) -> None:
    probs = body["probabilities"]
    assert len(probs) == 10 and abs(sum(probs) - 1.0) < 1e-3
    assert body["digit"] == int(np.argmax(probs))
    assert body["confidence"] == pytest.approx(max(probs))
    assert decode_data_url(body["image"]).shape == (28, 28)


# ---------------------------------------------------------------------------------------------
# The page and its files


def test_page_is_served_with_its_assets_and_nothing_external(client):
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    html = page.text
    for needle in (
        '<canvas id="pad"',
        'id="undo"',
        'id="clear"',
        'type="file"',
        'aria-live="polite"',
    ):
        assert needle in html
    for asset in ("app.js", "app.css"):
        assert f"/static/{asset}" in html
        response = client.get(f"/static/{asset}")
        assert response.status_code == 200 and response.text
    for path in STATIC_DIR.iterdir():
        text = path.read_text()
        assert "http://" not in text and "https://" not in text, path.name
        assert "//fonts." not in text and "cdn" not in text.lower(), path.name


# ---------------------------------------------------------------------------------------------
# Health and model


def test_health(client, predictor):
    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "model": predictor.model_name}


def test_model_describes_the_served_checkpoint(client, trained_run):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    body = client.get("/api/model").json()
    assert body["model"] == "cnn-small"
    assert body["backend"] == "torch"
    assert body["parameters"] > 1000
    assert body["checkpoint"].endswith("best.pt")
    assert body["metrics"]["test_accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert body["metrics"]["val_accuracy"] == pytest.approx(metrics["val"]["accuracy"])
    assert body["normalization"]["std"] > 0
    assert body["max_body_bytes"] == MAX_BODY_BYTES and body["max_batch"] == MAX_BATCH


# ---------------------------------------------------------------------------------------------
# Predictions


def test_json_pixels_are_used_as_they_are(client, predictor, digits):
    images, _ = digits
    response = client.post("/api/predict", json={"pixels": images[3].tolist()})
    assert response.status_code == 200, response.text
    body = response.json()
    assert_prediction(body)
    assert body["name"] == "pixels"
    np.testing.assert_array_equal(decode_data_url(body["image"]), images[3])
    expected = predictor.predict_mnist(images[3:4])[0]
    np.testing.assert_allclose(body["probabilities"], expected, atol=1e-5)


def test_json_pixels_accept_fractions_and_round_them(client, digits):
    images, _ = digits
    pixels = (images[0].astype(np.float64) * 0.999).tolist()
    body = client.post("/api/predict", json={"pixels": pixels}).json()
    np.testing.assert_array_equal(
        decode_data_url(body["image"]), np.rint(images[0] * 0.999).astype(np.uint8)
    )


def test_uploaded_photos_of_digits_are_read_right(client, digits):
    images, labels = digits
    right = 0
    for image, label in zip(images[:10], labels[:10], strict=True):
        response = client.post(
            "/api/predict", files={"file": ("digit.png", mnist_png(image), "image/png")}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert_prediction(body)
        assert body["name"] == "digit.png"
        right += body["digit"] == label
    assert right >= 9, f"{right}/10 uploads classified right"


def test_upload_names_lose_their_folders(client, digits):
    png = mnist_png(digits[0][0])
    for sent, shown in (("C:\\photos\\my digit.png", "my digit.png"), ("a/b/c.png", "c.png")):
        body = client.post("/api/predict", files={"file": (sent, png, "image/png")}).json()
        assert body["name"] == shown
    # A part without a filename is a text field in multipart, not a file.
    response = client.post("/api/predict", files={"file": ("", png, "image/png")})
    assert_error(response, 422, "with a filename")


def test_upload_is_centred_like_mnist(client, digits):
    """A digit drawn small in a corner reaches the model scaled and centred."""
    images, labels = digits
    canvas = np.zeros((300, 300), dtype=np.uint8)
    small = np.asarray(Image.fromarray(images[0]).resize((84, 84), Image.Resampling.BILINEAR))
    canvas[10:94, 200:284] = small
    body = client.post(
        "/api/predict", files={"file": ("corner.png", png_bytes(canvas), "image/png")}
    ).json()
    seen = decode_data_url(body["image"]).astype(np.float64)
    ys, xs = np.indices(seen.shape)
    centre = ((seen * ys).sum() / seen.sum(), (seen * xs).sum() / seen.sum())
    assert abs(centre[0] - 14) < 1.5 and abs(centre[1] - 14) < 1.5, centre
    assert body["digit"] == labels[0]


def test_raw_image_body(client, digits):
    images, labels = digits
    response = client.post(
        "/api/predict", content=mnist_png(images[1]), headers={"Content-Type": "image/png"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["digit"] == labels[1]


def test_batch_of_files_keeps_order_and_reports_bad_items(client, digits):
    images, labels = digits
    files = [
        ("files", ("a.png", mnist_png(images[0]), "image/png")),
        ("files", ("notes.txt", b"not an image at all", "text/plain")),
        ("files", ("blank.png", png_bytes(np.full((50, 50), 255)), "image/png")),
        ("files", ("b.png", mnist_png(images[1]), "image/png")),
    ]
    response = client.post("/api/predict/batch", files=files)
    assert response.status_code == 200, response.text
    items = response.json()
    assert [item["name"] for item in items] == ["a.png", "notes.txt", "blank.png", "b.png"]
    assert [item["error"] is None for item in items] == [True, False, False, True]
    assert "not an image" in items[1]["error"] and items[1]["digit"] is None
    assert "no digit found" in items[2]["error"]
    assert items[0]["digit"] == labels[0] and items[3]["digit"] == labels[1]
    assert_prediction(items[0])


def test_batch_of_pixel_arrays_matches_the_predictor(client, predictor, digits):
    images, _ = digits
    response = client.post("/api/predict/batch", json={"images": images[:5].tolist()})
    assert response.status_code == 200, response.text
    items = response.json()
    assert [item["name"] for item in items] == [f"images[{i}]" for i in range(5)]
    expected = predictor.predict_mnist(images[:5])
    for item, probs in zip(items, expected, strict=True):
        assert item["error"] is None
        np.testing.assert_allclose(item["probabilities"], probs, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Bad requests: always a 4xx with {"error": ...}


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header declares ``width`` x ``height`` (its pixel data is cut short)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 4096)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)


def test_body_over_the_cap_by_content_length(client):
    body = b"\0" * (MAX_BODY_BYTES + 1)
    response = client.post("/api/predict", content=body, headers={"Content-Type": "image/png"})
    assert_error(response, 413, "over the limit")


def test_body_over_the_cap_while_reading_a_chunked_upload(client):
    def chunks():
        block = b"\0" * 65536
        for _ in range(MAX_BODY_BYTES // len(block) + 2):
            yield block

    response = client.post("/api/predict", content=chunks(), headers={"Content-Type": "image/png"})
    assert_error(response, 413, "over the limit")


def test_multipart_upload_over_the_cap(client):
    big = b"\x89PNG" + b"\0" * MAX_BODY_BYTES
    response = client.post("/api/predict", files={"file": ("big.png", big, "image/png")})
    assert_error(response, 413)


@pytest.mark.parametrize("side", [7000, 20000])
def test_too_many_pixels(client, side):
    response = client.post(
        "/api/predict", files={"file": ("huge.png", png_claiming(side, side), "image/png")}
    )
    assert_error(response, 413, "huge.png", "too many pixels")


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml", None]
)
def test_wrong_content_type(client, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/api/predict", content=b"hello", headers=headers)
    assert_error(response, 415, "Content-Type", "multipart/form-data")


def test_wrong_content_type_for_batch(client, digits):
    response = client.post(
        "/api/predict/batch",
        content=mnist_png(digits[0][0]),
        headers={"Content-Type": "image/png"},
    )
    assert_error(response, 415, "Content-Type image/png")


def test_a_file_that_is_not_an_image(client):
    response = client.post(
        "/api/predict", files={"file": ("notes.txt", b"just some text\n", "text/plain")}
    )
    assert_error(response, 415, "notes.txt", "not an image")


def test_truncated_image(client, digits):
    data = mnist_png(digits[0][0])
    response = client.post(
        "/api/predict", files={"file": ("cut.png", data[: len(data) // 2], "image/png")}
    )
    message = assert_error(response, 400, "cut.png")
    assert "truncated" in message or "corrupt" in message


def test_empty_file(client):
    response = client.post("/api/predict", files={"file": ("empty.png", b"", "image/png")})
    assert_error(response, 400, "empty.png", "empty")


def test_empty_raw_body(client):
    response = client.post("/api/predict", content=b"", headers={"Content-Type": "image/png"})
    assert_error(response, 400, "empty")


@pytest.mark.parametrize("value", [0, 255])
def test_image_with_no_digit(client, value):
    blank = png_bytes(np.full((120, 90), value))
    response = client.post("/api/predict", files={"file": ("blank.png", blank, "image/png")})
    assert_error(response, 422, "blank.png", "no digit found")


def test_blank_pixels(client):
    response = client.post("/api/predict", json={"pixels": [[0] * 28] * 28})
    assert_error(response, 422, "no digit found")


# The status of each kind of refused image (ImageError.reason): the API's contract.
STATUS_BY_REASON = {
    "unreadable": 400,
    "unsupported_format": 415,
    "too_large": 413,
    "bad_input": 422,
    "no_digit": 422,
    "several_digits": 422,
    "unexpected": 500,
}


def test_every_reason_has_a_status():
    assert set(STATUS_BY_REASON) == set(IMAGE_ERROR_REASONS)


@pytest.mark.parametrize("reason", IMAGE_ERROR_REASONS)
def test_the_status_follows_the_reason_not_the_wording(client, digits, monkeypatch, reason):
    from mnist_classifier.inference import image_io

    def refuse(fp: Any, label: str, *rest: Any) -> None:
        raise ImageError(f"{label}: not an image, too many pixels, no digit found", reason=reason)

    monkeypatch.setattr(image_io, "_decode", refuse)
    png = mnist_png(digits[0][0])
    response = client.post("/api/predict", files={"file": ("d.png", png, "image/png")})
    assert_error(response, STATUS_BY_REASON[reason], "d.png: not an image")


def fail_to_decode(monkeypatch, name: str, error: Exception) -> None:
    """Make the image decoder raise ``error`` (as a decoder bug would) for the file ``name``."""
    from mnist_classifier.inference import image_io

    decode = image_io._decode

    def flaky(fp: Any, label: str, *rest: Any) -> Any:
        if label == name:
            raise error
        return decode(fp, label, *rest)

    monkeypatch.setattr(image_io, "_decode", flaky)


@pytest.mark.parametrize("error", [ValueError("bad huffman table"), OSError("broken data")])
def test_an_unforeseen_decoder_error_fails_only_its_item(client, digits, monkeypatch, error):
    images, labels = digits
    fail_to_decode(monkeypatch, "bad.png", error)
    files = [
        ("files", ("a.png", mnist_png(images[0]), "image/png")),
        ("files", ("bad.png", mnist_png(images[1]), "image/png")),
        ("files", ("b.png", mnist_png(images[2]), "image/png")),
    ]
    response = client.post("/api/predict/batch", files=files)
    assert response.status_code == 200, response.text
    a, bad, b = response.json()
    kind = type(error).__name__
    assert bad == {
        "name": "bad.png",
        "digit": None,
        "confidence": None,
        "probabilities": None,
        "image": None,
        "error": f"bad.png: cannot be processed ({kind}: {error})",
    }
    assert a["error"] is None and b["error"] is None
    assert [a["digit"], b["digit"]] == [labels[0], labels[2]]
    # Alone, the same image is the one failed item: a 500 with the same one-line error.
    single = client.post("/api/predict", files={"file": files[1][1]})
    assert_error(single, 500, f"bad.png: cannot be processed ({kind}: {error})")


def test_invalid_json(client):
    response = client.post(
        "/api/predict", content=b'{"pixels": [[1, 2', headers={"Content-Type": "application/json"}
    )
    assert_error(response, 400, "not valid JSON")


ROW = [0] * 28


def pixels_with(row: int, col: int, value: Any) -> list[list[Any]]:
    rows: list[list[Any]] = [list(ROW) for _ in range(28)]
    rows[row][col] = value
    return rows


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        ({"pixels": [ROW] * 27}, ["pixels", "28 items"]),
        ({"pixels": [ROW] * 29}, ["pixels", "28 items"]),
        ({"pixels": [*[ROW] * 27, [0] * 27]}, ["pixels[27]", "28 items"]),
        ({"pixels": [*[ROW] * 27, [0] * 30]}, ["pixels[27]", "28 items"]),
        ({"pixels": pixels_with(3, 5, 256)}, ["pixels[3][5]", "less than or equal to 255", "256"]),
        ({"pixels": pixels_with(0, 0, -1)}, ["pixels[0][0]", "greater than or equal to 0"]),
        ({"pixels": pixels_with(7, 1, "12")}, ["pixels[7][1]", "valid number"]),
        ({"pixels": pixels_with(7, 2, True)}, ["pixels[7][2]", "valid number"]),
        ({"pixels": pixels_with(7, 3, None)}, ["pixels[7][3]", "valid number"]),
        ({"pixels": pixels_with(7, 4, [1])}, ["pixels[7][4]", "valid number"]),
        ({"pixels": [[ROW] * 28]}, ["pixels[0]"]),
        ({"pixels": "a picture"}, ["pixels", "array"]),
        ({"image": [ROW] * 28}, ["pixels", "Field required"]),
        ([[ROW] * 28], ["body", "object"]),
    ],
)
def test_json_of_the_wrong_shape_or_values(client, body, fragments):
    response = client.post("/api/predict", json=body)
    assert_error(response, 422, *fragments)


def test_non_finite_pixel_values(client):
    text = json.dumps({"pixels": pixels_with(2, 2, 1.5)}).replace("1.5", "NaN", 1)
    response = client.post(
        "/api/predict", content=text, headers={"Content-Type": "application/json"}
    )
    assert response.status_code in (400, 422), response.text
    assert_error(response, response.status_code, "pixels")


def test_multipart_without_the_file_field(client, digits):
    response = client.post(
        "/api/predict", files={"image": ("d.png", mnist_png(digits[0][0]), "image/png")}
    )
    assert_error(response, 422, "field 'file'", "image")


def test_multipart_file_field_sent_as_text(client):
    response = client.post("/api/predict", data={"file": "hello"})
    # data= alone is form-urlencoded: not accepted at all
    assert_error(response, 415)
    response = client.post(
        "/api/predict", data={"file": "hello"}, files={"other": ("x", b"x", "text/plain")}
    )
    assert_error(response, 422, "field 'file'", "not text")


def test_malformed_multipart(client):
    response = client.post(
        "/api/predict",
        content=b'--nope\r\nContent-Disposition: form-data; name="file"\r\n\r\nabc',
        headers={"Content-Type": "multipart/form-data"},
    )
    assert_error(response, 400, "multipart")


def test_several_files_to_the_single_endpoint(client, digits):
    png = mnist_png(digits[0][0])
    response = client.post(
        "/api/predict",
        files=[("file", ("a.png", png, "image/png")), ("file", ("b.png", png, "image/png"))],
    )
    assert_error(response, 422, "too many files")


def test_batch_limits(client, digits):
    images, _ = digits
    too_many = [images[0].tolist()] * (MAX_BATCH + 1)
    assert_error(client.post("/api/predict/batch", json={"images": too_many}), 422, "images")
    assert_error(client.post("/api/predict/batch", json={"images": []}), 422, "images")
    assert_error(
        client.post("/api/predict/batch", json={"images": [[ROW] * 28, [ROW] * 3]}),
        422,
        "images[1]",
    )
    files = [("files", (f"{i}.png", b"x", "image/png")) for i in range(MAX_BATCH + 1)]
    assert_error(client.post("/api/predict/batch", files=files), 422, "too many files")
    response = client.post("/api/predict/batch", files={"file": ("a.png", b"x", "image/png")})
    assert_error(response, 422, "files")


def test_unknown_paths_and_methods_answer_json(client):
    assert_error(client.get("/api/nothing"), 404)
    assert_error(client.get("/static/nothing.js"), 404)
    assert_error(client.get("/api/predict"), 405)
    assert_error(client.delete("/api/health"), 405)


# ---------------------------------------------------------------------------------------------
# Documentation and concurrency


def test_openapi_documents_every_endpoint(client):
    spec = client.get("/openapi.json").json()
    for path, method in API_PATHS.items():
        operation = spec["paths"][path][method]
        assert operation.get("summary"), path
        assert "200" in operation["responses"], path
    for path in ("/api/predict", "/api/predict/batch"):
        operation = spec["paths"][path]["post"]
        content = operation["requestBody"]["content"]
        assert {"multipart/form-data", "application/json"} <= set(content), path
        assert {"400", "413", "415", "422"} <= set(operation["responses"]), path
    schemas = spec["components"]["schemas"]
    assert {"PredictionOut", "BatchItemOut", "ModelOut", "HealthOut", "ErrorOut"} <= set(schemas)
    single = spec["paths"]["/api/predict"]["post"]["requestBody"]["content"]
    assert "image/*" in single
    assert single["application/json"]["schema"]["properties"]["pixels"]["maxItems"] == 28
    assert client.get("/docs").status_code == 200


def test_onnx_backend_serves_the_same_answers(trained_run, predictor, digits):
    pytest.importorskip("onnxruntime")
    from mnist_classifier.inference.predictor import load_predictor

    images, _ = digits
    with TestClient(create_app(load_predictor(trained_run, backend="onnx"))) as onnx_client:
        assert onnx_client.get("/api/model").json()["backend"] == "onnx"
        items = onnx_client.post("/api/predict/batch", json={"images": images[:4].tolist()}).json()
    expected = predictor.predict_mnist(images[:4])
    for item, probs in zip(items, expected, strict=True):
        np.testing.assert_allclose(item["probabilities"], probs, atol=1e-4)


class BlockingPredictor:
    """A fake predictor whose inference waits until the test lets it go."""

    model_name = "blocking"
    checkpoint_path = "fake.pt"
    backend = "fake"
    mean = 0.1307
    std = 0.3081
    metrics = None
    parameters = None
    package_version = None

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def predict_mnist(self, images_28: np.ndarray) -> np.ndarray:
        self.started.set()
        self.release.wait(timeout=60)
        out = np.full((len(images_28), 10), 0.02)
        out[:, 4] = 0.82
        return out


def test_inference_does_not_block_the_event_loop():
    fake = BlockingPredictor()
    pixels = pixels_with(10, 10, 200)
    answers: list[Any] = []
    with TestClient(create_app(fake)) as test_client:
        worker = threading.Thread(
            target=lambda: answers.append(test_client.post("/api/predict", json={"pixels": pixels}))
        )
        worker.start()
        assert fake.started.wait(timeout=60)
        # The prediction is stuck in its worker thread; the server must still answer.
        assert test_client.get("/api/health").status_code == 200
        assert worker.is_alive() and not answers
        fake.release.set()
        worker.join(timeout=60)
    assert answers[0].status_code == 200
    assert answers[0].json()["digit"] == 4


def test_a_fake_predictor_with_no_metrics(digits):
    fake = BlockingPredictor()
    fake.release.set()
    with TestClient(create_app(fake)) as test_client:
        body = test_client.get("/api/model").json()
        assert body["model"] == "blocking" and body["metrics"] is None
        assert body["parameters"] is None


# ---------------------------------------------------------------------------------------------
# The serve command


def test_serve_fails_fast_on_a_bad_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["serve", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("mnist-classifier: error:") and "bad.pt" in err
    assert len(err.splitlines()) == 1
    assert main(["serve", str(tmp_path / "missing")]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_serve_refuses_zero_threads(trained_run, capsys):
    assert main(["serve", str(trained_run), "--threads", "0"]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err


def test_serve_names_the_extra_when_fastapi_is_missing(monkeypatch, capsys, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a)
    )
    assert main(["serve", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "pip install 'mnist-classifier[serve]'" in err and "uvicorn" in err
    assert len(err.splitlines()) == 1


def test_serve_reports_a_busy_port_in_one_line(trained_run, capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["serve", str(trained_run), "--backend", "torch", "--port", str(port)]) == 1
    err = capsys.readouterr().err.strip()
    assert f"cannot listen on 127.0.0.1:{port}" in err and len(err.splitlines()) == 1


def test_serve_command_listens_on_loopback_and_answers(trained_run, digits):
    with running_server(trained_run, "--no-access-log") as (url, lines):
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "api/health", timeout=30) as response:
            assert json.load(response) == {"status": "ok", "model": "cnn-small"}
        request = urllib.request.Request(
            url + "api/predict",
            data=mnist_png(digits[0][0]),
            headers={"Content-Type": "image/png"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.load(response)["digit"] == digits[1][0]
    assert any("serving cnn-small" in line for line in lines)


def test_an_mnist_style_upload_is_used_as_it_is_like_predict(client, predictor, digits):
    images, _ = digits
    response = client.post(
        "/api/predict", files={"file": ("d.png", png_bytes(images[0]), "image/png")}
    )
    assert response.status_code == 200
    seen = decode_data_url(response.json()["image"])
    np.testing.assert_array_equal(seen, images[0])
    assert response.json()["probabilities"] == pytest.approx(
        predictor.predict_mnist(images[:1])[0].tolist(), abs=1e-6
    )
