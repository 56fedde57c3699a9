"""Hostile images: formats outside the allow-list, decoder messages, and images whose
decoding would cost far more than their file size suggests."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image

from mnist_classifier.errors import ImageError
from mnist_classifier.inference import image_io
from mnist_classifier.inference.image_io import (
    ACCEPTED_FORMATS,
    MAX_DECODED_BYTES,
    MAX_SIDE,
    load_image,
    probe_decoded_bytes,
    public_detail,
)
from mnist_classifier.inference.prepare import prepare_image

# A PostScript drawing: Pillow recognises it and would hand it to Ghostscript to render.
EPS = (
    b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n"
    b"newpath 4 4 moveto 24 24 lineto 8 setlinewidth stroke\nshowpage\n%%EOF\n"
)


@pytest.fixture
def ghostscript_spy(monkeypatch):
    """Records every attempt of Pillow's EPS plugin to render (that is, to run gs)."""
    calls: list[str] = []

    def spy(*args, **kwargs):
        calls.append("Ghostscript")
        raise OSError("gs -q -sOutputFile=/tmp/secret-temp.png /tmp/secret-input.eps failed")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", spy)
    return calls


def test_postscript_named_png_never_reaches_ghostscript(ghostscript_spy, tmp_path):
    assert Image.open(io.BytesIO(EPS)).format == "EPS"  # what Pillow alone would do
    path = tmp_path / "x.png"
    path.write_bytes(EPS)
    for source in (path, EPS, io.BytesIO(EPS)):
        with pytest.raises(ImageError) as caught:
            load_image(source, name="x.png")
        assert caught.value.reason == "unsupported_format"
        message = str(caught.value)
        assert message.startswith("x.png: not an image in an accepted format")
        assert "PNG, JPEG, BMP, GIF, TIFF or WebP" in message
        assert "gs" not in message.split() and "/tmp" not in message
    assert ghostscript_spy == []


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [("PNG", "L"), ("JPEG", "RGB"), ("BMP", "RGB"), ("GIF", "P"), ("TIFF", "L"), ("WEBP", "RGB")],
)
def test_every_accepted_format_still_loads(fmt, mode):
    assert fmt in ACCEPTED_FORMATS
    buf = io.BytesIO()
    Image.new(mode, (40, 30), 255 if mode != "RGB" else (255, 255, 255)).save(buf, fmt)
    assert load_image(buf.getvalue()).size == (40, 30)


@pytest.mark.parametrize("fmt", ["ICO", "PCX", "TGA", "PPM", "SGI"])
def test_other_formats_pillow_reads_are_refused(fmt):
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (255, 255, 255)).save(buf, fmt)
    assert Image.open(io.BytesIO(buf.getvalue())).format == fmt
    with pytest.raises(ImageError) as caught:
        load_image(buf.getvalue(), name="odd.png")
    assert caught.value.reason == "unsupported_format"


def test_decoder_messages_lose_paths_and_commands():
    exc = OSError('cannot run gs -sOutputFile=/tmp/tmpab12.png "/var/tmp/in.eps" C:\\temp\\x')
    shown = public_detail(exc)
    assert "/tmp" not in shown and "/var" not in shown and "C:\\" not in shown
    assert shown.count("<path>") == 3
    assert len(public_detail(OSError("x" * 500))) <= 120


def test_an_unforeseen_error_message_loses_paths(monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("failed in /usr/lib/python3/site-packages/secret.py")

    monkeypatch.setattr("mnist_classifier.inference.prepare.load_for_analysis", boom)
    with pytest.raises(ImageError) as caught:
        prepare_image(b"\x89PNG", name="d.png")
    assert caught.value.reason == "unexpected"
    assert "/usr" not in str(caught.value) and "<path>" in str(caught.value)


# ---------------------------------------------------------------------------------------------
# Expensive images


def tiff_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    im = Image.fromarray(array, mode=mode) if mode else Image.fromarray(array)
    buf = io.BytesIO()
    im.save(buf, "TIFF", compression="tiff_adobe_deflate")
    return buf.getvalue()


def test_a_small_float_tiff_that_decodes_huge_is_refused_from_its_header():
    # 6000x6000 float32: 137 MiB once decoded, from a file of a few hundred kilobytes.
    data = tiff_bytes(np.zeros((6000, 6000), dtype=np.float32))
    assert len(data) < 2_000_000
    assert probe_decoded_bytes(data) == 6000 * 6000 * 4 > MAX_DECODED_BYTES
    with pytest.raises(ImageError) as caught:
        load_image(data, name="deep.tif")
    assert caught.value.reason == "too_large"
    assert "deep.tif: too large to decode" in str(caught.value)


def test_a_deep_image_is_downscaled_before_it_is_converted():
    # 16-bit, 4000x4000 (32 MB decoded): converting it before shrinking took >400 MB of
    # float64 arrays; shrunk to MAX_SIDE first, the arrays take a few tens of MB at most.
    array = np.zeros((4000, 4000), dtype=np.uint16)
    array[1000:3000, 1900:2100] = 60000
    data = tiff_bytes(array)
    tracemalloc.start()
    try:
        image = load_image(data, name="deep16.tif")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert image.size == (MAX_SIDE, MAX_SIDE) and image.mode == "L"
    assert np.asarray(image)[MAX_SIDE // 2, MAX_SIDE // 2] == 233  # 60000 / 257, rounded
    assert peak < 80 * 2**20, f"peak {peak / 2**20:.0f} MiB"


def test_probe_reports_what_load_would_decode():
    buf = io.BytesIO()
    Image.new("RGB", (300, 200)).save(buf, "PNG")
    assert probe_decoded_bytes(buf.getvalue()) == 300 * 200 * 4
    assert probe_decoded_bytes(b"not an image") == 0
    assert probe_decoded_bytes(EPS) == 0


def test_a_big_jpeg_is_budgeted_at_its_draft_scale():
    buf = io.BytesIO()
    Image.new("RGB", (MAX_SIDE * 4 + 8, 64)).save(buf, "JPEG")
    # Decoded at 1/4 scale (still >= MAX_SIDE wide), so a quarter of the pixels are paid for.
    assert probe_decoded_bytes(buf.getvalue()) == image_io.decoded_bytes(
        ((MAX_SIDE * 4 + 8) // 4, 16), "RGB"
    )


def test_predict_refuses_postscript_named_png_in_one_line(
    trained_run, tmp_path, capsys, ghostscript_spy
):
    from mnist_classifier.cli import main

    (tmp_path / "x.png").write_bytes(EPS)
    assert main(["predict", str(trained_run), str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "x.png: not an image in an accepted format" in errors[0]
    assert "Traceback" not in err and "gs" not in err.split()
    assert ghostscript_spy == []
