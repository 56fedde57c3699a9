"""Preprocessing user images into MNIST-style 28x28 digits: loading, polarity, centring, errors."""

from __future__ import annotations

import io
import pickle
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from handwriting import VARIANTS, make_user_image
from mnist_classifier.errors import IMAGE_ERROR_REASONS, ImageError
from mnist_classifier.inference.image_io import MAX_PIXELS, MAX_SIDE, MNIST_SIDE, load_image
from mnist_classifier.inference.preprocess import DIGIT_BOX, PreprocessResult, preprocess, to_mnist


def centre_of_mass(a: np.ndarray) -> tuple[float, float]:
    m = a.astype(np.float64)
    ys, xs = np.mgrid[0 : a.shape[0], 0 : a.shape[1]]
    return float((m * ys).sum() / m.sum()), float((m * xs).sum() / m.sum())


def ink_box(a: np.ndarray, level: int = 0) -> tuple[int, int]:
    """(height, width) of the box around pixels brighter than ``level``."""
    rows = np.flatnonzero((a > level).any(axis=1))
    cols = np.flatnonzero((a > level).any(axis=0))
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def seven_on_paper(size: tuple[int, int] = (300, 240)) -> Image.Image:
    """A dark '7' on light paper, off-centre."""
    image = Image.new("L", size, 225)
    draw = ImageDraw.Draw(image)
    draw.line([(60, 40), (150, 40), (90, 200)], fill=25, width=14, joint="curve")
    return image


def assert_mnist_like(a: np.ndarray) -> None:
    assert a.shape == (MNIST_SIDE, MNIST_SIDE)
    assert a.dtype == np.uint8
    # White ink on black: the border is black, the ink is bright and covers a minority.
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    assert border.max() == 0
    assert a.max() >= 250
    assert 0.05 < (a > 127).mean() < 0.45
    cy, cx = centre_of_mass(a)
    assert abs(cy - 14.0) <= 1.0 and abs(cx - 14.0) <= 1.0, (cy, cx)
    assert max(ink_box(a)) in (DIGIT_BOX - 1, DIGIT_BOX, DIGIT_BOX + 1)


# Three digits per variant, so that every digit appears across the variants.
CASES = [(v, (3 * i + k) % 10) for i, v in enumerate(VARIANTS) for k in range(3)]


@pytest.mark.parametrize(("variant", "digit"), CASES)
def test_every_variant_gives_a_centred_white_on_black_digit(variant: str, digit: int) -> None:
    rng = np.random.default_rng(1000 + 10 * VARIANTS.index(variant) + digit)
    assert_mnist_like(to_mnist(make_user_image(digit, variant, rng)))


def test_polarity_is_detected_and_both_polarities_give_the_same_digit() -> None:
    dark = seven_on_paper()
    light = Image.fromarray(255 - np.asarray(dark))
    a, b = preprocess(dark), preprocess(light)
    assert a.inverted is True
    assert b.inverted is False
    assert np.abs(a.image.astype(int) - b.image.astype(int)).mean() < 3.0


def test_uneven_lighting_is_not_taken_for_ink() -> None:
    # A strong shadow over half the sheet, and a thin digit in the bright half.
    paper = np.full((480, 640), 230.0)
    paper[:, 320:] *= np.linspace(1.0, 0.35, 320)
    image = Image.fromarray(paper.astype(np.uint8))
    ImageDraw.Draw(image).line([(120, 120), (130, 360)], fill=30, width=10)
    result = preprocess(image)
    left, top, right, bottom = result.box
    assert left >= 100 and right <= 160 and top >= 100 and bottom <= 380
    assert ink_box(result.image)[0] == DIGIT_BOX


def test_faint_strokes_joined_to_the_digit_are_kept() -> None:
    # A '7' whose bar is drawn much lighter than its stem (a pencil pressed unevenly).
    image = Image.new("L", (300, 300), 230)
    draw = ImageDraw.Draw(image)
    draw.line([(90, 60), (200, 60)], fill=150, width=10)  # faint bar
    draw.line([(200, 60), (130, 250)], fill=20, width=10)  # dark stem
    result = preprocess(image)
    left, top, _, _ = result.box
    assert left <= 90 and top <= 56  # the bar is part of the digit
    assert result.image[:10].max() > 100  # ... and visible at the top of the 28x28


def test_specks_and_far_marks_are_removed() -> None:
    clean = seven_on_paper((600, 500))
    dirty = clean.copy()
    draw = ImageDraw.Draw(dirty)
    for x, y in [(20, 20), (560, 30), (500, 450), (30, 470), (300, 420)]:
        draw.ellipse((x, y, x + 4, y + 4), fill=40)  # dust
    draw.line([(520, 200), (545, 215)], fill=60, width=3)  # a stray pen mark, far away
    a, b = preprocess(clean), preprocess(dirty)
    assert b.box == a.box
    assert np.array_equal(a.image, b.image)


def test_result_exposes_the_crop_and_where_it_came_from() -> None:
    image = seven_on_paper()
    result = preprocess(image, name="seven.png")
    assert isinstance(result, PreprocessResult)
    assert result.name == "seven.png"
    assert result.source.size == image.size
    left, top, right, bottom = result.box
    assert (left, top) <= (60, 40) and (right, bottom) >= (150, 200)
    assert right - left < 130 and bottom - top < 200
    assert result.crop.dtype == np.uint8 and result.crop.ndim == 2
    assert result.crop.max() >= 250 and result.crop[0].max() > 0  # white ink, tight crop
    assert np.array_equal(result.image, to_mnist(image))


def stroke_width(a: np.ndarray) -> float:
    """2 * area / boundary length of the pixels >= 128 (MNIST's median is 2.9)."""
    ink = a >= 128
    p = np.pad(ink, 1)
    interior = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return 2.0 * ink.sum() / (ink & ~interior).sum()


def test_thin_pen_strokes_are_thickened_to_mnist_width() -> None:
    rng = np.random.default_rng(7)
    widths = [stroke_width(to_mnist(make_user_image(d, "thin_pen", rng))) for d in (0, 3, 8)]
    assert min(widths) >= 2.0, widths


def test_sheet_on_a_desk_is_read_and_its_edges_are_not() -> None:
    desk = np.random.default_rng(3).normal(70, 8, (600, 800)).clip(0, 255)
    desk[150:480, 250:600] = 215.0  # the sheet
    image = Image.fromarray(desk.astype(np.uint8))
    ImageDraw.Draw(image).line([(420, 220), (410, 410)], fill=30, width=12)  # a '1'
    result = preprocess(image)
    left, top, right, bottom = result.box
    assert left >= 395 and right <= 435 and top >= 205 and bottom <= 425
    assert result.inverted is True
    height, width = ink_box(result.image, 127)
    assert height == DIGIT_BOX and width <= 8


def test_an_mnist_digit_comes_back_nearly_unchanged() -> None:
    from mnist_classifier.data.sources import load_dataset

    images = load_dataset().test_images[:20].numpy()
    for digit in images:
        out = to_mnist(digit).astype(np.float64)
        assert np.corrcoef(out.ravel(), digit.astype(np.float64).ravel())[0, 1] > 0.8
        inverted = to_mnist(255 - digit).astype(np.float64)  # black on white works too
        assert np.abs(inverted - out).mean() < 2.0


@pytest.mark.parametrize(
    "blank",
    [
        Image.new("RGB", (640, 480), (255, 255, 255)),
        Image.new("L", (640, 480), 0),
        Image.fromarray(
            np.clip(np.random.default_rng(0).normal(210, 3, (480, 640)), 0, 255).astype(np.uint8)
        ),
        Image.fromarray(
            np.tile(np.linspace(250, 120, 640), (480, 1)).astype(np.uint8)  # shadow, no ink
        ),
    ],
    ids=["white", "black", "faint-noise", "gradient"],
)
def test_blank_images_have_no_digit(blank: Image.Image) -> None:
    with pytest.raises(ImageError, match=r"^blank\.png: no digit found$"):
        to_mnist(blank, name="blank.png")


def test_dust_alone_is_not_a_digit() -> None:
    image = Image.new("L", (640, 480), 235)
    draw = ImageDraw.Draw(image)
    for x, y in [(100, 100), (400, 300), (600, 50)]:
        draw.ellipse((x, y, x + 3, y + 3), fill=50)
    with pytest.raises(ImageError, match="no digit found"):
        to_mnist(image)


# --- loading ----------------------------------------------------------------------------------


def test_every_kind_of_source_gives_the_same_result(tmp_path: Path) -> None:
    image = seven_on_paper()
    data = png_bytes(image)
    path = tmp_path / "seven.png"
    path.write_bytes(data)
    grey = np.asarray(image)
    expected = to_mnist(image)
    with open(path, "rb") as fh:
        from_file = to_mnist(fh)
    sources = [
        str(path),
        path,
        data,
        io.BytesIO(data),
        grey,
        np.stack([grey] * 3, axis=-1),
        np.dstack([grey, grey, grey, np.full_like(grey, 255)]),
        grey.astype(np.uint16) * 257,
        grey.astype(np.float64) / 255.0,
    ]
    for source in sources:
        assert np.array_equal(to_mnist(source), expected), type(source)
    assert np.array_equal(from_file, expected)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP"])
def test_common_formats_load(fmt: str) -> None:
    image = seven_on_paper()
    buf = io.BytesIO()
    image.save(buf, fmt)
    expected = to_mnist(image)
    result = to_mnist(buf.getvalue(), name=f"seven.{fmt.lower()}")
    assert np.abs(result.astype(int) - expected.astype(int)).mean() < 4.0  # lossy ones differ


def test_names_in_messages(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"^<upload>: empty file$"):
        load_image(b"")
    with pytest.raises(ImageError, match=r"^photo\.jpg: empty file$"):
        load_image(io.BytesIO(b""), name="photo.jpg")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty\.png: empty file$"):
        load_image(empty)
    with pytest.raises(ImageError, match=r"missing\.png: no such file$"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path)


def test_text_is_not_an_image() -> None:
    with pytest.raises(ImageError, match=r"^notes\.txt: not an image"):
        load_image(b"7, written as text\n", name="notes.txt")


def test_truncated_png_is_reported() -> None:
    data = png_bytes(seven_on_paper())
    with pytest.raises(ImageError, match=r"^<upload>: truncated or corrupt image"):
        load_image(data[: len(data) // 2])


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk claiming ``width`` x ``height``, with no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)  # far too little data: decoding would fail
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


@pytest.mark.parametrize(("width", "height"), [(8000, 6000), (20000, 20000)])
def test_too_many_pixels_is_refused_from_the_header(width: int, height: int) -> None:
    # 48 Mpx is over MAX_PIXELS; 400 Mpx also trips Pillow's own decompression-bomb guard.
    assert width * height > MAX_PIXELS
    with pytest.raises(ImageError, match=r"^big\.png: too many pixels"):
        load_image(png_header_only(width, height), name="big.png")


def test_too_many_pixels_in_an_array_is_refused() -> None:
    huge = np.broadcast_to(np.uint8(255), (8000, 6000))  # no memory behind it
    with pytest.raises(ImageError, match="too many pixels"):
        load_image(huge)


def test_large_images_are_downscaled_on_load() -> None:
    wide = Image.new("L", (5000, 400), 255)
    assert load_image(wide).size == (MAX_SIDE, round(400 * MAX_SIDE / 5000))
    buf = io.BytesIO()
    Image.new("RGB", (4500, 3000), (250, 250, 250)).save(buf, "JPEG")
    assert max(load_image(buf.getvalue()).size) == MAX_SIDE


def test_gif_uses_the_first_frame() -> None:
    vertical = Image.new("L", (120, 120), 255)
    ImageDraw.Draw(vertical).line([(60, 15), (60, 105)], fill=0, width=10)
    horizontal = Image.new("L", (120, 120), 255)
    ImageDraw.Draw(horizontal).line([(15, 60), (105, 60)], fill=0, width=10)
    buf = io.BytesIO()
    vertical.save(buf, "GIF", save_all=True, append_images=[horizontal], duration=100)
    image = load_image(buf.getvalue())
    height, width = ink_box(255 - np.asarray(image.convert("L")), 127)
    assert height > 3 * width


def test_exif_orientation_is_applied() -> None:
    # Stored as a horizontal bar; orientation 6 means "rotate 90 degrees clockwise to view".
    stored = Image.new("L", (200, 120), 255)
    ImageDraw.Draw(stored).line([(30, 60), (170, 60)], fill=0, width=12)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, "JPEG", exif=exif, quality=95)
    image = load_image(buf.getvalue())
    assert image.size == (120, 200)
    height, width = ink_box(255 - np.asarray(image.convert("L")), 127)
    assert height > 5 * width  # a vertical stroke: a '1'
    assert ink_box(to_mnist(buf.getvalue()), 127)[0] >= 19


def test_16_bit_png_is_scaled_not_clipped() -> None:
    values = np.full((100, 100), 50000, dtype=np.uint16)
    values[20:80, 45:55] = 3000
    image = load_image(png_bytes(Image.fromarray(values)))
    grey = np.asarray(image)
    assert image.mode == "L"
    assert grey[0, 0] == round(50000 / 257) and grey[50, 50] == round(3000 / 257)
    assert ink_box(to_mnist(png_bytes(Image.fromarray(values))), 127)[0] == DIGIT_BOX


def test_transparent_canvas_is_flattened_to_contrast_with_its_strokes() -> None:
    canvas = Image.new("L", (300, 240), 0)
    ImageDraw.Draw(canvas).line([(60, 40), (150, 40), (90, 200)], fill=255, width=14)
    strokes = np.asarray(canvas)  # the alpha channel: 0 = transparent
    for value, paper in ((0, 255), (255, 0)):
        rgba = np.zeros((*strokes.shape, 4), dtype=np.uint8)
        rgba[..., :3] = value
        rgba[..., 3] = strokes
        flat = np.asarray(load_image(Image.fromarray(rgba)).convert("L"))
        assert flat[0, 0] == paper  # black strokes on white, white strokes on black
        assert_mnist_like(to_mnist(rgba))


def test_bad_arrays_are_refused() -> None:
    with pytest.raises(ImageError, match=r"\[0, 1\]"):
        load_image(np.full((10, 10), 2.0))
    with pytest.raises(ImageError, match="expected"):
        load_image(np.zeros((10, 10, 5), dtype=np.uint8))
    with pytest.raises(ImageError, match="NaN"):
        load_image(np.full((10, 10), np.nan))


def test_every_refusal_names_its_reason(tmp_path: Path) -> None:
    """Callers act on ``ImageError.reason`` (the server's status codes), never on the wording."""
    data = png_bytes(seven_on_paper())
    cases: list[tuple[object, str]] = [
        (b"", "unreadable"),
        (tmp_path / "missing.png", "unreadable"),
        (tmp_path, "unreadable"),
        (data[: len(data) // 2], "unreadable"),
        (b"7, written as text\n", "unsupported_format"),
        (png_header_only(8000, 6000), "too_large"),
        (png_header_only(20000, 20000), "too_large"),
        (np.broadcast_to(np.uint8(255), (8000, 6000)), "too_large"),
        (np.full((10, 10), 2.0), "bad_input"),
        (np.full((10, 10), np.nan), "bad_input"),
        (np.zeros((10, 10, 5), np.uint8), "bad_input"),
        (np.full((10, 10), 300, np.int32), "bad_input"),
        ({"not": "an image"}, "bad_input"),
        (Image.new("L", (200, 150), 255), "no_digit"),
    ]
    for source, reason in cases:
        with pytest.raises(ImageError) as caught:
            to_mnist(source)
        assert caught.value.reason == reason, (source, str(caught.value))
        assert reason in IMAGE_ERROR_REASONS


def test_an_image_error_keeps_its_reason_through_pickling() -> None:
    error = ImageError("x.png: no digit found", reason="no_digit")
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.reason) == ("x.png: no digit found", "no_digit")


def test_other_modes_load_as_8_bit() -> None:
    cmyk = Image.new("CMYK", (40, 30), (0, 0, 0, 0))
    assert load_image(cmyk).mode == "RGB"
    assert load_image(Image.new("1", (40, 30), 1)).mode == "L"
    assert load_image(Image.new("P", (40, 30))).mode == "RGB"


def test_preprocess_does_not_import_torch() -> None:
    code = (
        "import sys, numpy as np\n"
        "from mnist_classifier.inference.preprocess import to_mnist\n"
        "a = np.full((64, 64), 255, np.uint8); a[10:54, 30:36] = 0\n"
        "assert to_mnist(a).shape == (28, 28)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- thick strokes ----------------------------------------------------------------------------


def enclosed_regions(a: np.ndarray, level: int = 127) -> int:
    """How many separate background regions (4-connected) the ink above ``level`` encloses."""
    from mnist_classifier.inference._components import component_stats, label_runs

    background = np.pad(a <= level, 1, constant_values=True)
    runs = label_runs(background)
    stats = component_stats(runs)
    h, w = background.shape
    touches = (stats.y0 == 0) | (stats.x0 == 0) | (stats.y1 == h) | (stats.x1 == w)
    return int((~touches).sum())


@pytest.mark.parametrize("width", [8, 20, 40, 50, 60, 70, 80])
def test_a_thick_solid_stroke_stays_solid(width: int) -> None:
    # A '1' as one straight stroke: whatever its width, the 28x28 shows a solid bar whose
    # width is the stroke's, scaled like the digit (not an outline of it).
    image = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(image).line([(100, 30), (100, 170)], fill=0, width=width)
    a = to_mnist(image)
    height, bar = ink_box(a, 127)
    assert height == DIGIT_BOX
    # The line covers rows 30..170; hair-thin results are thickened to about 2.6 pixels.
    expected = max(width * DIGIT_BOX / 141, 2.6)
    assert abs(bar - expected) <= 1.5, (bar, expected)
    rows = np.flatnonzero((a > 127).any(axis=1))
    cols = np.flatnonzero((a > 127).any(axis=0))
    core = a[rows[0] + 1 : rows[-1], cols[0] + 1 : cols[-1]]  # one pixel in from the edges
    assert core.size and core.min() >= 200, core.min()
    assert enclosed_regions(a) == 0


def ring(draw_side: int, stroke: int, canvas: int) -> Image.Image:
    """A '0' drawn as a thick ellipse outline, black on white, ``draw_side`` pixels tall."""
    image = Image.new("L", (canvas, canvas), 255)
    top = (canvas - draw_side) // 2
    left = (canvas - int(0.75 * draw_side)) // 2
    box = (left, top, left + int(0.75 * draw_side), top + draw_side)
    ImageDraw.Draw(image).ellipse(box, outline=0, width=stroke)
    return image


@pytest.mark.parametrize(("stroke", "canvas"), [(20, 200), (45, 200), (60, 200), (45, 300)])
def test_a_bold_zero_keeps_exactly_one_hole(stroke: int, canvas: int) -> None:
    # A thick-marker '0' (strokes up to a third of its width): one hole, its band solid.
    a = to_mnist(ring(190, stroke, canvas))
    assert enclosed_regions(a) == 1


def test_a_small_binary_bitmap_scaled_up_is_read_solid() -> None:
    # A 16x16 black-and-white '0' filling its box, 4-pixel strokes, blown up with
    # nearest-neighbour: the strokes are a quarter of the image wide; one hole must remain.
    small = Image.new("L", (16, 16), 255)
    ImageDraw.Draw(small).ellipse((1, 0, 14, 15), outline=0, width=4)
    for side in (64, 200, 512):
        a = to_mnist(small.resize((side, side), Image.Resampling.NEAREST))
        assert enclosed_regions(a) == 1, side
        assert (a > 127).mean() > 0.2  # a solid band, not two thin outlines


# --- ruled and squared paper ------------------------------------------------------------------


def lined_paper(squared: bool, *, shade: int = 150) -> Image.Image:
    """A dark '7' on paper with 3-pixel lines every 32 pixels (and columns, when squared)."""
    rng = np.random.default_rng(5)
    grey = rng.normal(228, 3, (480, 640)).clip(0, 255)
    for k in range(3):
        grey[15 + k :: 32] = shade
        if squared:
            grey[:, 15 + k :: 32] = shade
    image = Image.fromarray(grey.astype(np.uint8))
    ImageDraw.Draw(image).line([(250, 120), (380, 120), (300, 380)], fill=30, width=9)
    return image


@pytest.mark.parametrize("squared", [False, True], ids=["ruled", "squared"])
def test_ruled_and_squared_paper_are_refused_not_misread(squared: bool) -> None:
    with pytest.raises(ImageError, match=r"^page\.png: ruled or squared paper") as caught:
        to_mnist(lined_paper(squared), name="page.png")
    assert caught.value.reason == "no_digit"


def test_lines_too_faint_to_be_ink_do_not_refuse() -> None:
    assert_mnist_like(to_mnist(lined_paper(True, shade=222)))


def big_photo_jpeg(orientation: int | None = None) -> bytes:
    """A 2400x1600 photo-like JPEG of a '1' at x 1500..1560, y 400..1200 (as stored)."""
    rng = np.random.default_rng(5)
    paper = rng.normal(215, 4, (1600, 2400)).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(paper).convert("RGB")
    ImageDraw.Draw(image).line([(1530, 400), (1530, 1200)], fill=(30, 30, 60), width=60)
    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    image.save(buf, "JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


def test_a_large_jpeg_is_read_at_reduced_scale_and_boxed_in_full_size_pixels() -> None:
    data = big_photo_jpeg()
    result = preprocess(data)
    assert max(result.source.size) < MAX_SIDE  # decoded in draft mode, not at full size
    assert result.source.mode == "L"
    full = load_image(data)  # what the box refers to: the image as load_image returns it
    scale = full.width / 2400
    left, top, right, bottom = result.box
    assert 1500 * scale - 8 <= left <= 1500 * scale + 8
    assert 1560 * scale - 8 <= right <= 1560 * scale + 8
    assert 400 * scale - 8 <= top and bottom <= 1200 * scale + 8
    assert result.image.max() > 200


def test_a_large_rotated_jpeg_keeps_its_exif_orientation() -> None:
    # Orientation 6: the stored image is shown turned 90 degrees clockwise.
    data = big_photo_jpeg(orientation=6)
    result = preprocess(data)
    full = load_image(data)
    assert full.size[0] < full.size[1]  # upright: taller than wide
    assert result.source.size[0] < result.source.size[1]
    left, top, right, bottom = result.box
    assert right - left > 2 * (bottom - top)  # the upright '1' lies across the image
    assert right <= full.width and bottom <= full.height


def test_flat_paper_and_the_full_analysis_agree() -> None:
    # A drawing on a flat field takes the fast path; a barely noisy copy takes the full one.
    rng = np.random.default_rng(11)
    for digit in (0, 4, 7):
        flat = make_user_image(digit, "clean", rng)
        a = np.asarray(flat.convert("L"), dtype=np.int16)
        noisy = a + np.random.default_rng(digit).integers(-4, 5, a.shape)
        fast = to_mnist(flat).astype(np.int16)
        full = to_mnist(noisy.clip(0, 255).astype(np.uint8)).astype(np.int16)
        assert np.abs(fast - full).mean() < 6.0


def test_high_percentile_equals_numpys() -> None:
    from mnist_classifier.inference._filters import high_percentile

    rng = np.random.default_rng(2)
    for i in range(40):
        shape = (int(rng.integers(40, 400)), int(rng.integers(40, 400)))
        a = (rng.random(shape) ** rng.uniform(0.2, 8.0)).astype(np.float32)
        if i % 3 == 0:
            a[rng.random(shape) < 0.6] = 0.0  # mostly flat
        if i % 4 == 0:
            a = np.round(a * 10) / 10  # many ties
        for q in (99.0, 99.95, 100.0):
            assert high_percentile(a, q) == float(np.percentile(a, q))
