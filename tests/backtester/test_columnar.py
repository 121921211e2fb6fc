"""backtester/columnar.py: stored trades and curves read back bit for bit, as the engine produced them."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

import strategy_registry
from backtester import columnar, service
from backtester.runner import EXIT_REASONS, TRADE_FIELDS, BacktestConfig, TradeColumns, run_backtest
from tests.support.candles import sample_candles
from tests.support.http import ctx_of

I64 = np.iinfo(np.int64)
EDGE_FLOATS = [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 0.1, 1e-7, 1e22]
EDGE_FLOATS += [1 / 3, -123456789.123456789, np.nan, np.inf, -np.inf]


def assert_same(a: TradeColumns, b: TradeColumns) -> None:
    for name in TRADE_FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        if x.dtype == np.float64:  # bit for bit: -0.0 is not 0.0, and NaN equals its own bits
            np.testing.assert_array_equal(x.view(np.int64), np.asarray(y, dtype=np.float64).view(np.int64))
        else:
            assert x.tolist() == y.tolist(), name


def edge_columns() -> TradeColumns:
    n = len(EDGE_FLOATS)
    floats = np.array(EDGE_FLOATS)
    ints = np.resize(np.array([0, 1, -1, I64.min, I64.max, 1_735_689_600_000], dtype=np.int64), n)
    reasons = np.resize(np.array(EXIT_REASONS, dtype=object), n)
    return TradeColumns(
        entry_time=ints,
        entry_price=floats,
        exit_time=ints[::-1].copy(),
        exit_price=floats[::-1].copy(),
        quantity=np.roll(floats, 1),
        fees=np.roll(floats, 2),
        pnl=np.roll(floats, 3),
        trade_return=np.roll(floats, 4),
        entry_bar=np.roll(ints, 1),
        exit_bar=np.roll(ints, 2),
        exit_reason=reasons,
    )


def test_edge_values_round_trip_bit_for_bit() -> None:
    columns = edge_columns()
    back = columnar.unpack_trades(columnar.pack_trades(columns))
    assert_same(columns, back)
    assert back.exit_reason.tolist() == columns.exit_reason.tolist()
    assert back.lists()["entry_time"][3:5] == [I64.min, I64.max]  # Python ints, as the body writes them


def test_no_trades_round_trip() -> None:
    edges = edge_columns()
    empty = TradeColumns(**{name: getattr(edges, name)[:0] for name in TRADE_FIELDS})
    back = columnar.unpack_trades(columnar.pack_trades(empty))
    assert len(back) == 0 and back.trades() == []


def test_curve_round_trips_bit_for_bit() -> None:
    times = np.array([I64.min, 0, 1, 60_000, I64.max], dtype=np.int64)
    equity = np.array([-0.0, 5e-324, np.nan, np.inf, 1.7976931348623157e308])
    back_times, back_equity = columnar.unpack_curve(columnar.pack_curve(times, equity))
    assert back_times.tolist() == times.tolist()
    np.testing.assert_array_equal(back_equity.view(np.int64), equity.view(np.int64))


def test_a_blob_of_one_kind_is_never_read_as_the_other() -> None:
    curve = columnar.pack_curve(np.arange(3, dtype=np.int64), np.ones(3))
    trades = columnar.pack_trades(edge_columns())
    with pytest.raises(ValueError, match="backtest-trades/1"):
        columnar.unpack_trades(curve)
    with pytest.raises(ValueError, match="backtest-equity/1"):
        columnar.unpack_curve(trades)


def test_engine_trades_round_trip_with_every_exit_reason() -> None:
    candles = sample_candles("BTCUSDT", 6000)
    entries, exits = strategy_registry.resolve("sma_crossover", {"fast": 5, "slow": 20}).signals(candles)
    config = BacktestConfig(stop_loss=0.01, take_profit=0.03, trailing_stop=0.015, slippage_bps=3)
    result = run_backtest(candles, entries, exits, config)
    assert {t.exit_reason for t in result.trades} == {"signal", "stop_loss", "take_profit", "trailing_stop"}
    back = columnar.unpack_trades(columnar.pack_trades(result.trade_columns))
    assert back.trades() == result.trades
    assert_same(result.trade_columns, back)


def test_a_stored_backtest_reads_back_what_the_engine_produced(client: TestClient) -> None:
    ctx = ctx_of(client)
    strategy = strategy_registry.resolve("sma_crossover", {"fast": 10, "slow": 30}, ctx.strategies)
    config = BacktestConfig(stop_loss=0.02, take_profit=0.04, fee_rate=0.001, slippage_bps=2)
    stored = service.run_and_store(
        ctx.market, ctx.sessions, strategy, service.BacktestRequest("BTCUSDT", "1h", None, None, config)
    )
    candles = ctx.market.store.load("sample", "BTCUSDT", "1h")
    expected = run_backtest(candles, *strategy.signals(candles), config)
    read = service.get_stored(ctx.sessions, stored.run.id)
    assert read.trades.trades() == stored.trades.trades() == expected.trades
    assert len(expected.trades) > 50
    assert read.times.tolist() == candles.open_time.tolist()
    np.testing.assert_array_equal(read.equity, expected.equity)
