"""Schema-driven testing: schemathesis generates requests from the app's own OpenAPI
document and checks every answer (no 5xx, documented status codes and content types,
bodies matching their schemas, schema-valid requests accepted)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow
schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

from mnist_classifier.serving.app import create_app  # noqa: E402
from serving_helpers import FakePredictor  # noqa: E402

# Generated examples only (bounded by max_examples below): the coverage phase would send
# hundreds of boundary cases per 28x28 array, minutes of work for little more.
CONFIG = schemathesis.config.SchemathesisConfig.from_dict(
    {"phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}}}
)
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(FakePredictor()), config=CONFIG)


@schema.parametrize()
@settings(
    max_examples=int(__import__("os").environ.get("SCHEMA_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_conforms_to_its_schema(case):
    excluded = []
    if case.media_type != "application/json":
        # Whether an image holds a digit (or is an image at all) cannot be stated in a
        # schema: a generated picture may rightly be refused (415, 422), never with a 5xx.
        excluded.append(positive_data_acceptance)
    case.call_and_validate(excluded_checks=excluded)
