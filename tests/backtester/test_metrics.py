"""Metric definitions (backtester/metrics.py docstring) on tiny hand-computable series, undefined ones too."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest

from backtester.metrics import Metrics, compute_metrics, drawdown

DAY_MS = 86_400_000


def metrics(
    equity: list[float],
    *,
    pnl: list[float] | None = None,
    returns: list[float] | None = None,
    initial: float = 100.0,
    interval: str = "1d",
    close: list[float] | None = None,
    bars_in_position: int = 0,
) -> Metrics:
    n = len(equity)
    step = {"1d": DAY_MS, "1h": DAY_MS // 24}[interval]
    pnl = pnl or []
    return compute_metrics(
        equity=np.array(equity, dtype=float),
        initial_capital=initial,
        open_time=np.arange(n, dtype=np.int64) * step,
        interval=interval,
        close=np.array(close if close is not None else [1.0] * n),
        trade_pnl=np.array(pnl, dtype=float),
        trade_returns=np.array(returns if returns is not None else [0.0] * len(pnl), dtype=float),
        bars_in_position=bars_in_position,
    )


def test_total_return_and_cagr_over_one_year() -> None:
    # 365 daily bars span exactly one 365-day year (first open to last close).
    m = metrics(list(np.linspace(100, 120, 365)))
    assert m.total_return == pytest.approx(0.2)
    assert m.cagr == pytest.approx(0.2)


def test_cagr_compounds_over_two_years() -> None:
    m = metrics([100.0] * 729 + [121.0])
    assert m.cagr == pytest.approx(0.1)


def test_cagr_when_equity_is_wiped_out_and_when_it_overflows() -> None:
    assert metrics([100.0, 50.0, 0.0]).cagr == -1.0
    # A 2-hour span annualised: 10**(4380) overflows a float; undefined, not a huge number.
    assert metrics([100.0, 1000.0], interval="1h").cagr is None


def test_sharpe_and_sortino_by_hand() -> None:
    m = metrics([100.0, 110.0, 99.0, 108.9])  # returns +10%, -10%, +10%
    mean = 1 / 30
    std = math.sqrt(((0.1 - mean) ** 2 * 2 + (-0.1 - mean) ** 2) / 2)  # ddof=1
    downside = math.sqrt(0.01 / 3)  # one -10% among three returns
    assert m.sharpe == pytest.approx(mean / std * math.sqrt(365))
    assert m.sortino == pytest.approx(mean / downside * math.sqrt(365))


def test_annualisation_uses_bars_per_year_of_the_interval() -> None:
    daily = metrics([100.0, 110.0, 99.0, 108.9])
    hourly = metrics([100.0, 110.0, 99.0, 108.9], interval="1h")
    assert daily.sharpe is not None
    assert hourly.sharpe == pytest.approx(daily.sharpe * math.sqrt(24))


@pytest.mark.parametrize(
    "equity",
    [
        pytest.param([100.0] * 5, id="flat"),
        pytest.param(list(100 * 1.01 ** np.arange(6)), id="constant growth"),
        pytest.param([100.0], id="one bar"),
    ],
)
def test_zero_variance_gives_no_sharpe(equity: list[float]) -> None:
    m = metrics(equity)
    assert m.sharpe is None
    assert m.sortino is None  # no negative return either


def test_sortino_none_without_losses_but_sharpe_defined() -> None:
    m = metrics([100.0, 101.0, 103.0, 103.0])
    assert m.sortino is None
    assert m.sharpe is not None and m.sharpe > 0


@pytest.mark.parametrize(
    "equity,initial,max_dd,duration",
    [
        ([100, 120, 90, 100, 130, 117], 100, 0.25, 2),
        ([100, 90, 80], 100, 0.2, 2),
        ([100, 100, 100], 100, 0.0, 0),
        ([100, 110, 120], 100, 0.0, 0),
        ([90, 95, 100, 99], 100, 0.1, 2),  # the running peak starts at the initial capital
        ([100, 80, 100, 80, 80, 80, 100], 100, 0.2, 3),  # recovering to the peak ends a drawdown
    ],
)
def test_drawdown(equity: list[float], initial: float, max_dd: float, duration: int) -> None:
    got_dd, got_duration = drawdown(np.array(equity, dtype=float), initial)
    assert got_dd == pytest.approx(max_dd)
    assert got_duration == duration
    m = metrics([float(e) for e in equity], initial=initial)
    assert m.max_drawdown == pytest.approx(max_dd) and m.max_drawdown_duration == duration


def test_calmar_is_cagr_over_max_drawdown() -> None:
    equity = [100.0] * 364 + [80.0, 110.0]  # 366 days, 20% drawdown
    m = metrics(equity)
    assert m.max_drawdown == pytest.approx(0.2)
    assert m.cagr is not None
    assert m.calmar == pytest.approx(m.cagr / 0.2)
    assert metrics([100.0, 110.0]).calmar is None  # no drawdown


def test_trade_statistics() -> None:
    m = metrics([100.0, 120.0], pnl=[10.0, -5.0, 20.0, -5.0], returns=[0.1, -0.05, 0.2, -0.05])
    assert m.n_trades == 4
    assert m.win_rate == 0.5
    assert m.profit_factor == pytest.approx(30 / 10)
    assert m.expectancy == pytest.approx(5.0)
    assert m.avg_trade_return == pytest.approx(0.05)


@pytest.mark.parametrize(
    "pnl,win_rate,profit_factor",
    [
        ([10.0, 5.0], 1.0, None),  # no losing trade: gross loss 0, profit factor undefined
        ([-10.0, -5.0], 0.0, 0.0),
        ([0.0, -5.0], 0.0, 0.0),  # a zero-pnl trade is not a win
        ([0.0], 0.0, None),
    ],
)
def test_profit_factor_and_win_rate_edges(
    pnl: list[float], win_rate: float, profit_factor: float | None
) -> None:
    m = metrics([100.0, 100.0], pnl=pnl)
    assert m.win_rate == win_rate
    assert m.profit_factor == profit_factor


def test_no_trades_gives_none_not_zero() -> None:
    m = metrics([100.0, 100.0, 100.0])
    assert m.n_trades == 0
    assert (m.win_rate, m.profit_factor, m.expectancy, m.avg_trade_return) == (None, None, None, None)
    assert m.total_return == 0.0 and m.max_drawdown == 0.0 and m.exposure == 0.0


def test_exposure_and_buy_and_hold() -> None:
    m = metrics([100.0] * 4, close=[50.0, 60.0, 55.0, 75.0], bars_in_position=3)
    assert m.exposure == 0.75
    assert m.buy_and_hold_return == pytest.approx(0.5)


def test_values_are_plain_json_types() -> None:
    m = metrics([100.0, 110.0, 99.0, 108.9], pnl=[1.0, -2.0], returns=[0.01, -0.02], bars_in_position=2)
    values: dict[str, Any] = dataclasses.asdict(m)
    assert all(v is None or type(v) in (float, int) for v in values.values())
    assert type(m.n_trades) is int and type(m.max_drawdown_duration) is int
