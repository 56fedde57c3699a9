"""IDX read/write: round trips and every way a file can be broken."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from mnist_classifier.data.idx import GZIP_MAGIC, encode_idx, parse_idx, read_idx, write_idx
from mnist_classifier.errors import DataError

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "raw"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_round_trip(tmp_path: Path, dtype: type, compress: bool) -> None:
    rng = np.random.default_rng(1)
    array: np.ndarray = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    path = write_idx(tmp_path / ("a.idx.gz" if compress else "a.idx"), array)
    assert (path.read_bytes()[:2] == GZIP_MAGIC) is compress
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype)
    assert back.dtype.isnative
    assert back.shape == (3, 4, 5)
    np.testing.assert_array_equal(back, array)


def test_round_trip_one_dimension_and_empty(tmp_path: Path) -> None:
    labels = np.arange(10, dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "l", labels)), labels)
    empty = np.zeros((0, 28, 28), dtype=np.uint8)
    assert read_idx(write_idx(tmp_path / "e.gz", empty)).shape == (0, 28, 28)


def test_compress_flag_overrides_the_name(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "plain-name", np.zeros(4, np.uint8), compress=True)
    assert path.read_bytes()[:2] == GZIP_MAGIC


def test_header_is_the_mnist_layout() -> None:
    data = encode_idx(np.zeros((2, 28, 28), dtype=np.uint8))
    assert data[:4] == bytes([0, 0, 0x08, 3])
    assert data[4:16] == (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    assert len(data) == 16 + 2 * 28 * 28
    # Multi-byte values are big-endian on disk whatever the machine's byte order.
    assert encode_idx(np.array([1], dtype=np.int32))[-4:] == b"\x00\x00\x00\x01"


@pytest.mark.parametrize("dtype", [np.int64, np.bool_, np.uint16])
def test_encode_rejects_dtypes_idx_cannot_hold(dtype: type) -> None:
    with pytest.raises(DataError, match="cannot store"):
        encode_idx(np.zeros(3, dtype=dtype))


def _good() -> bytes:
    return encode_idx(np.arange(12, dtype=np.uint8).reshape(3, 4))


CORRUPTIONS = {
    "bad magic": (b"\x01\x02" + _good()[2:], "bad magic number"),
    "unknown dtype": (b"\x00\x00\x07\x02" + _good()[4:], "unknown IDX data type 0x07"),
    "too short": (b"\x00\x00", "too short"),
    "zero dims": (b"\x00\x00\x08\x00", "zero dimensions"),
    "truncated header": (_good()[:9], "header truncated"),
    "short payload": (_good()[:-1], "payload truncated"),
    "trailing bytes": (_good() + b"\x00", "trailing bytes"),
}


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "raw"])
@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corrupt_file_message_names_the_file(tmp_path: Path, case: str, compress: bool) -> None:
    data, message = CORRUPTIONS[case]
    path = tmp_path / f"broken-{case.replace(' ', '-')}"
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(DataError, match=message) as info:
        read_idx(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "\n" not in str(info.value)


def test_good_data_parses() -> None:
    # The corruptions above are all derived from this, so it must itself be valid.
    np.testing.assert_array_equal(parse_idx(_good()), np.arange(12).reshape(3, 4))


@pytest.mark.parametrize("cut", [10, -5], ids=["truncated", "damaged-tail"])
def test_corrupt_gzip(tmp_path: Path, cut: int) -> None:
    packed = gzip.compress(_good())
    path = tmp_path / "broken.gz"
    path.write_bytes(packed[:cut] if cut > 0 else packed[:cut] + b"\xff" * 5)
    with pytest.raises(DataError, match="gzip data is truncated or corrupt") as info:
        read_idx(path)
    assert str(info.value).startswith(f"{path}: ")


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read_idx(tmp_path / "nope")
    with pytest.raises(DataError, match="is a folder"):
        read_idx(tmp_path)


def test_huge_declared_dimensions_are_reported_not_allocated() -> None:
    header = bytes([0, 0, 0x0E, 4]) + (0xFFFFFFFF).to_bytes(4, "big") * 4
    with pytest.raises(DataError, match="payload truncated") as info:
        parse_idx(header, "huge")
    assert f"need {(2**32 - 1) ** 4 * 8} bytes" in str(info.value)


def test_an_empty_array_with_huge_other_dimensions_is_a_data_error() -> None:
    # 0 x 2**32-1 x 2**32-1 needs 0 bytes, but numpy cannot shape such an array.
    data = bytes([0, 0, 0x08, 3]) + (0).to_bytes(4, "big") + (2**32 - 1).to_bytes(4, "big") * 2
    with pytest.raises(DataError, match="too large for an array"):
        parse_idx(data, "odd")
