"""The real server fuzzed from its own /openapi.json (schemathesis): no 5xx, every status it answers documented,
every answer's content type and body as the schema says, refusals of what the schema forbids.

A bounded, derandomized run for the suite; docs/serving.md gives the command of the long one (`st run`).
"""

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402  (schemathesis brings hypothesis)
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

EXAMPLES = 15  # per operation


def fuzz(operation):
    """EXAMPLES requests made from the operation's schema, each answer checked against it."""
    # A schema cannot say "an image" or "a box's right edge lies right of its left": such requests are valid for
    # it, and answered 422 and 400 (documented).
    excluded = [positive_data_acceptance] if operation.path == "/predict" else []

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    def answers_as_documented(case):
        case.call_and_validate(excluded_checks=excluded, timeout=60)

    answers_as_documented()


@pytest.mark.slow
def test_every_operation_answers_as_its_schema_says(server):
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {"/predict", "/models", "/metrics"} <= {operation.path for operation in operations}
    for operation in operations:
        fuzz(operation)


@pytest.mark.slow
def test_the_review_page_answers_as_its_schema_says(tmp_path):
    import numpy as np

    from fmnist.rundir import labels
    from serve_helpers import running_server

    issues = [labels.Issue("train", 3, 0, 6, 0.01), labels.Issue("test", 8, 4, 2, 0.02)]
    labels.write_issues(tmp_path / labels.ISSUES, issues)
    np.savez_compressed(tmp_path / labels.IMAGES, images=np.zeros((2, 28, 28), np.uint8))
    with running_server(None, tmp_path / "log", args=("--review", str(tmp_path)), ready="/review") as url:
        schema = schemathesis.openapi.from_url(url + "/openapi.json")
        for result in schema.get_all_operations():
            fuzz(result.ok())
