"""Backtest bodies are serialised once, from columns (routes/backtest.py `_response`): they must be what
BacktestResponse itself would write for the same values (the same fields in the same order, the same
numbers; JSON lets an encoder spell 1e16 as 1e+16, so numbers are compared parsed), on POST and, byte for
byte, on every later GET."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
from fastapi.testclient import TestClient

from backtester.runner import TRADE_FIELDS, Trade
from routes.backtest import BacktestResponse, TradeOut
from tests.support.http import AUTH
from tests.support.json_bodies import assert_same_json

BODY: dict[str, Any] = {"symbol": "BTCUSDT", "interval": "1h", "strategy": "sma_crossover"}


def post(client: TestClient, **changes: Any) -> httpx.Response:
    full = changes.pop("full", False)
    response = client.post("/api/backtest", params={"full": full}, json={**BODY, **changes}, headers=AUTH)
    assert response.status_code == 201, response.text
    return response


def assert_what_the_model_writes(response: httpx.Response) -> None:
    """What FastAPI would send for the validated model: the same fields in the same order, the same values,
    and number for number the same types."""
    assert response.headers["content-type"] == "application/json"
    model = BacktestResponse.model_validate_json(response.content)
    assert_same_json(response.content, model.model_dump_json().encode())


def test_trade_rows_have_the_engines_fields_in_order() -> None:
    # Rows are built by zipping these names with the engine's columns.
    assert tuple(TradeOut.model_fields) == TRADE_FIELDS == tuple(f.name for f in dataclasses.fields(Trade))


def test_bodies_are_what_the_model_writes_on_post_and_get(client: TestClient) -> None:
    cases: list[dict[str, Any]] = [
        {"params": {"fast": 10, "slow": 30}},
        {"params": {"fast": 5, "slow": 20}, "stop_loss": 0.01, "take_profit": 0.03, "trailing_stop": 0.015},
        {"params": {"fast": 10, "slow": 30}, "slippage_bps": 2.5, "position_size": 0.3, "full": True},
        {"strategy": "rsi_mean_reversion", "params": {"oversold": 1.0, "overbought": 99.0}},  # no trade
    ]
    for case in cases:
        full = case.get("full", False)
        posted = post(client, **case)
        assert_what_the_model_writes(posted)
        body = posted.json()
        again = client.get(f"/api/backtest/{body['id']}", params={"full": full}, headers=AUTH)
        assert again.status_code == 200
        assert again.content == posted.content, case
    assert body["trades"] == [] and body["metrics"]["n_trades"] == 0


def test_a_body_with_an_open_trade(client: TestClient) -> None:
    # The first of these ranges whose backtest ends in a position (the sample series is deterministic).
    for day in range(1, 29):
        posted = post(client, params={"fast": 10, "slow": 30}, end=f"2024-02-{day:02d}T00:00:00Z")
        if posted.json()["open_trade"] is not None:
            break
    else:
        raise AssertionError("no range ended in a position")
    assert_what_the_model_writes(posted)
    body = posted.json()
    assert body["open_trade"]["exit_reason"] == "end" and body["open_trade"]["exit_time"] is None
    assert client.get(f"/api/backtest/{body['id']}", headers=AUTH).content == posted.content
