"""backtester/report.py without a browser: the indicators a report draws are the ones the strategy read (they
reproduce its signals), a JSON strategy's indicators come with the levels it compares them with, and the page
names its data source, keeps every trade marker's reason and says which trades its list leaves out."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import numpy as np
import pytest
from fastapi.testclient import TestClient

from backtester.metrics import DEFINITIONS, Metrics
from backtester.report import METRIC_ORDER, build_report, spec_indicators, strategy_indicators
from backtester.runner import BacktestConfig, run_backtest
from backtester.service import StoredBacktest, metrics_dict
from backtester.strategies import BUILTINS, cross_above, crosses
from db import storage
from db.models import BacktestRun
from ml_engine.indicators import INDICATORS, compute
from strategy_engine.spec import validate_spec
from tests.support.candles import random_candles
from tests.support.http import AUTH, ctx_of
from utils.market_data.candles import Candles
from utils.reports.document import Chart, Markers, Table, Text


def _outputs(name: str, candles: Candles, params: dict[str, int | float]) -> tuple[np.ndarray, ...]:
    columns = {c: candles.column(c) for c in ("open", "high", "low", "close", "volume")}
    return compute(name, columns, params)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_a_builtins_drawn_indicators_reproduce_its_signals(name: str) -> None:
    builtin = BUILTINS[name]
    params = builtin.default_params()
    uses = builtin.indicators(params)
    for use in uses:
        assert INDICATORS[use.name].resolve_params(use.params) == use.params  # explicit and valid
    candles = random_candles(3000, seed=4)
    entries, exits = builtin.signals(candles, params)
    assert entries.any() and exits.any()
    drawn = [_outputs(u.name, candles, u.params) for u in uses]
    if name in ("sma_crossover", "ema_crossover"):
        expected = crosses(drawn[0][0], drawn[1][0])
    elif name == "macd_signal":
        expected = crosses(drawn[0][0], drawn[0][1])
    elif name == "rsi_mean_reversion":
        oversold, overbought = uses[0].levels
        expected = (drawn[0][0] < oversold, drawn[0][0] > overbought)
    else:
        upper, middle, _ = drawn[0]
        below = candles.close < middle
        below[: uses[0].params["period"]] = False  # the strategy keeps its warm-up silent
        expected = (cross_above(candles.close, upper), below)
    assert np.array_equal(expected[0], entries) and np.array_equal(expected[1], exits)


def test_a_json_strategys_indicators_carry_the_numbers_it_compares_them_with() -> None:
    rsi = {"indicator": "rsi", "params": {"period": 14}}
    spec = validate_spec(
        {
            "name": "dip",
            "symbol": "BTCUSDT",
            "interval": "1h",
            "entry": {
                "all": [
                    {"left": rsi, "op": "<", "right": 30},
                    {
                        "left": {"price": "close"},
                        "op": ">",
                        "right": {"indicator": "sma", "params": {"period": 200}},
                    },
                ]
            },
            "exit": {"any": [{"left": 70, "op": "<", "right": rsi}, {"left": rsi, "op": ">", "right": 30}]},
        }
    )
    uses = {(u.name, tuple(u.params.items())): u.levels for u in spec_indicators(spec)}
    assert uses == {("rsi", (("period", 14),)): (30.0, 70.0), ("sma", (("period", 200),)): ()}


def _stored(candles: Candles, source: str, *, fast: int = 3, slow: int = 8) -> StoredBacktest:
    entries, exits = crosses(
        _outputs("sma", candles, {"period": fast})[0], _outputs("sma", candles, {"period": slow})[0]
    )
    config = BacktestConfig(stop_loss=0.01, take_profit=0.01)
    result = run_backtest(candles, entries, exits, config)
    run = BacktestRun(
        id="b" * 32,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        symbol=candles.symbol,
        interval=candles.interval,
        strategy="sma_crossover",
        strategy_kind="builtin",
        params={"fast": fast, "slow": slow},
        config=dataclasses.asdict(config),
        data_source=source,
        start_time=int(candles.open_time[0]),
        end_time=int(candles.open_time[-1]),
        n_bars=len(candles),
        metrics=metrics_dict(result),
        open_trade=None,
    )
    return StoredBacktest(run, candles.open_time, result.equity, result.trade_columns)


def test_the_page_names_its_source_every_metric_and_each_exits_reason() -> None:
    candles = random_candles(12_000, seed=2)
    stored = _stored(candles, "sample")
    assert len(stored.trades) > 500  # the list shows its first and last 250
    uses = BUILTINS["sma_crossover"].indicators(BUILTINS["sma_crossover"].make_params({"fast": 3, "slow": 8}))
    report = build_report(stored, candles, uses, "", 0)
    assert report.title.startswith("[SAMPLE DATA] ") and report.warning and "synthetic" in report.warning
    blocks = {b.key: b for s in report.sections for b in s.blocks if isinstance(b, Chart | Table)}
    assert set(blocks) >= {"price", "equity", "metrics", "trades"}
    metrics = blocks["metrics"]
    assert isinstance(metrics, Table)
    assert [row[0] for row in metrics.rows] == [m.replace("_", " ") for m in METRIC_ORDER]
    assert all(row[2] == DEFINITIONS[m] for row, m in zip(metrics.rows, METRIC_ORDER, strict=True))
    assert set(DEFINITIONS) == {f.name for f in dataclasses.fields(Metrics)} | {"final_equity"}
    price = blocks["price"]
    assert isinstance(price, Chart)
    markers = {s.name: s for p in price.panels for s in p.series if isinstance(s, Markers)}
    reasons = set(stored.trades.exit_reason.tolist())
    assert {"signal", "stop_loss", "take_profit"} <= reasons
    assert sum(len(m.x) for n, m in markers.items() if n.startswith("exit")) == len(stored.trades)
    assert len(markers["entry"].x) == len(stored.trades)
    assert all("pnl" in text for text in markers["exit: stop loss"].text)
    lines = [s.name for p in price.panels for s in p.series]
    assert "SMA(3)" in lines and "SMA(8)" in lines
    trades = blocks["trades"]
    assert isinstance(trades, Table) and len(trades.rows) == 500
    assert trades.rows[249][0] == "250" and trades.rows[250][0] == str(len(stored.trades) - 249)
    assert f"of {len(stored.trades):,}" in trades.note


def test_a_real_data_report_says_where_its_candles_came_from_and_what_is_missing() -> None:
    candles = random_candles(600, seed=5)
    stored = _stored(candles, "file")
    report = build_report(stored, candles.slice(0, 500), [], "Stored before backtests kept their spec", 0)
    assert not report.title.startswith("[SAMPLE DATA]") and report.warning is None
    assert "data source: file" in report.subtitle
    texts = [b.text for s in report.sections for b in s.blocks if isinstance(b, Text)]
    assert any("100 of the backtest's 600 candles are no longer in the candle store" in t for t in texts)
    price = next(b for s in report.sections for b in s.blocks if isinstance(b, Chart) and b.key == "price")
    assert "Stored before backtests kept their spec" in price.note
    gone = build_report(stored, candles.slice(0, 0), [], "", 0)  # the store lost the series
    keys = [b.key for s in gone.sections for b in s.blocks if isinstance(b, Chart)]
    assert keys == ["equity"]
    texts = [b.text for s in gone.sections for b in s.blocks if isinstance(b, Text)]
    assert "No stored candles for this backtest." in texts


def test_an_inline_spec_backtest_keeps_its_spec_and_its_report_draws_its_indicators(
    client: TestClient,
) -> None:
    spec = {
        "name": "inline dip",
        "symbol": "BTCUSDT",
        "interval": "1h",
        "entry": {"left": {"indicator": "rsi", "params": {"period": 9}}, "op": "<", "right": 35},
        "exit": {
            "left": {"price": "close"},
            "op": ">",
            "right": {"indicator": "ema", "params": {"period": 40}},
        },
    }
    body = {"symbol": "BTCUSDT", "interval": "1h", "strategy": spec}
    created = client.post("/api/backtest", json=body, headers=AUTH)
    assert created.status_code == 201, created.text[:300]
    ctx = ctx_of(client)
    run = storage.get_backtest(ctx.sessions, created.json()["id"])
    assert run is not None and run.strategy_kind == "inline"
    assert run.spec is not None and run.spec["entry"] == validate_spec(spec).to_dict()["entry"]
    uses, note = strategy_indicators(run, ctx.strategies)
    assert note == ""
    assert {(u.name, tuple(u.params.items()), u.levels) for u in uses} == {
        ("rsi", (("period", 9),), (35.0,)),
        ("ema", (("period", 40),), ()),
    }
