"""GET /api/indicators end to end: the candles endpoint's window, a strategy's values on it, the warm-up
read (and synced from Binance) before it, every bad input as a 4xx naming its field, and its contract."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from main import create_app
from ml_engine.indicators import INDICATORS, sma
from strategy_engine.strategy_parser import trace
from tests.fakes.fake_binance import FakeBinance
from tests.support.http import AUTH, ctx_of
from tests.support.settings import make_settings

HOUR = 3_600_000
JAN_2024 = 1_704_067_200_000  # 2024-01-01T00:00Z


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One offline app on the sample data for the read-only tests of this module."""
    settings = make_settings(tmp_path_factory.mktemp("indicators"))
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def get(client: TestClient, **query: Any) -> Any:
    params = {"symbol": "BTCUSDT", "interval": "1h", **query}
    if isinstance(params.get("params"), dict):
        params["params"] = json.dumps(params["params"])
    return client.get("/api/indicators", params=params, headers=AUTH)


def ok(client: TestClient, **query: Any) -> dict[str, Any]:
    response = get(client, **query)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


WINDOWS = [
    {"limit": 5},
    {"limit": 24, "start": "2024-01-01T00:00:00Z"},
    {"limit": 48, "end": str(JAN_2024)},
    {"limit": 5000, "start": "2024-01-01", "end": "2024-01-03T12:00:00Z"},
]


@pytest.mark.parametrize("window", WINDOWS)
def test_the_window_is_the_candles_endpoints_window(client: TestClient, window: dict[str, Any]) -> None:
    candles = client.get(
        "/api/binance/candles", params={"symbol": "BTCUSDT", "interval": "1h", **window}, headers=AUTH
    ).json()
    body = ok(client, name="macd", **window)
    assert body["times"] == [c["open_time"] for c in candles["candles"]]
    assert (body["source"], body["stale"], body["count"]) == (candles["source"], False, candles["count"])
    assert body["indicator"] == "macd"
    assert body["params"] == {"fast": 12, "slow": 26, "signal": 9}
    assert body["outputs"] == [s["name"] for s in body["series"]] == ["macd", "signal", "hist"]
    assert body["warmup"] == 33
    assert all(len(s["values"]) == body["count"] for s in body["series"])


@pytest.mark.parametrize(
    ("name", "params", "output"),
    [
        ("ema", {"period": 50}, "value"),
        ("rsi", {}, "value"),
        ("obv", {}, "value"),
        ("bollinger", {"period": 30, "k": 2.5}, "lower"),
        ("macd", {"fast": 8, "slow": 21, "signal": 5}, "hist"),
        ("stochastic", {}, "d"),
    ],
)
def test_values_are_what_a_strategy_over_the_stored_series_sees(
    client: TestClient, name: str, params: dict[str, Any], output: str
) -> None:
    body = ok(client, name=name, params=params, start="2024-06-01", limit=200)
    stored = ctx_of(client).market.store.load("sample", "BTCUSDT", "1h")
    assert body["history_start_time"] == int(stored.open_time[0])
    operand: dict[str, Any] = {"indicator": name, "params": params}
    if output != "value":
        operand["output"] = output
    spec = {"name": "probe", "symbol": "BTCUSDT", "interval": "1h", "stop_loss": 0.5}
    sees = trace({**spec, "entry": {"left": operand, "op": ">", "right": 0}}, stored).operands["entry.left"]
    first = int(np.searchsorted(stored.open_time, body["times"][0]))
    values = next(s["values"] for s in body["series"] if s["name"] == output)
    assert values == sees[first : first + 200].tolist(), "the same numbers, through JSON and back"


@pytest.mark.parametrize("name", ["ema", "rsi", "adx", "bollinger", "vwap"])
def test_a_narrow_window_equals_the_same_bars_of_a_wide_one(client: TestClient, name: str) -> None:
    narrow = ok(client, name=name, start="2024-03-10T05:00:00Z", limit=3)
    wide = ok(client, name=name, start="2024-03-01", limit=1000)
    at = wide["times"].index(narrow["times"][0])
    assert narrow["times"] == wide["times"][at : at + 3]
    for a, b in zip(narrow["series"], wide["series"], strict=True):
        assert a["values"] == b["values"][at : at + 3]
        assert None not in a["values"]


def test_null_only_where_the_stored_series_is_too_short(client: TestClient) -> None:
    first = int(ctx_of(client).market.store.load("sample", "BTCUSDT", "1h").open_time[0])
    body = ok(client, name="sma", params={"period": 10}, start=str(first), limit=12)
    values = body["series"][0]["values"]
    assert values[:9] == [None] * 9, "the series starts here: nine bars have no 10-bar mean"
    assert None not in values[9:]


def field_of(error: dict[str, Any]) -> Any:
    return error["details"].get("field")


# (query, status, code, the field the error names)
BAD_INPUT: list[tuple[dict[str, Any], int, str, str | None]] = [
    ({"name": "nope"}, 422, "invalid_input", "name"),
    ({"name": ""}, 422, "invalid_input", "name"),
    ({}, 422, "validation_error", "query.name"),
    ({"name": "x" * 41}, 422, "validation_error", "query.name"),
    ({"name": "rsi", "params": {"length": 14}}, 422, "invalid_input", "params.length"),
    ({"name": "rsi", "params": {"period": "14"}}, 422, "invalid_input", "params.period"),
    ({"name": "rsi", "params": {"period": 14.5}}, 422, "invalid_input", "params.period"),
    ({"name": "rsi", "params": {"period": 1}}, 422, "invalid_input", "params.period"),
    ({"name": "bollinger", "params": {"k": 11}}, 422, "invalid_input", "params.k"),
    ({"name": "macd", "params": {"fast": 40}}, 422, "invalid_input", "params"),
    ({"name": "rsi", "params": "period=14"}, 422, "invalid_input", "params"),
    ({"name": "rsi", "params": "[14]"}, 422, "invalid_input", "params"),
    ({"name": "rsi", "params": "{" * 1001}, 422, "validation_error", "query.params"),
    ({"name": "rsi", "start": "2024-02-01", "end": "2024-01-01"}, 422, "invalid_input", "start"),
    ({"name": "rsi", "start": "yesterday"}, 422, "invalid_input", "start"),
    ({"name": "rsi", "end": "31/01/2024"}, 422, "invalid_input", "end"),
    ({"name": "rsi", "limit": 0}, 422, "validation_error", "query.limit"),
    ({"name": "rsi", "limit": 5001}, 422, "validation_error", "query.limit"),
    ({"name": "rsi", "interval": "7m"}, 422, "validation_error", "query.interval"),
    ({"name": "rsi", "symbol": "btc!"}, 422, "validation_error", "query.symbol"),
]


@pytest.mark.parametrize(("query", "status", "code", "field"), BAD_INPUT)
def test_bad_input_is_a_4xx_naming_the_field(
    client: TestClient, query: dict[str, Any], status: int, code: str, field: str
) -> None:
    response = get(client, **query)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], field_of(error)) == (code, field)
    assert error["message"]


@pytest.mark.parametrize(("symbol", "interval"), [("NOSUCHUSDT", "1h"), ("BTCUSDT", "4h")])
def test_a_series_with_no_candles_is_a_404_naming_it(client: TestClient, symbol: str, interval: str) -> None:
    response = get(client, name="rsi", symbol=symbol, interval=interval)
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert error["code"] == "no_data"
    assert error["details"] == {"symbol": symbol, "interval": interval}


def test_the_contract_names_the_operation_its_body_and_its_errors(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/api/indicators"]["get"]
    assert operation["operationId"] == "market_indicators"
    assert operation["tags"] == ["market data"]
    ok_body = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok_body == {"$ref": "#/components/schemas/IndicatorsResponse"}
    model = spec["components"]["schemas"]["IndicatorsResponse"]
    example = model["examples"][0]
    assert set(example) == set(model["properties"])
    assert len(example["times"]) == example["count"] == len(example["series"][0]["values"])
    assert set(operation["responses"]) == {"200", "401", "404", "409", "422", "502", "503"}
    query = {p["name"]: p for p in operation["parameters"]}
    assert query["name"]["schema"]["enum"] == sorted(INDICATORS)
    assert set(query) == {"symbol", "interval", "name", "params", "limit", "start", "end"}
    assert get(client, name="rsi").status_code == 200
    assert client.get("/api/indicators", params={"symbol": "BTCUSDT", "interval": "1h"}).status_code == 401


# --- online: the warm-up is synced before the window ----------------------------------------------


def test_online_the_warmup_before_the_window_is_fetched_first(
    online_client: TestClient, fake_binance: FakeBinance
) -> None:
    body = ok(online_client, name="sma", params={"period": 200}, start="2024-01-01", limit=24)
    assert body["source"] == "binance" and body["stale"] is False
    assert body["times"][0] == JAN_2024
    assert None not in body["series"][0]["values"], "199 earlier candles were synced for the first mean"
    closes = online_client.get(
        "/api/binance/candles",
        params={"symbol": "BTCUSDT", "interval": "1h", "start": str(JAN_2024 - 199 * HOUR), "limit": 223},
        headers=AUTH,
    ).json()["candles"]
    expected = sma(np.array([c["close"] for c in closes]), 200)[199:]
    assert body["series"][0]["values"] == expected.tolist()
    requests = len(fake_binance.requests_to("/api/v3/klines"))
    again = ok(online_client, name="sma", params={"period": 200}, start="2024-01-01", limit=24)
    assert again["series"] == body["series"] and again["source"] == "cache"
    assert len(fake_binance.requests_to("/api/v3/klines")) == requests, "stored ranges are not fetched again"


def test_online_a_listing_has_no_history_before_it(
    online_client: TestClient, fake_binance: FakeBinance
) -> None:
    listed = JAN_2024 + 5 * HOUR
    fake_binance.add_symbol("NEWUSDT", listed_ms=listed, base_price=1.0)
    body = ok(online_client, symbol="NEWUSDT", name="sma", params={"period": 4}, start=str(JAN_2024), limit=8)
    assert body["times"][0] == listed and body["history_start_time"] == listed
    assert body["series"][0]["values"][:3] == [None] * 3, "nothing before the listing: truly no history"
    assert None not in body["series"][0]["values"][3:]


def test_online_a_warmup_too_long_to_sync_inline_is_a_409(online_client: TestClient) -> None:
    response = get(online_client, name="sma", params={"period": 100_000}, start="2024-01-01", limit=5)
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "sync_required"
    assert "POST /api/binance/sync" in error["message"]
