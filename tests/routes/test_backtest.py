"""/api/backtest end to end on the offline sample data: run, store, read back, sweep, bad input."""

from __future__ import annotations

import dataclasses
import itertools

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

import strategy_registry
from backtester.runner import BacktestConfig, run_backtest
from tests.support.http import AUTH, ctx_of

BODY = {
    "symbol": "BTCUSDT",
    "interval": "1h",
    "strategy": "sma_crossover",
    "params": {"fast": 10, "slow": 30},
}


def post(client: TestClient, path: str = "/api/backtest", **changes: object) -> httpx.Response:
    return client.post(path, json={**BODY, **changes}, headers=AUTH)


def test_backtest_equals_the_engine_on_the_same_candles(client: TestClient) -> None:
    response = post(client, stop_loss=0.03, take_profit=0.06, fee_rate=0.001, slippage_bps=2)
    assert response.status_code == 201, response.text
    body = response.json()
    candles = ctx_of(client).market.store.load("sample", "BTCUSDT", "1h")
    entries, exits = strategy_registry.resolve("sma_crossover", {"fast": 10, "slow": 30}).signals(candles)
    expected = run_backtest(
        candles,
        entries,
        exits,
        BacktestConfig(fee_rate=0.001, slippage_bps=2, stop_loss=0.03, take_profit=0.06),
    )
    assert body["source"] == "sample"
    assert body["n_bars"] == len(candles)
    assert body["metrics"]["n_trades"] == expected.metrics.n_trades == len(body["trades"])
    assert body["metrics"]["final_equity"] == pytest.approx(expected.final_equity, rel=1e-12)
    assert [t["exit_reason"] for t in body["trades"]] == [t.exit_reason for t in expected.trades]
    assert {t["exit_reason"] for t in body["trades"]} >= {"signal", "stop_loss"}
    assert body["config"]["stop_loss"] == 0.03
    assert body["params"] == {"fast": 10, "slow": 30}


def test_equity_curve_is_downsampled_unless_full(client: TestClient) -> None:
    body = post(client).json()
    assert body["equity_points"] == 17520
    curve = body["equity_curve"]
    assert len(curve) == 2000
    times = [p["time"] for p in curve]
    assert times == sorted(times)
    assert curve[0]["equity"] == 10_000.0, "flat before the first fill"
    assert curve[-1]["equity"] == pytest.approx(body["metrics"]["final_equity"])
    full = client.get(f"/api/backtest/{body['id']}", params={"full": True}, headers=AUTH).json()
    assert len(full["equity_curve"]) == 17520
    assert full["equity_curve"][-1] == curve[-1]
    assert {p["time"] for p in curve} <= {p["time"] for p in full["equity_curve"]}
    # The drawdown beside the equity: from the running peak (the capital counts), its maximum the metric.
    equity = np.array([p["equity"] for p in full["equity_curve"]])
    peak = np.maximum.accumulate(np.maximum(equity, 10_000.0))
    np.testing.assert_allclose(
        [p["drawdown"] for p in full["equity_curve"]], (peak - equity) / peak, atol=1e-12
    )
    assert max(p["drawdown"] for p in full["equity_curve"]) == pytest.approx(body["metrics"]["max_drawdown"])


def test_results_are_stored_and_listed_newest_first(client: TestClient) -> None:
    first = post(client).json()
    second = post(client, strategy="rsi_mean_reversion", params={}).json()
    stored = client.get(f"/api/backtest/{first['id']}", headers=AUTH).json()
    assert stored["metrics"] == first["metrics"]
    assert stored["trades"] == first["trades"]
    listing = client.get("/api/backtest", params={"limit": 10}, headers=AUTH).json()
    assert listing["total"] == 2
    assert [b["id"] for b in listing["backtests"]] == [second["id"], first["id"]]
    assert "trades" not in listing["backtests"][0]
    page = client.get("/api/backtest", params={"limit": 1, "offset": 1}, headers=AUTH).json()
    assert [b["id"] for b in page["backtests"]] == [first["id"]]
    only = client.get("/api/backtest", params={"strategy": "rsi_mean_reversion"}, headers=AUTH).json()
    assert [b["id"] for b in only["backtests"]] == [second["id"]] and only["total"] == 1
    assert client.get("/api/backtest", params={"symbol": "ETHUSDT"}, headers=AUTH).json()["total"] == 0
    hourly = client.get("/api/backtest", params={"interval": "1h"}, headers=AUTH).json()
    assert [b["id"] for b in hourly["backtests"]] == [second["id"], first["id"]]
    assert client.get("/api/backtest", params={"interval": "4h"}, headers=AUTH).json()["total"] == 0
    oldest = client.get("/api/backtest", params={"sort": "oldest"}, headers=AUTH).json()
    assert [b["id"] for b in oldest["backtests"]] == [first["id"], second["id"]]
    assert (first["strategy_kind"], first["strategy_id"], first["strategy_version"]) == (
        "builtin",
        None,
        None,
    )


def test_every_builtin_strategy_runs(client: TestClient) -> None:
    """Each built-in the API lists backtests with its defaults, and the body a client reads (summary,
    metrics, trades, curve) is the engine's run on the same candles, and consistent with itself."""
    listed = client.get("/api/strategies", headers=AUTH).json()
    builtins = [s for s in listed["strategies"] if s["kind"] == "builtin"]
    assert [s["name"] for s in builtins] == [s.name for s in strategy_registry.list_strategies()]
    assert builtins, "no built-in strategy is listed"
    candles = ctx_of(client).market.store.load("sample", "BTCUSDT", "1h")
    initial = 10_000.0
    for info in builtins:
        name = info["name"]
        response = post(client, strategy=name, params={})
        assert response.status_code == 201, (name, response.text)
        body = response.json()
        resolved = strategy_registry.resolve(name, {})
        expected = run_backtest(candles, *resolved.signals(candles), BacktestConfig())

        # The summary: which strategy ran, with which parameters, on which candles.
        assert (body["strategy"], body["strategy_kind"], body["strategy_id"], body["strategy_version"]) == (
            name,
            "builtin",
            None,
            None,
        )
        assert body["params"] == resolved.params == {p["name"]: p["default"] for p in info["parameters"]}
        assert body["config"] == {
            "initial_capital": initial,
            "fee_rate": 0.001,
            "slippage_bps": 0.0,
            "position_size": 1.0,
            "stop_loss": None,
            "take_profit": None,
            "trailing_stop": None,
        }
        assert (body["source"], body["n_bars"]) == ("sample", len(candles))
        assert (body["start_time"], body["end_time"]) == (candles.open_time[0], candles.open_time[-1])

        # The metrics: the engine's, and consistent with the trades and the curve in the same body.
        metrics, trades = body["metrics"], body["trades"]
        for key, value in dataclasses.asdict(expected.metrics).items():
            assert metrics[key] == (None if value is None else pytest.approx(value, rel=1e-9)), (name, key)
        assert metrics["final_equity"] == pytest.approx(expected.final_equity, rel=1e-12)
        assert metrics["n_trades"] == len(trades) == len(expected.trades) > 0, name
        assert metrics["total_return"] == pytest.approx(metrics["final_equity"] / initial - 1, rel=1e-9)
        wins = sum(t["pnl"] > 0 for t in trades)
        assert metrics["win_rate"] == pytest.approx(wins / len(trades))
        open_pnl = body["open_trade"]["pnl"] if body["open_trade"] else 0.0
        assert sum(t["pnl"] for t in trades) + open_pnl == pytest.approx(metrics["final_equity"] - initial)

        # The trades: the engine's, in time order, one at a time, on the candles' open times.
        for got, want in zip(trades, expected.trades, strict=True):
            assert got == pytest.approx(dataclasses.asdict(want), rel=1e-12), name
        for trade in trades:
            assert trade["exit_reason"] == "signal", "no stop was asked for"
            assert trade["entry_bar"] < trade["exit_bar"]
            assert trade["entry_time"] == candles.open_time[trade["entry_bar"]]
            assert trade["exit_time"] == candles.open_time[trade["exit_bar"]]
            assert trade["fees"] > 0 and trade["quantity"] > 0
        for earlier, later in itertools.pairwise(trades):
            assert earlier["exit_bar"] <= later["entry_bar"]
        if body["open_trade"] is not None:
            assert body["open_trade"]["exit_reason"] == "end" and body["open_trade"]["exit_time"] is None
            assert not trades or trades[-1]["exit_bar"] <= body["open_trade"]["entry_bar"]

        # The curve: every bar counted, downsampled to 2,000 points from the capital to the final equity.
        curve = body["equity_curve"]
        assert body["equity_points"] == len(candles) and len(curve) == min(2000, len(candles))
        first = curve[0]
        assert (first["time"], first["equity"], first["drawdown"]) == (body["start_time"], initial, 0.0)
        assert curve[-1]["time"] == body["end_time"]
        assert curve[-1]["equity"] == pytest.approx(metrics["final_equity"], rel=1e-12)
        assert [p["time"] for p in curve] == sorted({p["time"] for p in curve})
        assert max(p["drawdown"] for p in curve) <= metrics["max_drawdown"] + 1e-12


def test_sweep_ranks_combinations_and_reports_rejected_ones(client: TestClient) -> None:
    response = post(
        client,
        "/api/backtest/sweep",
        params={},
        grid={"fast": [5, 10, 40], "slow": [20, 30]},
        rank_by="sharpe",
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["combinations"] == 6
    ranked = [r for r in body["results"] if r["rank"] is not None]
    rejected = [r for r in body["results"] if r["rank"] is None]
    assert [r["rank"] for r in ranked] == [1, 2, 3, 4]
    sharpes = [r["metrics"]["sharpe"] for r in ranked]
    assert sharpes == sorted(sharpes, reverse=True)
    assert {(r["params"]["fast"], r["params"]["slow"]) for r in rejected} == {(40, 20), (40, 30)}
    assert all("fast must be < slow" in r["error"] for r in rejected)
    # Each ranked row equals a single backtest with the same parameters.
    best = ranked[0]
    single = post(client, params=best["params"]).json()
    assert single["metrics"]["sharpe"] == pytest.approx(best["metrics"]["sharpe"], rel=1e-12)


def test_sweep_ranks_drawdown_lowest_first(client: TestClient) -> None:
    body = post(
        client, "/api/backtest/sweep", grid={"slow": [20, 30, 50]}, params={"fast": 5}, rank_by="max_drawdown"
    ).json()
    drawdowns = [r["metrics"]["max_drawdown"] for r in body["results"]]
    assert drawdowns == sorted(drawdowns)


def test_sweep_combinations_are_capped(client: TestClient) -> None:
    grid = {"fast": list(range(1, 18)), "slow": list(range(20, 37))}  # 289 combinations
    response = post(client, "/api/backtest/sweep", params={}, grid=grid)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "too_many_combinations"
    assert "289" in error["message"] and "256" in error["message"]


@pytest.mark.parametrize(
    ("changes", "status", "words"),
    [
        ({"strategy": "does_not_exist"}, 404, "Unknown strategy"),
        ({"fee_rate": -0.001}, 422, "fee_rate"),
        ({"position_size": 0}, 422, "position_size"),
        ({"position_size": 1.01}, 422, "position_size"),
        ({"position_size": 5e-324}, 422, "position_size"),
        ({"stop_loss": 0}, 422, "stop_loss"),
        ({"stop_loss": 1.0}, 422, "stop_loss"),
        ({"trailing_stop": 1.5}, 422, "trailing_stop"),
        ({"take_profit": -0.1}, 422, "take_profit"),
        ({"slippage_bps": -1}, 422, "slippage_bps"),
        ({"params": {"fast": 30, "slow": 10}}, 422, "fast must be < slow"),
        ({"params": {"speed": 3}}, 422, "unknown parameter"),
        ({"params": {"fast": "10"}}, 422, "params.fast"),
        ({"params": {"fast": 10, "slow": 20000}}, 422, "needs at least 20002"),
        ({"start": "2024-12-30T00:00:00Z"}, 422, "needs at least"),
        ({"start": "2024-06-01", "end": "2024-05-01"}, 422, "start"),
        ({"symbol": "SOLUSDT"}, 404, "No 1h candles for SOLUSDT"),
        ({"strategy": 2**63}, 422, "strategy"),
        ({"start": "--3"}, 422, "start"),
    ],
)
def test_bad_input_is_a_clear_4xx(client: TestClient, changes: dict, status: int, words: str) -> None:
    response = post(client, **changes)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]["message"]
    assert client.get("/api/backtest", headers=AUTH).json()["total"] == 0, "a refused backtest stores nothing"


def test_unknown_backtest_id_is_404(client: TestClient) -> None:
    response = client.get("/api/backtest/0123456789abcdef", headers=AUTH)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "backtest_not_found"


def test_range_limits_the_candles(client: TestClient) -> None:
    body = post(client, start="2024-01-01T00:00:00Z", end="2024-01-31T23:00:00Z").json()
    assert body["n_bars"] == 31 * 24
    assert body["start_time"] == 1_704_067_200_000
    assert np.isfinite(body["metrics"]["final_equity"])
