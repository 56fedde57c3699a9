"""Property-based fuzz targets shared by the suite (tests/test_fuzz_*.py, bounded) and the
longer run (benchmarks/fuzz.py, time-bounded): each target is a hypothesis strategy and a
check that the code under test returns a value or raises only the package's typed error.

- ``idx``: :func:`parse_idx` on arbitrary bytes and on plausible headers with random
  dimensions and payload lengths, and :func:`read_idx` on (broken) gzip files;
- ``arrays``: :func:`preprocess` on arbitrary numpy arrays (any dtype, shape and values,
  NaN and infinities included);
- ``checkpoint``: :func:`load_checkpoint` and the deployed model on valid checkpoints
  with one field replaced by an arbitrary value, and on byte-mutated checkpoint files.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mnist_classifier.errors import CheckpointError, DataError, ImageError


@dataclass(frozen=True)
class Target:
    name: str
    strategy: st.SearchStrategy[Any]
    check: Callable[[Any], None]


# ----------------------------------------------------------------- IDX


def _idx_header(code: int, dims: list[int]) -> bytes:
    return bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)


_idx_codes = st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0x0A, 0xFF])
_plausible_idx = st.builds(
    lambda code, dims, payload: _idx_header(code, dims) + payload,
    _idx_codes,
    st.lists(st.one_of(st.integers(0, 40), st.integers(0, 2**32 - 1)), min_size=0, max_size=5),
    st.binary(max_size=600),
)
idx_inputs = st.tuples(
    st.one_of(st.binary(max_size=300), _plausible_idx),
    st.sampled_from(["raw", "gzip", "gzip-truncated"]),
)


def check_idx(case: tuple[bytes, str]) -> None:
    from mnist_classifier.data.idx import parse_idx, read_idx

    data, form = case
    try:
        array = parse_idx(data, "fuzz")
        assert isinstance(array, np.ndarray)
    except DataError:
        pass
    if form == "raw":
        return
    packed = gzip.compress(data, mtime=0)
    if form == "gzip-truncated":
        packed = packed[: max(2, len(packed) // 2)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.gz"
        path.write_bytes(packed)
        with contextlib.suppress(DataError):
            read_idx(path)


# ----------------------------------------------------------------- arrays


_dtypes = st.one_of(
    hnp.unsigned_integer_dtypes(), hnp.integer_dtypes(), hnp.floating_dtypes(),
    hnp.boolean_dtypes(), hnp.complex_number_dtypes(),
)  # fmt: skip
_shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=48)
array_inputs = st.one_of(
    hnp.arrays(_dtypes, _shapes, elements=None),
    # images that reach the preprocessing itself: 8-bit and float greyscale, RGB and RGBA
    hnp.arrays(
        st.sampled_from([np.uint8, np.float32]),
        st.tuples(st.integers(1, 64), st.integers(1, 64)).flatmap(
            lambda hw: st.sampled_from([hw, (*hw, 3), (*hw, 4)])
        ),
    ),
)


def check_array(array: np.ndarray) -> None:
    from mnist_classifier.inference.preprocess import preprocess

    try:
        result = preprocess(array, name="fuzz")
    except ImageError as exc:
        assert exc.reason != "unexpected", f"an unforeseen failure: {exc!r}"
        return
    assert result.image.shape == (28, 28) and result.image.dtype == np.uint8


# ----------------------------------------------------------------- checkpoints


def valid_checkpoint() -> dict[str, Any]:
    from mnist_classifier.models import create_model
    from mnist_classifier.models.checkpoint import build_checkpoint

    return build_checkpoint(
        create_model("mlp-128"), model_name="mlp-128", model_kwargs={}, mean=0.1307,
        std=0.3081, config={"model": "mlp-128", "tta": False}, metrics={"val": {}},
    )  # fmt: skip


_FIELDS = [
    ("format",), ("format_version",), ("package_version",), ("model",), ("model", "name"),
    ("model", "kwargs"), ("state_dict",), ("state_dict", "net.0.weight"),
    ("state_dict", "net.0.bias"), ("normalization",), ("normalization", "mean"),
    ("normalization", "std"), ("class_names",), ("config",), ("config", "tta"),
    ("metrics",), ("training",),
]  # fmt: skip


def _tensors() -> st.SearchStrategy[Any]:
    import torch

    return st.builds(
        lambda shape, fill, dtype: torch.full(shape, fill, dtype=dtype),
        st.lists(st.integers(0, 4), max_size=3).map(tuple),
        st.sampled_from([0.0, 1.0, float("nan"), float("inf"), -3.5]),
        st.sampled_from(["float32", "float64", "float16"]).map(lambda n: getattr(torch, n)),
    )


_plain = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
        st.text(max_size=12), st.binary(max_size=8),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=8,
)  # fmt: skip
checkpoint_field_inputs = st.tuples(
    st.sampled_from(_FIELDS), st.one_of(_plain, st.deferred(_tensors)), st.booleans()
)


def _load_all(path: Path) -> None:
    import torch

    from mnist_classifier.models.checkpoint import load_checkpoint
    from mnist_classifier.models.deployed import deployed_from_checkpoint

    ckpt = load_checkpoint(path)
    model = deployed_from_checkpoint(ckpt)
    with torch.inference_mode():
        probs = model(torch.zeros(2, 1, 28, 28))
    assert bool(torch.isfinite(probs).all()), "a loaded checkpoint predicts NaN"


def check_checkpoint_field(case: tuple[tuple[str, ...], Any, bool]) -> None:
    from mnist_classifier.models.checkpoint import save_checkpoint

    fields, value, delete = case
    ckpt = valid_checkpoint()
    target = ckpt
    for key in fields[:-1]:
        target = target[key]
    if delete:
        target.pop(fields[-1], None)
    else:
        target[fields[-1]] = value
    with tempfile.TemporaryDirectory() as tmp:
        path = save_checkpoint(Path(tmp) / "fuzz.pt", ckpt)
        try:
            _load_all(path)
        except CheckpointError as exc:
            assert "\n" not in str(exc)


_VALID_BYTES: list[bytes] = []


def _valid_bytes() -> bytes:
    if not _VALID_BYTES:
        import torch

        buffer = io.BytesIO()
        torch.save(valid_checkpoint(), buffer)
        _VALID_BYTES.append(buffer.getvalue())
    return _VALID_BYTES[0]


checkpoint_byte_inputs = st.tuples(
    st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=8),
    st.one_of(st.none(), st.floats(0, 1)),
)


def check_checkpoint_bytes(case: tuple[list[tuple[float, int]], float | None]) -> None:
    flips, cut = case
    data = bytearray(_valid_bytes())
    for where, byte in flips:
        data[int(where * len(data))] = byte
    if cut is not None:
        data = data[: int(cut * len(data))]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.pt"
        path.write_bytes(bytes(data))
        try:
            _load_all(path)
        except CheckpointError as exc:
            assert "\n" not in str(exc)


TARGETS = {
    "idx": Target("idx", idx_inputs, check_idx),
    "arrays": Target("arrays", array_inputs, check_array),
    "checkpoint-fields": Target(
        "checkpoint-fields", checkpoint_field_inputs, check_checkpoint_field
    ),
    "checkpoint-bytes": Target("checkpoint-bytes", checkpoint_byte_inputs, check_checkpoint_bytes),
}
