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

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


# Recursive schemas in request bodies, and what the fuzzer sends in their place: generating bodies from a
# strategy spec's nested conditions takes it minutes per operation. Valid specs still reach it as the
# operations' explicit examples (the shipped strategies); tests/strategy_engine/test_spec.py checks the
# spec's validation case by case.
FLAT_IN_REQUESTS: dict[str, dict[str, Any]] = {
    "StrategySpec": {"type": "object"},
    "BlockValue": {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}, {"type": "null"}]},
}
REF = "#/components/schemas/"


def fuzzable(spec: dict[str, Any]) -> dict[str, Any]:
    """`spec` with the recursive schemas in request bodies flattened: components a request reaches are
    copied (as `<name>Fuzz`) before they change, so every response is still checked against the real one."""
    spec = copy.deepcopy(spec)
    components = spec["components"]["schemas"]

    def rewrite(node: Any) -> Any:
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF):
            name = ref.removeprefix(REF)
            if name in FLAT_IN_REQUESTS:
                return FLAT_IN_REQUESTS[name]
            copy_name = f"{name}Fuzz"
            if copy_name not in components:
                components[copy_name] = {}  # claimed first: a component reaching itself stops here
                components[copy_name] = rewrite(components[name])
            return {**node, "$ref": REF + copy_name}
        return {key: rewrite(value) for key, value in node.items()}

    for operations in spec["paths"].values():
        for operation in operations.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                operation["requestBody"] = rewrite(operation["requestBody"])
    return spec


@pytest.fixture
def api_schema(fuzzed_app: TestClient) -> schemathesis.BaseSchema:
    loaded = schemathesis.openapi.from_dict(fuzzable(fuzzed_app.get("/openapi.json").json()))
    loaded.app = fuzzed_app.app  # calls go to the app in-process, as from_asgi's would
    loaded.location = "/openapi.json"
    return loaded


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
