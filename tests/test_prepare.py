"""The one preparation rule that ``Predictor.predict`` and the server share: what is used as
it is, what is preprocessed, and how every failure (an unforeseen one too) is reported."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnist_classifier.errors import ImageError
from mnist_classifier.inference import image_io
from mnist_classifier.inference.prepare import Prepared, prepare_image
from mnist_classifier.inference.preprocess import preprocess


def mnist_like() -> np.ndarray:
    """A 28x28 uint8 white '1' on black, as MNIST stores digits."""
    a = np.zeros((28, 28), np.uint8)
    a[5:23, 13:16] = 255
    return a


def seven_on_paper() -> Image.Image:
    image = Image.new("L", (300, 240), 225)
    ImageDraw.Draw(image).line([(60, 40), (150, 40), (90, 200)], fill=25, width=14)
    return image


def png(image: Image.Image | np.ndarray) -> bytes:
    buf = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buf, "PNG")
    return buf.getvalue()


def test_an_mnist_style_28x28_is_used_as_it_is() -> None:
    digit = mnist_like()
    for source in (digit, digit[None], png(digit), Image.fromarray(digit)):
        prepared = prepare_image(source, name="d")
        assert prepared == Prepared("d", prepared.pixels, preprocessed=False, box=None)
        np.testing.assert_array_equal(prepared.pixels, digit)
    assert prepare_image(digit).pixels is not digit  # a copy: the caller's array stays theirs


def test_anything_else_is_preprocessed_and_keeps_its_box() -> None:
    image = seven_on_paper()
    prepared = prepare_image(png(image), name="seven.png")
    result = preprocess(image)
    assert prepared.preprocessed and prepared.name == "seven.png"
    np.testing.assert_array_equal(prepared.pixels, result.image)
    assert prepared.box == result.box
    # Dark ink on light paper at 28x28 is not MNIST-style either.
    assert prepare_image(255 - mnist_like()).preprocessed


def test_pixels_as_given_are_used_as_they_are_unless_blank() -> None:
    faint = np.zeros((28, 28), np.uint8)
    faint[10, 10] = 40  # not MNIST-style by the ring rule, but pixels by contract are used
    prepared = prepare_image(faint, name="pixels", as_is=True)
    assert not prepared.preprocessed
    np.testing.assert_array_equal(prepared.pixels, faint)
    # Blank: no ink, or no background (the rule the API's schema states).
    for value in (0, 255):
        with pytest.raises(
            ImageError, match=rf"^pixels: no digit found \(every pixel is {value}\)$"
        ) as e:
            prepare_image(np.full((28, 28), value, np.uint8), name="pixels", as_is=True)
        assert e.value.reason == "no_digit"
    # A uniform grey field has both ink and background by that rule: the model sees it.
    assert not prepare_image(np.full((28, 28), 7, np.uint8), name="pixels", as_is=True).preprocessed
    with pytest.raises(ImageError, match="uint8 of shape") as e:
        prepare_image(np.zeros((28, 27), np.uint8), name="pixels", as_is=True)
    assert e.value.reason == "bad_input"


def test_reasons_come_through_from_loading_and_preprocessing() -> None:
    cases = [
        (b"", "unreadable"),
        (b"plain text", "unsupported_format"),
        (object(), "bad_input"),
        (png(Image.new("L", (90, 60), 255)), "no_digit"),
    ]
    for source, reason in cases:
        with pytest.raises(ImageError) as caught:
            prepare_image(source, name="x")
        assert caught.value.reason == reason


@pytest.mark.parametrize("error", [ValueError("bad huffman table"), OSError("broken data")])
def test_an_unforeseen_decoder_error_is_an_image_error(monkeypatch, error: Exception) -> None:
    def explode(*args: object) -> Image.Image:
        raise error

    monkeypatch.setattr(image_io, "_decode", explode)
    with pytest.raises(ImageError) as caught:
        prepare_image(png(seven_on_paper()), name="photo.jpg")
    kind = type(error).__name__
    assert str(caught.value) == f"photo.jpg: cannot be processed ({kind}: {error})"
    assert caught.value.reason == "unexpected" and caught.value.__cause__ is error


def test_prepare_does_not_import_torch() -> None:
    code = (
        "import sys, numpy as np\n"
        "from mnist_classifier.inference.prepare import prepare_image\n"
        "a = np.full((64, 64), 255, np.uint8); a[10:54, 30:36] = 0\n"
        "assert prepare_image(a).pixels.shape == (28, 28)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
