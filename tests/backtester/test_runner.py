"""Engine fill rules on small hand-made candle grids: one table row per rule (see the runner's docstring)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest

from backtester import runner
from backtester.runner import BacktestConfig, Trade, run_backtest
from tests.support.candles import market_walk
from utils.market_data.candles import Candles

HOUR_MS = 3_600_000
N_BARS = 8
FLAT = (100.0, 101.0, 99.0, 100.0)  # open, high, low, close of an uneventful bar


def exit_price(trade: Trade) -> float:
    """A closed trade's exit price (Trade's is None only for the open trade, which is never in `trades`)."""
    assert trade.exit_price is not None, trade
    return trade.exit_price


def grid(overrides: dict[int, tuple[float, float, float, float]] | None = None, n: int = N_BARS) -> Candles:
    """n hourly bars of FLAT, with some bars replaced by (open, high, low, close)."""
    rows = [(overrides or {}).get(i, FLAT) for i in range(n)]
    o, h, lo, c = (np.array(col, dtype=np.float64) for col in zip(*rows, strict=True))
    times = np.arange(n, dtype=np.int64) * HOUR_MS + 1_700_000_000_000
    return Candles("TEST", "1h", times, o, h, lo, c, np.ones(n), "sample")


def bars(*indices: int, n: int = N_BARS) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[list(indices)] = True
    return out


# Expected closed trades as (entry_bar, entry_price, exit_bar, exit_price, exit_reason); open as (bar, price).
CASES: list[dict[str, Any]] = [
    dict(
        id="signal fills at next open",
        rows={2: (102, 103, 101, 102), 4: (105, 106, 104, 105)},
        entries=[1],
        exits=[3],
        trades=[(2, 102, 4, 105, "signal")],
        open=None,
    ),
    dict(id="entry signal on last bar ignored", entries=[7], exits=[], trades=[], open=None),
    dict(
        id="exit signal on last bar ignored, position stays open",
        rows={7: (100, 101, 99, 120)},
        entries=[1],
        exits=[7],
        trades=[],
        open=(2, 100),
    ),
    dict(id="entry and exit on one bar while flat: nothing", entries=[1], exits=[1], trades=[], open=None),
    dict(
        id="entry and exit on one bar in a position: exit",
        entries=[1, 3],
        exits=[3],
        trades=[(2, 100, 4, 100, "signal")],
        open=None,
    ),
    dict(
        id="entry while in a position ignored",
        entries=[1, 2, 3],
        exits=[4],
        trades=[(2, 100, 5, 100, "signal")],
        open=None,
    ),
    dict(
        id="exit while flat ignored",
        entries=[3],
        exits=[1, 5],
        trades=[(4, 100, 6, 100, "signal")],
        open=None,
    ),
    dict(
        id="re-entry on the bar the exit filled",
        rows={5: (110, 111, 109, 110)},
        entries=[1, 4],
        exits=[3],
        trades=[(2, 100, 4, 100, "signal")],
        open=(5, 110),
    ),
    dict(
        id="open at end valued at last close",
        rows={7: (100, 101, 99, 130)},
        entries=[5],
        exits=[],
        trades=[],
        open=(6, 100),
    ),
    dict(
        id="stop loss inside the bar fills at the stop",
        rows={2: (100, 101, 94, 97)},
        entries=[0],
        exits=[],
        config=dict(stop_loss=0.05),
        trades=[(1, 100, 2, 95, "stop_loss")],
        open=None,
    ),
    dict(
        id="gap below the stop fills at the open",
        rows={2: (93, 94, 90, 92)},
        entries=[0],
        exits=[],
        config=dict(stop_loss=0.05),
        trades=[(1, 100, 2, 93, "stop_loss")],
        open=None,
    ),
    dict(
        id="take profit inside the bar fills at the target",
        rows={2: (100, 112, 99, 111)},
        entries=[0],
        exits=[],
        config=dict(take_profit=0.1),
        trades=[(1, 100, 2, 110, "take_profit")],
        open=None,
    ),
    dict(
        id="gap above the target fills at the open",
        rows={2: (113, 115, 112, 114)},
        entries=[0],
        exits=[],
        config=dict(take_profit=0.1),
        trades=[(1, 100, 2, 113, "take_profit")],
        open=None,
    ),
    dict(
        id="stop and target in one bar: stop first",
        rows={2: (100, 112, 94, 100)},
        entries=[0],
        exits=[],
        config=dict(stop_loss=0.05, take_profit=0.1),
        trades=[(1, 100, 2, 95, "stop_loss")],
        open=None,
    ),
    dict(
        id="gap above target then touching the stop: the open decides",
        rows={2: (111, 112, 94, 100)},
        entries=[0],
        exits=[],
        config=dict(stop_loss=0.05, take_profit=0.1),
        trades=[(1, 100, 2, 111, "take_profit")],
        open=None,
    ),
    # Stops are live from the entry bar on: the entry fills at bar 1's open, the rest of bar 1 counts.
    dict(
        id="stop loss inside the entry bar fills at the stop",
        rows={1: (100, 101, 94, 97)},
        entries=[0],
        exits=[],
        config=dict(stop_loss=0.05),
        trades=[(1, 100, 1, 95, "stop_loss")],
        open=None,
    ),
    dict(
        id="take profit inside the entry bar fills at the target",
        rows={1: (100, 112, 99, 111)},
        entries=[0],
        exits=[],
        config=dict(take_profit=0.1),
        trades=[(1, 100, 1, 110, "take_profit")],
        open=None,
    ),
    dict(
        id="stop and target in the entry bar: stop first",
        rows={1: (100, 120, 80, 100)},
        entries=[0],
        exits=[3],
        config=dict(stop_loss=0.05, take_profit=0.1),
        trades=[(1, 100, 1, 95, "stop_loss")],
        open=None,
    ),
    dict(
        id="stop in the entry bar then re-entry from that bar's signal",
        rows={1: (100, 101, 94, 97)},
        entries=[0, 1],
        exits=[],
        config=dict(stop_loss=0.05),
        trades=[(1, 100, 1, 95, "stop_loss")],
        open=(2, 100),
    ),
    dict(
        id="trailing stop in the entry bar tests the entry-price level",
        rows={1: (100, 110, 94, 100)},
        entries=[0],
        exits=[],
        config=dict(trailing_stop=0.05),
        trades=[(1, 100, 1, 95, "trailing_stop")],
        open=None,
    ),
    dict(
        id="entry bar's high moves the trailing level from the next bar on",
        rows={1: (100, 110, 96, 100)},
        entries=[0],
        exits=[],
        config=dict(trailing_stop=0.05),
        trades=[(1, 100, 2, 100, "trailing_stop")],  # bar 2 opens at 100, below 110 * 0.95
        open=None,
    ),
    dict(
        id="slippage beyond the stop distance exits at the entry bar's open",
        entries=[0],
        exits=[],
        config=dict(slippage_bps=600, stop_loss=0.05),  # fill 106, stop 100.7, above the open of 100
        trades=[(1, 106, 1, 94, "stop_loss")],
        open=None,
    ),
    dict(
        id="slippage short of the stop distance: the entry bar's open is above the stop",
        entries=[0],
        exits=[],
        config=dict(slippage_bps=400, stop_loss=0.05),  # fill 104, stop 98.8, below the open of 100
        trades=[],
        open=(1, 104),
    ),
    dict(
        id="signal exit at the open beats the stop in that bar",
        rows={3: (100, 101, 90, 95)},
        entries=[0],
        exits=[2],
        config=dict(stop_loss=0.05),
        trades=[(1, 100, 3, 100, "signal")],
        open=None,
    ),
    dict(
        id="stop exit then re-entry from the same bar's signal",
        rows={2: (100, 101, 94, 97)},
        entries=[0, 2],
        exits=[],
        config=dict(stop_loss=0.05),
        trades=[(1, 100, 2, 95, "stop_loss")],
        open=(3, 100),
    ),
    dict(
        id="stop never hit: open at end",
        entries=[0],
        exits=[],
        config=dict(stop_loss=0.05, take_profit=0.1),
        trades=[],
        open=(1, 100),
    ),
    dict(
        id="trailing stop trails completed highs",
        rows={2: (104, 110, 103, 108), 3: (108, 108, 104, 105)},
        entries=[0],
        exits=[],
        config=dict(trailing_stop=0.05),
        trades=[(1, 100, 3, 104.5, "trailing_stop")],
        open=None,
    ),
    dict(
        id="trailing level ignores the bar's own high",
        rows={2: (100, 110, 104, 108), **dict.fromkeys(range(3, 8), (108, 109, 107, 108))},
        entries=[0],
        exits=[],
        config=dict(trailing_stop=0.05),
        trades=[],
        open=(1, 100),
    ),
    dict(
        id="trailing gap fills at the open",
        rows={2: (104, 110, 103, 108), 3: (100, 101, 99, 100)},
        entries=[0],
        exits=[],
        config=dict(trailing_stop=0.05),
        trades=[(1, 100, 3, 100, "trailing_stop")],
        open=None,
    ),
    dict(
        id="fixed stop above the trailing level is the stop_loss",
        rows={2: (100, 101, 96, 100)},
        entries=[0],
        exits=[],
        config=dict(stop_loss=0.03, trailing_stop=0.05),
        trades=[(1, 100, 2, 97, "stop_loss")],
        open=None,
    ),
    dict(
        id="trailing level above the fixed stop is the trailing_stop",
        rows={2: (104, 110, 103, 108), 3: (108, 108, 104, 105)},
        entries=[0],
        exits=[],
        config=dict(stop_loss=0.03, trailing_stop=0.05),
        trades=[(1, 100, 3, 104.5, "trailing_stop")],
        open=None,
    ),
    dict(
        id="slippage moves signal fills against the trader",
        rows={4: (110, 111, 109, 110)},
        entries=[1],
        exits=[3],
        config=dict(slippage_bps=10),
        trades=[(2, 100 * 1.001, 4, 110 * 0.999, "signal")],
        open=None,
    ),
    dict(
        id="slippage applies to stop levels and entry-based levels",
        rows={2: (100, 101, 94, 97)},
        entries=[0],
        exits=[],
        config=dict(slippage_bps=10, stop_loss=0.05),
        trades=[(1, 100.1, 2, 100.1 * 0.95 * 0.999, "stop_loss")],
        open=None,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_fill_rules(case: dict[str, Any]) -> None:
    candles = grid(case.get("rows"))
    config = BacktestConfig(fee_rate=0.0, **case.get("config", {}))
    result = run_backtest(candles, bars(*case["entries"]), bars(*case["exits"]), config)

    got = [(t.entry_bar, t.entry_price, t.exit_bar, t.exit_price, t.exit_reason) for t in result.trades]
    assert len(got) == len(case["trades"])
    for g, want in zip(got, case["trades"], strict=True):
        assert g[0] == want[0] and g[2] == want[2] and g[4] == want[4]
        assert g[1] == pytest.approx(want[1], rel=1e-12) and g[3] == pytest.approx(want[3], rel=1e-12)
    if case["open"] is None:
        assert result.open_trade is None
    else:
        open_trade = result.open_trade
        assert open_trade is not None
        assert (open_trade.entry_bar, open_trade.exit_bar) == (case["open"][0], None)
        assert open_trade.exit_reason == "end"
        assert open_trade.entry_price == pytest.approx(case["open"][1], rel=1e-12)
        assert open_trade.exit_time is None and open_trade.exit_price is None

    # Without fees, each trade multiplies equity by exit/entry; an open one by last close/entry.
    growth = math.prod(exit_price(t) / t.entry_price for t in result.trades)
    if result.open_trade is not None:
        growth *= candles.close[-1] / result.open_trade.entry_price
    assert result.final_equity == pytest.approx(config.initial_capital * growth, rel=1e-12)
    assert result.equity[-1] == result.final_equity
    assert result.metrics.n_trades == len(case["trades"])


def test_trade_times_are_fill_bar_open_times() -> None:
    candles = grid()
    result = run_backtest(candles, bars(1), bars(3), BacktestConfig())
    trade = result.trades[0]
    assert trade.entry_time == int(candles.open_time[2])
    assert trade.exit_time == int(candles.open_time[4])
    assert all(isinstance(v, int | float | str) for v in dataclasses.asdict(trade).values())


def test_fees_sizing_pnl_and_return() -> None:
    fee = 0.001
    candles = grid({2: (100, 101, 99, 104), 3: (104, 105, 103, 108), 4: (110, 111, 109, 110)})
    result = run_backtest(candles, bars(1), bars(3), BacktestConfig(fee_rate=fee))
    (trade,) = result.trades
    quantity = 10_000 / (100 * (1 + fee))  # notional + entry fee = the whole budget
    entry_fee = quantity * 100 * fee
    exit_fee = quantity * 110 * fee
    pnl = quantity * 110 - exit_fee - (quantity * 100 + entry_fee)
    assert trade.quantity == pytest.approx(quantity, rel=1e-12)
    assert trade.fees == pytest.approx(entry_fee + exit_fee, rel=1e-12)
    assert trade.pnl == pytest.approx(pnl, rel=1e-12)
    assert trade.trade_return == pytest.approx(pnl / 10_000, rel=1e-12)
    # Equity at each close: cash until the fill, then quantity * close, then cash again.
    expected = [10_000, 10_000, quantity * 104, quantity * 108] + [10_000 + pnl] * 4
    np.testing.assert_allclose(result.equity, expected, rtol=1e-12)
    assert result.metrics.total_return == pytest.approx(pnl / 10_000, rel=1e-12)


def test_fees_on_stop_exit() -> None:
    fee = 0.002
    candles = grid({2: (100, 101, 94, 97)})
    result = run_backtest(candles, bars(0), bars(), BacktestConfig(fee_rate=fee, stop_loss=0.05))
    (trade,) = result.trades
    quantity = 10_000 / (100 * (1 + fee))
    assert trade.fees == pytest.approx(quantity * 100 * fee + quantity * 95 * fee, rel=1e-12)
    assert result.final_equity == pytest.approx(quantity * 95 * (1 - fee), rel=1e-12)


@pytest.mark.parametrize("stops", [{}, {"stop_loss": 0.5}], ids=["vectorised", "stop loop"])
def test_position_size_compounds_on_equity(stops: dict[str, float]) -> None:
    # The last bar opens and trades above a 50% stop of the 120 entry, then closes at 60.
    candles = grid({4: (120, 121, 119, 120), 5: (120, 121, 119, 120), 7: (61, 62, 60.5, 60)})
    config = BacktestConfig(fee_rate=0.0, position_size=0.5, **stops)
    result = run_backtest(candles, bars(1, 4), bars(3), config)
    (first,) = result.trades
    assert first.quantity == pytest.approx(5_000 / 100)
    after_first = 10_000 + 50 * (120 - 100)
    assert result.open_trade is not None
    assert result.open_trade.quantity == pytest.approx(0.5 * after_first / 120)
    assert result.final_equity == pytest.approx(after_first / 2 + 0.5 * after_first / 120 * 60)


def test_open_trade_is_marked_without_exit_fee() -> None:
    fee = 0.001
    candles = grid({7: (100, 101, 99, 110)})
    result = run_backtest(candles, bars(0), bars(), BacktestConfig(fee_rate=fee))
    open_trade = result.open_trade
    assert open_trade is not None and result.trades == []
    quantity = 10_000 / (100 * (1 + fee))
    assert open_trade.fees == pytest.approx(quantity * 100 * fee)
    assert open_trade.pnl == pytest.approx(quantity * 110 - 10_000)
    assert result.final_equity == pytest.approx(quantity * 110)
    assert result.metrics.n_trades == 0 and result.metrics.win_rate is None
    assert result.metrics.exposure == pytest.approx(7 / 8)


def test_exposure_counts_bars_ending_in_a_position() -> None:
    result = run_backtest(grid(), bars(1), bars(3), BacktestConfig())
    assert result.metrics.exposure == pytest.approx(2 / 8)  # held at the close of bars 2 and 3


# A random walk whose opens gap off the previous close (0.3%) and whose wicks reach 1%: stops trigger.
RANDOM_MARKET: dict[str, Any] = {"symbol": "RND", "start_ms": 0, "wick": 0.01, "gap": 0.003, "volume": 1.0}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("size,slippage", [(1.0, 0.0), (0.3, 0.0005)])
def test_vectorised_engine_equals_the_loop_without_stops(seed: int, size: float, slippage: float) -> None:
    candles = market_walk(600, seed=seed, **RANDOM_MARKET)
    rng = np.random.default_rng(100 + seed)
    entries, exits = rng.random(600) < 0.08, rng.random(600) < 0.08
    args = (
        candles.open,
        candles.high,
        candles.low,
        candles.close,
        entries,
        exits,
        10_000.0,
        0.001,
        slippage,
        size,
        math.nan,
        math.nan,
        math.nan,
        int(entries.sum()) + 1,
    )
    fast = runner._simulate_signals(
        candles.open, candles.close, entries, exits, 10_000.0, 0.001, slippage, size
    )
    loop = runner._simulate_stops_loop(*args)
    k = loop[7]
    assert k == fast.entry_bar.shape[0] > 5 and bool(loop[8]) == fast.is_open
    np.testing.assert_array_equal(fast.entry_bar, loop[0][:k])
    np.testing.assert_array_equal(fast.exit_bar, loop[1][:k])
    np.testing.assert_allclose(fast.quantity, loop[4][:k], rtol=1e-10)
    np.testing.assert_allclose(fast.equity, loop[6], rtol=1e-10)


@pytest.mark.parametrize("seed", range(4))
def test_compiled_stop_loop_equals_its_python_source(seed: int) -> None:
    candles = market_walk(800, seed=seed, **RANDOM_MARKET)
    rng = np.random.default_rng(200 + seed)
    entries, exits = rng.random(800) < 0.1, rng.random(800) < 0.03
    args = (
        candles.open,
        candles.high,
        candles.low,
        candles.close,
        entries,
        exits,
        10_000.0,
        0.001,
        0.0002,
        1.0,
        0.02,
        0.03,
        0.03,
        int(entries.sum()) + 1,
    )
    compiled = runner._stop_kernel()(*args)
    python = runner._simulate_stops_loop(*args)
    k = python[7]
    assert compiled[7] == k > 10
    reasons = set(python[5][:k].tolist())
    assert reasons == {0, 1, 2, 3}  # every exit kind is exercised
    for got, want in zip(compiled[:6], python[:6], strict=True):
        np.testing.assert_allclose(got[:k], want[:k], rtol=1e-12)
    np.testing.assert_allclose(compiled[6], python[6], rtol=1e-12)  # equity
    assert bool(compiled[8]) == bool(python[8])


def test_equity_stays_positive_and_consistent_with_trades() -> None:
    candles = market_walk(3000, seed=7, **RANDOM_MARKET)
    rng = np.random.default_rng(7)
    entries, exits = rng.random(3000) < 0.05, rng.random(3000) < 0.05
    config = BacktestConfig(stop_loss=0.02, take_profit=0.04, trailing_stop=0.03)
    result = run_backtest(candles, entries, exits, config)
    assert (result.equity > 0).all()
    # Flat after the last closed trade (if nothing is open): equity is capital plus all pnl.
    realised = config.initial_capital + sum(t.pnl for t in result.trades)
    if result.open_trade is None:
        assert result.final_equity == pytest.approx(realised, rel=1e-9)
    else:
        assert result.final_equity == pytest.approx(realised + result.open_trade.pnl, rel=1e-9)
    for trade in result.trades:
        assert trade.exit_bar is not None and trade.exit_bar >= trade.entry_bar
        assert entries[trade.entry_bar - 1]
    assert any(t.exit_bar == t.entry_bar for t in result.trades)  # stops are live on the entry bar


@pytest.mark.parametrize(
    "field,value",
    [
        ("initial_capital", 0.0),
        ("initial_capital", math.nan),
        ("fee_rate", -0.001),
        ("fee_rate", 1.0),
        ("slippage_bps", -1.0),
        ("position_size", 0.0),
        ("position_size", 1.5),
        ("stop_loss", 0.0),
        ("stop_loss", 1.0),
        ("trailing_stop", 1.2),
        ("take_profit", 0.0),
        ("take_profit", -0.1),
        ("take_profit", math.inf),
        ("fee_rate", True),
        ("position_size", "1"),
        ("initial_capital", None),
    ],
)
def test_config_rejects_out_of_range_values(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        BacktestConfig(**{field: value})  # type: ignore[arg-type]  # deliberately out of range or mistyped


def test_config_accepts_defaults_and_stops() -> None:
    config = BacktestConfig(stop_loss=0.05, take_profit=2.0, trailing_stop=0.1, position_size=1.0)
    assert config.has_stops and not BacktestConfig().has_stops


@pytest.mark.parametrize(
    "entries,match",
    [
        (np.zeros(N_BARS, dtype=np.int64), "entries must be a boolean"),
        (np.zeros(N_BARS - 1, dtype=bool), "entries must have one value per candle"),
    ],
)
def test_bad_signals_are_rejected(entries: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        run_backtest(grid(), entries, bars(), BacktestConfig())


def test_empty_candles_are_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        run_backtest(grid().slice(0, 0), np.zeros(0, bool), np.zeros(0, bool), BacktestConfig())


def test_single_bar_and_no_signals() -> None:
    result = run_backtest(grid(n=1), bars(0, n=1), bars(n=1), BacktestConfig())
    assert result.trades == [] and result.open_trade is None
    assert result.final_equity == 10_000
    assert result.metrics.sharpe is None and result.metrics.max_drawdown == 0.0


def test_trade_is_plain_data() -> None:
    fields = {f.name for f in dataclasses.fields(Trade)}
    assert fields == {
        "entry_time",
        "entry_price",
        "exit_time",
        "exit_price",
        "quantity",
        "fees",
        "pnl",
        "trade_return",
        "entry_bar",
        "exit_bar",
        "exit_reason",
    }


def test_warm_up_loads_the_stop_loop() -> None:
    runner.warm_up()
    result = run_backtest(grid({2: (100, 101, 94, 97)}), bars(0), bars(), BacktestConfig(stop_loss=0.05))
    assert [t.exit_reason for t in result.trades] == ["stop_loss"]


@pytest.mark.parametrize("stops", [{}, {"stop_loss": 0.03}])
def test_a_ruined_account_opens_no_more_trades(stops: dict[str, float]) -> None:
    # Slippage of 99.99% per fill wipes the account out on the first round trip; later entries
    # can buy nothing and must not appear as trades with a 0/0 return.
    candles = market_walk(2000, seed=3, **RANDOM_MARKET)
    entries = np.zeros(2000, dtype=bool)
    exits = np.zeros(2000, dtype=bool)
    entries[10::40] = True
    exits[20::40] = True
    result = run_backtest(candles, entries, exits, BacktestConfig(slippage_bps=9999, **stops))
    assert result.trades, "the first trade happened"
    assert all(t.quantity > 0 and math.isfinite(t.trade_return) for t in result.trades)
    assert result.final_equity == pytest.approx(0.0, abs=1e-6)
    assert result.metrics.n_trades == len(result.trades)
