"""Property-based tests (hypothesis): whatever bytes or arrays come in, image loading and
preprocessing raise our typed ImageError and nothing else, and the API's JSON and multipart
parsing never answers with a 5xx."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402
from PIL import Image  # noqa: E402

from mnist_classifier.errors import ImageError  # noqa: E402
from mnist_classifier.inference.image_io import load_image  # noqa: E402
from mnist_classifier.inference.prepare import prepare_image  # noqa: E402
from mnist_classifier.inference.preprocess import preprocess  # noqa: E402

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def encoded(fmt: str, mode: str = "L", size: tuple[int, int] = (24, 20)) -> bytes:
    rng = np.random.default_rng(0)
    channels = {"L": (), "RGB": (3,), "RGBA": (4,)}[mode]
    im = Image.fromarray(rng.integers(0, 256, (size[1], size[0], *channels), dtype=np.uint8))
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


SEEDS = [
    encoded("PNG"),
    encoded("PNG", "RGBA"),
    encoded("JPEG", "RGB"),
    encoded("GIF"),
    encoded("BMP", "RGB"),
    encoded("TIFF"),
    encoded("WEBP", "RGB"),
]


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A valid image with bytes flipped, cut short or spliced: closer to real hostile input."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        where = draw(st.integers(0, len(data) - 1))
        data[where] = draw(st.integers(0, 255))
    cut = draw(st.integers(1, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=16))


def only_image_errors(call, *args, **kwargs) -> None:
    try:
        call(*args, **kwargs)
    except ImageError as exc:
        assert exc.reason != "unexpected", exc  # foreseen: a typed reason, not a catch-all
        assert "\n" not in str(exc)


@FUZZ
@given(st.binary(max_size=512))
def test_arbitrary_bytes_raise_only_image_errors(data):
    only_image_errors(load_image, data, name="fuzz")
    only_image_errors(prepare_image, data, name="fuzz")


@FUZZ
@given(mutated_images())
def test_damaged_images_raise_only_image_errors(data):
    only_image_errors(load_image, data, name="fuzz")
    only_image_errors(prepare_image, data, name="fuzz")


DTYPES = st.sampled_from(
    [
        np.uint8,
        np.uint16,
        np.int16,
        np.int32,
        np.int64,
        np.float16,
        np.float32,
        np.float64,
        np.bool_,
    ]
)


@FUZZ
@given(
    hnp.arrays(
        DTYPES,
        hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=40),
    )
)
def test_arbitrary_arrays_raise_only_image_errors(array):
    only_image_errors(load_image, array, name="fuzz")
    only_image_errors(prepare_image, array, name="fuzz")
    only_image_errors(preprocess, array, name="fuzz")
    only_image_errors(prepare_image, array, name="fuzz", as_is=True)


@FUZZ
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 40), st.integers(1, 40))))
def test_arbitrary_float_pixels_raise_only_image_errors(array):
    only_image_errors(load_image, array, name="fuzz")
    only_image_errors(prepare_image, array, name="fuzz")


# ---------------------------------------------------------------------------------------------
# The API's parsers

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from mnist_classifier.serving.app import create_app  # noqa: E402
from serving_helpers import FakePredictor  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(FakePredictor()), raise_server_exceptions=False) as c:
        yield c


def assert_answered(response) -> None:
    assert response.status_code < 500, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/json"
    if response.status_code >= 400:
        assert set(response.json()) == {"error"}


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=30)
        | st.dictionaries(
            st.sampled_from(["pixels", "images", "x"]) | st.text(max_size=4), children
        )
    ),
    max_leaves=60,
)


@st.composite
def pixel_like(draw: st.DrawFn) -> object:
    """Bodies close to valid pixels: 28x28-ish lists of odd numbers and types."""
    rows = draw(st.integers(26, 29))
    cols = draw(st.integers(26, 29))
    value = st.integers(-2, 300) | st.floats(allow_nan=True) | st.sampled_from([None, "1", True])
    return [[draw(value) for _ in range(cols)] for _ in range(rows)]


@pytest.mark.slow
@FUZZ
@given(st.one_of(JSON, pixel_like().map(lambda p: {"pixels": p})))
def test_any_json_to_predict_gets_an_answer_not_a_5xx(client, body):
    text = json.dumps(body, allow_nan=True)
    for path in ("/api/predict", "/api/predict/batch"):
        response = client.post(path, content=text, headers={"Content-Type": "application/json"})
        assert_answered(response)


@pytest.mark.slow
@FUZZ
@given(pixel_like().map(lambda p: {"images": [p, p]}))
def test_pixel_batches_get_an_answer_not_a_5xx(client, body):
    assert_answered(client.post("/api/predict/batch", content=json.dumps(body)))


@pytest.mark.slow
@FUZZ
@given(st.binary(max_size=600), st.text("abcxyz-", min_size=1, max_size=20))
def test_any_multipart_body_gets_an_answer_not_a_5xx(client, body, boundary):
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    for path in ("/api/predict", "/api/predict/batch"):
        assert_answered(client.post(path, content=body, headers=headers))


@st.composite
def multipart_bodies(draw: st.DrawFn) -> tuple[bytes, str]:
    """Well-formed multipart framing around odd fields, names and (damaged) files."""
    boundary = "b0undary"
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        field = draw(st.sampled_from(["file", "files", "other", ""]))
        filename = draw(st.none() | st.text(max_size=12))
        payload = draw(st.binary(max_size=64) | mutated_images())
        disposition = f'form-data; name="{field}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
        if draw(st.booleans()):
            head += "Content-Type: image/png\r\n"
        parts.append(head.encode("utf-8", "surrogateescape") + b"\r\n" + payload + b"\r\n")
    tail = f"--{boundary}--\r\n".encode() if draw(st.booleans()) else b""
    return b"".join(parts) + tail, boundary


@pytest.mark.slow
@FUZZ
@given(multipart_bodies())
def test_multipart_uploads_get_an_answer_not_a_5xx(client, body_and_boundary):
    body, boundary = body_and_boundary
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    for path in ("/api/predict", "/api/predict/batch"):
        assert_answered(client.post(path, content=body, headers=headers))
