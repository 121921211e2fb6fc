"""Property-based API test: schemathesis generates inputs from our own /openapi.json.

No generated input may produce a 5xx or a response that breaks the documented schema. New
endpoints are covered automatically because the operations come from the app's schema. The
app runs offline (sample data only), so generated syncs never reach any network.

A generated body that happens to be valid starts real background work (trainings, replays over the
whole sample). The checks are on the responses, which come first; the work runs beside the rest of the
fuzzing as it would in the app, on one training worker, and what is still running once the last
operation has been checked is cancelled rather than awaited (an app's shutdown waits for its running
jobs): see `pytest_runtest_teardown` in tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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

from main import create_app
from tests.support.http import AUTH
from tests.support.settings import make_settings

MAX_EXAMPLES = 15  # per operation (explicit examples come on top): bounded so the suite stays fast


@pytest.fixture
def fuzzed_app(tmp_path: Path) -> Iterator[TestClient]:
    """The real app, offline on the sample data, training one agent at a time; its unfinished jobs are
    cancelled when the test ends (tests/conftest.py)."""
    settings = make_settings(tmp_path, train_max_parallel=1)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def api_schema(fuzzed_app: TestClient) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app.app)


schema = schemathesis.pytest.from_fixture("api_schema")


# Operations whose valid bodies run a strategy's full health check (a backtest per prefix and split on
# two years of hourly candles): each example costs seconds, so they get fewer, the rest the full count.
HEALTH_CHECKED = ["strategies_create", "strategies_update", "strategies_validate", "strategies_from_blocks"]
HEALTH_CHECKED_EXAMPLES = 6
# The live stream never ends when its input is valid, so a generated call would never return; its
# refusals (401, 422) are checked in tests/routes/test_stream.py against a real server.
NEVER_ENDING = ["stream_events"]
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]


@schema.exclude(operation_id=HEALTH_CHECKED + NEVER_ENDING).parametrize()
@hypothesis_settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI failures reproduce locally
    suppress_health_check=list(HealthCheck),
)
def test_no_input_breaks_the_api(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=AUTH, checks=CHECKS)


@schema.include(operation_id=HEALTH_CHECKED).parametrize()
@hypothesis_settings(
    max_examples=HEALTH_CHECKED_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_strategy_body_breaks_the_api(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=AUTH, checks=CHECKS)
