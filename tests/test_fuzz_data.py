"""Property-based tests of the data readers: arbitrary bytes into the IDX reader, arbitrary
arrays into preprocessing; only the package's typed errors may come out."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from fuzz_targets import TARGETS

SUITE = settings(
    max_examples=150, deadline=None, database=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)  # fmt: skip


@SUITE
@given(TARGETS["idx"].strategy)
def test_idx_reader_raises_only_data_error(case):
    TARGETS["idx"].check(case)


@settings(SUITE, max_examples=100)
@given(TARGETS["arrays"].strategy)
def test_preprocess_on_arbitrary_arrays_raises_only_image_error(array):
    TARGETS["arrays"].check(array)
