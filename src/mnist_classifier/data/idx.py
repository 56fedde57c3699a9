"""Read and write IDX files (the MNIST container format), gzip-compressed or raw.

An IDX file is a 4-byte magic number (two zero bytes, a data-type code, the
number of dimensions), one big-endian uint32 per dimension, then the payload
in big-endian order. Reading validates every part and raises
:class:`~mnist_classifier.errors.DataError` naming the file and the fault.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..fileio import atomic_write_bytes

# IDX data-type code -> numpy dtype (big-endian where it matters).
_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder(">") if dt.itemsize > 1 else dt: code for code, dt in _DTYPES.items()}

GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """Return the decompressed content of ``path`` (gzip is detected by its magic bytes)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not an IDX file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if raw[:2] == GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise DataError(f"{path}: gzip data is truncated or corrupt ({exc})") from None
    return raw


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode IDX ``data`` into an array; ``name`` is used in error messages."""
    if len(data) < 4:
        raise DataError(f"{name}: too short to be an IDX file ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{name}: bad magic number 0x{data[:4].hex()} (an IDX file starts with two zero bytes)"
        )
    code, ndim = data[2], data[3]
    if code not in _DTYPES:
        raise DataError(f"{name}: unknown IDX data type 0x{code:02x}")
    if ndim == 0:
        raise DataError(f"{name}: IDX header declares zero dimensions")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(f"{name}: header truncated (needs {header_len} bytes, has {len(data)})")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _DTYPES[code]
    # Python ints: a hostile header cannot overflow the size computation.
    expected = math.prod(dims) * dtype.itemsize
    actual = len(data) - header_len
    if actual != expected:
        shape = "x".join(str(d) for d in dims)
        what = "truncated" if actual < expected else "has trailing bytes"
        raise DataError(
            f"{name}: payload {what}: dimensions {shape} need {expected} bytes, found {actual}"
        )
    try:
        array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(dims)
    except ValueError:  # an empty array whose other dimensions numpy cannot index
        shape = "x".join(str(d) for d in dims)
        raise DataError(f"{name}: dimensions {shape} are too large for an array") from None
    return array.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (gzip or raw) into a numpy array."""
    return parse_idx(read_bytes(path), str(path))


def encode_idx(array: np.ndarray) -> bytes:
    """Return the IDX encoding of ``array``."""
    array = np.asarray(array)
    dtype = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    if dtype not in _CODES:
        raise DataError(f"IDX cannot store arrays of dtype {array.dtype}")
    if array.ndim == 0 or array.ndim > 255:
        raise DataError(f"IDX stores 1 to 255 dimensions, not {array.ndim}")
    if any(d >= 2**32 for d in array.shape):
        raise DataError(f"IDX dimensions must be below 2**32, got shape {array.shape}")
    header = bytes([0, 0, _CODES[dtype], array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(dtype, copy=False).tobytes()


def write_idx(
    path: str | os.PathLike[str], array: np.ndarray, compress: bool | None = None
) -> Path:
    """Write ``array`` as IDX to ``path`` atomically.

    The file is gzip-compressed when ``compress`` is true; by default, when the name ends in .gz.
    """
    path = Path(path)
    if compress is None:
        compress = path.suffix == ".gz"
    payload = encode_idx(array)
    if compress:
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    atomic_write_bytes(path, payload)
    return path
