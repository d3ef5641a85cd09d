"""The real server fuzzed from its own /openapi.json (schemathesis): no 5xx, every status it answers documented,
every answer's content type and body as the schema says, refusals of what the schema forbids.

A bounded, derandomized run for the suite; docs/serving.md gives the command of the long one (`st run`).
"""

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402  (schemathesis brings hypothesis)
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402


@pytest.fixture
def served_schema(server):
    return schemathesis.openapi.from_url(server.url + "/openapi.json")


schema = schemathesis.pytest.from_fixture("served_schema")


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_its_schema_says(case):
    # A schema cannot say "an image": bytes that are none are valid for it and answered 422 (documented).
    excluded = [positive_data_acceptance] if case.path == "/predict" else []
    case.call_and_validate(excluded_checks=excluded, timeout=60)
