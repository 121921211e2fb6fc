"""Proof against the reference: our engine and backtesting.py's FractionalBacktest agree on real data.

Same data, same SMA 10/20 crossover signals (fed to both engines), long-only, fee 0.001 per side, fills at
the next open, fractional units, fully invested (and half invested): the trade list (bars, times, prices,
sizes, pnl) and the final equity agree to 1e-6 relative. backtesting.py is AGPL and only used here and in
the bench, never by runtime code.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from backtesting import Strategy
from backtesting.lib import FractionalBacktest
from backtesting.test import EURUSD, GOOG

from backtester.data import Candles
from backtester.runner import BacktestConfig, BacktestResult, run_backtest
from backtester.strategies import BUILTINS

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
RTOL = 1e-6
FEE = 0.001


class ReplaySignals(Strategy):
    """Trades precomputed signals with our precedence: exit when in a position, else enter (not on a tie)."""

    entries: np.ndarray | None = None
    exits: np.ndarray | None = None
    size: float = 1.0

    def init(self) -> None:
        pass

    def next(self) -> None:
        assert self.entries is not None and self.exits is not None
        i = len(self.data) - 1
        if self.position:
            if self.exits[i]:
                self.position.close()
        elif self.entries[i] and not self.exits[i]:
            if self.size >= 1:
                self.buy()  # backtesting.py reads size=1 as one unit; its default means all equity
            else:
                self.buy(size=self.size)


def to_candles(frame: pd.DataFrame, interval: str) -> Candles:
    times = frame.index.as_unit("ms").asi8
    cols = (frame[c].to_numpy(np.float64) for c in ("Open", "High", "Low", "Close", "Volume"))
    return Candles("REF", interval, times, *cols, "file")


def shared_csv(name: str) -> pd.DataFrame:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is absent (real market data lives outside the repo; a fresh clone has none)")
    raw = pd.read_csv(path)
    frame = raw.rename(columns=str.capitalize).drop(columns="Timestamp")
    frame.index = pd.DatetimeIndex(pd.to_datetime(raw["timestamp"]))
    return frame


DATASETS = {
    "GOOG 1d": (lambda: GOOG, "1d"),
    "EURUSD 1h": (lambda: EURUSD, "1h"),
    "BTC_USDT 2h": (lambda: shared_csv("BTC_USDT_2h.csv"), "2h"),
    "BTC_USDT 1d": (lambda: shared_csv("BTC_USDT_1d.csv"), "1d"),
    "ETH_USDT 2h": (lambda: shared_csv("ETH_USDT_2h.csv"), "2h"),
}


def run_both(frame: pd.DataFrame, interval: str, size: float) -> tuple[BacktestResult, pd.Series, Candles]:
    candles = to_candles(frame, interval)
    sma = BUILTINS["sma_crossover"]
    entries, exits = sma.signals(candles, sma.make_params({"fast": 10, "slow": 20}))
    ours = run_backtest(candles, entries, exits, BacktestConfig(fee_rate=FEE, position_size=size))
    bt = FractionalBacktest(frame, ReplaySignals, cash=10_000, commission=FEE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "some trades remain open": we compare the open position separately
        stats = bt.run(entries=entries, exits=exits, size=size)
    return ours, stats, candles


@pytest.mark.parametrize("size", [1.0, 0.5], ids=["all-in", "half"])
@pytest.mark.parametrize("dataset", list(DATASETS))
def test_trades_and_final_equity_match_backtesting_py(dataset: str, size: float) -> None:
    load, interval = DATASETS[dataset]
    ours, stats, candles = run_both(load(), interval, size)
    theirs = stats["_trades"]

    assert len(ours.trades) == len(theirs) > 5
    np.testing.assert_array_equal([t.entry_bar for t in ours.trades], theirs["EntryBar"].to_numpy())
    np.testing.assert_array_equal([t.exit_bar for t in ours.trades], theirs["ExitBar"].to_numpy())
    np.testing.assert_array_equal(
        [t.entry_time for t in ours.trades], pd.DatetimeIndex(theirs["EntryTime"]).as_unit("ms").asi8
    )
    np.testing.assert_array_equal(
        [t.exit_time for t in ours.trades], pd.DatetimeIndex(theirs["ExitTime"]).as_unit("ms").asi8
    )
    for column, ours_values in (
        ("EntryPrice", [t.entry_price for t in ours.trades]),
        ("ExitPrice", [t.exit_price for t in ours.trades]),
        ("Size", [t.quantity for t in ours.trades]),
        ("Commission", [t.fees for t in ours.trades]),
    ):
        np.testing.assert_allclose(ours_values, theirs[column].to_numpy(), rtol=RTOL, err_msg=column)
    # A trade's pnl can be near zero, so it is compared relative to the trade's notional.
    notional = np.array([t.quantity * t.entry_price for t in ours.trades])
    pnl_gap = np.abs(np.array([t.pnl for t in ours.trades]) - theirs["PnL"].to_numpy())
    assert (pnl_gap <= RTOL * notional).all()

    assert ours.final_equity == pytest.approx(stats["Equity Final [$]"], rel=RTOL)
    np.testing.assert_allclose(ours.equity, stats["_equity_curve"]["Equity"].to_numpy(), rtol=RTOL)
    assert ours.metrics.max_drawdown == pytest.approx(-stats["Max. Drawdown [%]"] / 100, rel=RTOL)
    assert ours.metrics.buy_and_hold_return == pytest.approx(stats["Buy & Hold Return [%]"] / 100, rel=RTOL)
    # An open position at the end: backtesting.py keeps it out of its trade list too.
    still_open = len(stats["_strategy"]._broker.trades) > 0
    assert (ours.open_trade is not None) == still_open
    assert len(candles) == len(ours.equity)


def test_missing_shared_data_skips_with_a_reason(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys.modules[__name__], "SHARED_DATA", tmp_path / "shared" / "data")
    with pytest.raises(pytest.skip.Exception, match="absent"):
        shared_csv("BTC_USDT_2h.csv")
