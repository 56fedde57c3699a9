"""Property-based tests of the checkpoint loader: valid checkpoints with one field replaced
or removed, and byte-mutated checkpoint files, either load into a model that predicts
finite probabilities or are refused with a one-line CheckpointError."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from fuzz_targets import TARGETS

SUITE = settings(
    max_examples=60, deadline=None, database=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)  # fmt: skip


@SUITE
@given(TARGETS["checkpoint-fields"].strategy)
def test_a_checkpoint_with_any_field_changed_loads_or_is_refused(case):
    TARGETS["checkpoint-fields"].check(case)


@SUITE
@given(TARGETS["checkpoint-bytes"].strategy)
def test_a_byte_mutated_checkpoint_loads_or_is_refused(case):
    TARGETS["checkpoint-bytes"].check(case)
