"""Property-based API test: schemathesis generates inputs from our own /openapi.json.

No generated input may produce a 5xx or a response that breaks the documented schema. New
endpoints are covered automatically because the operations come from the app's schema. The
app runs offline (sample data only), so generated syncs never reach any network.
"""

from __future__ import annotations

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import AUTH

MAX_EXAMPLES = 30  # per operation: bounded so the suite stays fast


@pytest.fixture
def api_schema(client: TestClient) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", client.app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@hypothesis_settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI failures reproduce locally
    suppress_health_check=list(HealthCheck),
)
def test_no_input_breaks_the_api(case: schemathesis.Case) -> None:
    case.call_and_validate(
        headers=AUTH,
        checks=[
            not_a_server_error,
            response_schema_conformance,
            status_code_conformance,
            content_type_conformance,
        ],
    )
