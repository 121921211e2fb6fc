"""The API contract a dashboard is generated from: /openapi.json walked whole (typed bodies, examples,
operation ids, error bodies), the documented errors compared with real answers, the error-code
vocabulary against the codes the code raises, offline docs, and the browser headers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
from fastapi.testclient import TestClient

from main import create_app
from routes.common import ErrorBody, ErrorCode
from tests.support.http import AUTH
from tests.support.settings import make_settings

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ["main.py", "strategy_registry.py", "agents", "backtester", "ml_engine", "mother_ai"]
RUNTIME += ["strategy_engine", "utils", "db", "routes"]
OPERATION_ID = re.compile(r"^[a-z]+(_[a-z]+)+$")
COMBINATORS = ("anyOf", "oneOf", "allOf")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One fresh app for the module: these tests read the schema, answer errors and save one strategy,
    and none depends on another's writes (building an app and its schema per test cost ~1 s each)."""
    settings = make_settings(tmp_path_factory.mktemp("contract"))
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def _spec(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    spec: dict[str, Any] = response.json()
    return spec


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, ops in spec["paths"].items() for method, op in ops.items()]


def _request_bodies(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """("METHOD /path", content type, content) of every request body the schema documents."""
    return [
        (f"{method.upper()} {path}", content_type, content)
        for method, path, op in _operations(spec)
        for content_type, content in op.get("requestBody", {}).get("content", {}).items()
    ]


def _loose_spots(
    schema: dict[str, Any], components: dict[str, Any], where: str, seen: frozenset[str]
) -> list[str]:
    """Places in `schema` a generated client could only type as unknown: free-form objects, or no type."""
    if "$ref" in schema:
        ref: str = schema["$ref"]
        if not ref.startswith("#/components/schemas/"):
            return [f"{where}: outside reference {ref}"]
        name = ref.rsplit("/", 1)[-1]
        return [] if name in seen else _loose_spots(components[name], components, name, seen | {name})
    found: list[str] = []
    for key in COMBINATORS:
        for sub in schema.get(key, []):
            found += _loose_spots(sub, components, where, seen)
    kind = schema.get("type")
    if kind is None and not any(k in schema for k in (*COMBINATORS, "const", "enum")):
        found.append(f"{where}: no type")
    if kind == "object":
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        if not properties and extra in (None, True, {}):
            found.append(f"{where}: free-form object")
        for name, sub in properties.items():
            found += _loose_spots(sub, components, f"{where}.{name}", seen)
        if isinstance(extra, dict) and extra:
            found += _loose_spots(extra, components, f"{where}[key]", seen)
    if kind == "array":
        found += _loose_spots(schema.get("items", {}), components, f"{where}[]", seen)
    return found


def test_every_success_body_is_a_named_model_with_typed_fields(client: TestClient) -> None:
    spec = _spec(client)
    components = spec["components"]["schemas"]
    loose, unnamed = [], []
    for method, path, op in _operations(spec):
        for status, response in op["responses"].items():
            if not status.startswith("2"):
                continue
            for content_type, content in response.get("content", {}).items():
                if content_type != "application/json":
                    continue
                schema = content.get("schema", {})
                if "$ref" not in schema and "oneOf" not in schema:
                    unnamed.append(f"{method.upper()} {path} {status}")
                loose += _loose_spots(schema, components, f"{method.upper()} {path}", frozenset())
    assert unnamed == [], "bodies that are not a named model"
    assert loose == [], "fields a client reads typed as unknown"


def test_every_request_body_is_typed(client: TestClient) -> None:
    spec = _spec(client)
    components = spec["components"]["schemas"]
    loose = []
    for where, content_type, content in _request_bodies(spec):
        if content_type == "application/json":
            loose += _loose_spots(content.get("schema", {}), components, where, frozenset())
    assert loose == [], "request fields a generated client could only type as unknown"
    # The inline strategy spec is documented as the spec itself, not as any object.
    create = spec["paths"]["/api/strategies"]["post"]["requestBody"]["content"]["application/json"]
    assert create["schema"] == {"$ref": "#/components/schemas/StrategySpec"}


def test_the_walker_does_catch_a_free_form_field() -> None:
    components = {
        "Body": {"type": "object", "properties": {"data": {"type": "object"}, "n": {"type": "integer"}}}
    }
    assert _loose_spots({"$ref": "#/components/schemas/Body"}, components, "op", frozenset()) == [
        "Body.data: free-form object"
    ]
    assert _loose_spots({"type": "array", "items": {}}, {}, "op", frozenset()) == ["op[]: no type"]


def _response_models(spec: dict[str, Any]) -> set[str]:
    """The components a success body reaches, through any depth of references."""
    components = spec["components"]["schemas"]
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")  # the JSON-schema model has a field named "$ref" too
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                name = ref.rsplit("/", 1)[-1]
                if name not in found:
                    found.add(name)
                    walk(components[name])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for _, _, op in _operations(spec):
        for status, response in op["responses"].items():
            if status.startswith("2"):
                walk(response.get("content", {}))
    return found


def _leaves(schema: dict[str, Any], components: dict[str, Any]) -> list[dict[str, Any]]:
    """The non-null alternatives of a field's schema, arrays looked into (a list of times is times)."""
    if "$ref" in schema:
        return [components[schema["$ref"].rsplit("/", 1)[-1]]]
    if any(key in schema for key in COMBINATORS):
        subs = [sub for key in COMBINATORS for sub in schema.get(key, [])]
        return [leaf for sub in subs if sub.get("type") != "null" for leaf in _leaves(sub, components)]
    if schema.get("type") == "array":
        return _leaves(schema.get("items", {}), components)
    return [schema]


TIME_FIELD = re.compile(r"(_time|_times|_at)$|^as_of$")
MONEY_FIELD = re.compile(
    r"(price|quantity|qty|notional|fee|amount|balance|pnl|cash|cost_basis|market_value|equity|size_quote"
    r"|tick_size|step_size)$"
)
# Models of what the account holds and trades: their money is never a binary float.
TRADING_MODEL = re.compile(
    r"^(Order|Balance|Portfolio|Position|Fill|ReplayOrder|Symbol|Held|SizedAgainst|DailyLoss)"
)
VOCABULARY_FIELD = {"interval", "source", "side", "status", "order_status", "action", "kind", "mode", "code"}
# Open-ended on purpose: names of palette node types, Binance's symbol status passed through as Binance
# writes it, and the reasons a health finding or an ignored vote gives (described in the README).
OPEN_ENDED = {("PaletteConnection", "source"), ("SymbolOut", "status"), ("FindingOut", "code")}
OPEN_ENDED |= {("IgnoredOut", "code")}


def _convention_breaks(spec: dict[str, Any]) -> list[str]:
    components = spec["components"]["schemas"]
    breaks = []
    for model in sorted(_response_models(spec)):
        for field, schema in (components[model].get("properties") or {}).items():
            leaves = _leaves(schema, components)
            where = f"{model}.{field}"
            if TIME_FIELD.search(field) and any(leaf.get("type") != "integer" for leaf in leaves):
                breaks.append(f"{where}: a time that is not integer epoch milliseconds")
            if MONEY_FIELD.search(field):
                # An enum is a name (a spec's price operand "close"), not an amount.
                amounts = [leaf for leaf in leaves if not {"enum", "const"} & set(leaf)]
                if any(leaf.get("type") == "string" and leaf.get("format") != "decimal" for leaf in amounts):
                    breaks.append(f"{where}: a money string without format decimal")
                if TRADING_MODEL.match(model) and any(leaf.get("type") == "number" for leaf in leaves):
                    breaks.append(f"{where}: money of the account as a number")
            vocabulary = field in VOCABULARY_FIELD and (model, field) not in OPEN_ENDED
            free = [
                leaf for leaf in leaves if leaf.get("type") == "string" and not {"enum", "const"} & set(leaf)
            ]
            if vocabulary and free:
                breaks.append(f"{where}: a vocabulary typed as any string")
    return breaks


def test_every_body_follows_the_time_money_and_vocabulary_conventions(client: TestClient) -> None:
    assert _convention_breaks(_spec(client)) == []


@pytest.mark.parametrize(
    ("field", "schema", "expected"),
    [
        ("created_at", {"type": "string"}, "a time that is not integer epoch milliseconds"),
        ("step_times", {"type": "array", "items": {"type": "number"}}, "a time that is not integer"),
        ("fee", {"anyOf": [{"type": "string"}, {"type": "null"}]}, "a money string without format decimal"),
        ("quantity", {"type": "number"}, "money of the account as a number"),
        ("interval", {"type": "string"}, "a vocabulary typed as any string"),
    ],
)
def test_the_convention_walker_catches_each_break(field: str, schema: dict[str, Any], expected: str) -> None:
    spec = {
        "paths": {
            "/x": {
                "get": {
                    "responses": {
                        "200": {
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/OrderOut"}}
                            }
                        }
                    }
                }
            }
        },
        "components": {"schemas": {"OrderOut": {"type": "object", "properties": {field: schema}}}},
    }
    breaks = _convention_breaks(spec)
    assert len(breaks) == 1 and breaks[0].startswith(f"OrderOut.{field}: {expected}"), breaks


def test_operation_ids_are_short_stable_and_unique(client: TestClient) -> None:
    ids = [op["operationId"] for _, _, op in _operations(_spec(client))]
    assert len(ids) == len(set(ids))
    assert [i for i in ids if not OPERATION_ID.fullmatch(i) or "api" in i.split("_")] == []
    assert {"agents_predict", "backtests_create", "trading_orders", "mother_ai_decide"} <= set(ids)


def test_every_request_body_has_an_example(client: TestClient) -> None:
    spec = _spec(client)
    components = spec["components"]["schemas"]
    missing = []
    for where, content_type, content in _request_bodies(spec):
        schema = content.get("schema", {})
        named = components.get(schema.get("$ref", "").rsplit("/", 1)[-1], {})
        if not any("examples" in place or "example" in place for place in (content, schema, named)):
            missing.append(f"{where} ({content_type})")
    assert missing == []


def test_the_shipped_strategies_are_examples_of_their_bodies(client: TestClient) -> None:
    spec = _spec(client)
    create = spec["paths"]["/api/strategies"]["post"]["requestBody"]["content"]["application/json"]
    assert set(create["examples"]) == {"macd_bollinger_combo", "rsi_dip_trend"}
    example = create["examples"]["rsi_dip_trend"]["value"]
    saved = client.post("/api/strategies", json=example, headers=AUTH)
    assert saved.status_code == 201, saved.text
    assert saved.json()["spec"]["name"] == example["name"]


def test_every_documented_error_is_the_project_error_body(client: TestClient) -> None:
    spec = _spec(client)
    assert not {"HTTPValidationError", "ValidationError"} & set(spec["components"]["schemas"])
    wrong = []
    for method, path, op in _operations(spec):
        for status, response in op["responses"].items():
            if status[0] in "45":
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                if schema.get("$ref") != "#/components/schemas/ErrorBody":
                    wrong.append(f"{method.upper()} {path} {status}")
    assert wrong == []


# (method, path, body or None, status the app answers): each answer must be documented for its
# operation, and must be the error body with a code from the vocabulary.
ERRORS = [
    ("get", "/api/agents", None, 401),
    ("get", "/api/agents/NOSUCHUSDT", AUTH, 404),
    ("get", "/api/agents/bad!", AUTH, 422),
    ("get", "/api/jobs/nope", AUTH, 404),
    ("post", "/api/jobs/nope/cancel", AUTH, 404),
    ("get", "/api/binance/candles?symbol=BTCUSDT&interval=7m", AUTH, 422),
    ("get", "/api/binance/price?symbol=NOSUCHUSDT", AUTH, 404),
    ("get", "/api/backtest/nope", AUTH, 404),
    ("get", "/api/strategies/999", AUTH, 404),
    ("get", "/api/mother-ai/decisions/" + "0" * 32, AUTH, 404),
    ("get", "/api/mother-ai/replays/" + "0" * 32, AUTH, 404),
    ("get", "/api/orders?limit=0", AUTH, 422),
    ("get", "/api/orders?side=HOLD", AUTH, 422),
    ("get", "/api/jobs?kind=nope", AUTH, 422),
]


@pytest.mark.parametrize(("method", "path", "headers", "status"), ERRORS)
def test_each_real_error_is_documented_and_shaped_as_documented(
    client: TestClient, method: str, path: str, headers: dict[str, str] | None, status: int
) -> None:
    response = client.request(method, path, headers=headers)
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] in get_args(ErrorCode)
    ErrorBody.model_validate(body)  # details included: the documented ErrorContext
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    spec = _spec(client)
    template = next(
        p
        for p in spec["paths"]
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", p), path.split("?")[0]) and method in spec["paths"][p]
    )
    assert str(status) in spec["paths"][template][method]["responses"], f"{status} not documented"


def test_every_error_code_the_code_raises_is_in_the_vocabulary() -> None:
    raised: set[str] = set()
    patterns = [
        re.compile(r'\bcode="([a-z_]+)"'),  # AppError(..., code="...")
        re.compile(r'_error\(\d{3}, "([a-z_]+)"'),  # the app's own handlers
        re.compile(r'^\s+\d{3}: "([a-z_]+)",$', re.M),  # HTTP status -> code for Starlette's errors
    ]
    # Each error class's default code.
    raised |= set(
        re.findall(r'^\s+code(?:: str)? = "([a-z_]+)"', (ROOT / "utils" / "errors.py").read_text(), re.M)
    )
    for name in RUNTIME:
        target = ROOT / name
        for path in [target] if target.is_file() else sorted(target.rglob("*.py")):
            text = path.read_text()
            for pattern in patterns:
                raised |= set(pattern.findall(text))
    assert len(raised) > 40
    assert raised - set(get_args(ErrorCode)) == set()


def test_docs_and_redoc_load_with_no_outside_host(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        refs = re.findall(r'(?:src|href)=["\']([^"\']+)["\']', html) + re.findall(
            r'url: ?["\']([^"\']+)', html
        )
        assert refs, page
        outside = [r for r in refs if re.match(r"^(https?:)?//", r)]
        assert outside == [], f"{page} loads {outside}"
        for ref in refs:
            if ref.startswith("/docs-static/"):
                asset = client.get(ref)
                assert asset.status_code == 200 and len(asset.content) > 1000, ref
    assert '"validatorUrl": null' in client.get("/docs").text


def test_the_browser_may_read_and_send_the_request_id(client: TestClient) -> None:
    preflight = client.options(
        "/api/agents",
        headers={
            "Origin": "http://localhost:5173",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization, x-request-id",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert "x-request-id" in preflight.headers["access-control-allow-headers"].lower()
    answer = client.get(
        "/api/agents", headers={**AUTH, "Origin": "http://127.0.0.1:5173", "X-Request-ID": "ui-42.a"}
    )
    assert answer.headers["x-request-id"] == "ui-42.a"
    assert "x-request-id" in answer.headers["access-control-expose-headers"].lower()
    for origin in ("http://localhost:3000", "http://127.0.0.1:3000", "http://localhost:5173"):
        allowed = client.get("/api/agents", headers={**AUTH, "Origin": origin})
        assert allowed.headers["access-control-allow-origin"] == origin, origin
    hostile = client.get("/api/agents", headers={**AUTH, "X-Request-ID": "a b\nforged log line"})
    assert re.fullmatch(r"[0-9a-f]{12}", hostile.headers["x-request-id"])
