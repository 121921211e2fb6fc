"""Backtest metrics: the definition of every number a backtest reports, computed from equity and trades.

Conventions: returns, drawdowns, rates and exposure are fractions (0.12 means 12%); durations are in bars;
money is in quote currency. A metric that is undefined for the input is None, never a huge or fake number.

Inputs: ``equity`` is the per-bar equity marked at each bar's close (the engine starts it at
``initial_capital``), ``trade_pnl`` / ``trade_returns`` are the closed trades' pnl (after fees) and returns.

Definitions (r = per-bar equity returns ``equity[t] / equity[t-1] - 1`` for t >= 1, risk-free rate 0;
N = bars_per_year(interval) on a 365-day crypto calendar):

* total_return: ``equity[-1] / initial_capital - 1`` (an open position valued at the last close).
* cagr: ``(equity[-1] / initial_capital) ** (1 / years) - 1``; years = (last open time + one interval -
  first open time) / 365 days, i.e. from the first bar's open to the last bar's close. -1 when equity ends
  at 0 or below; None when the result overflows (a tiny span annualised).
* sharpe: ``mean(r) / std(r, ddof=1) * sqrt(N)``; None with fewer than 2 returns or zero variance (a
  standard deviation below 1e-9 of |mean(r)| is float noise and counts as zero).
* sortino: ``mean(r) / sqrt(mean(min(r, 0) ** 2)) * sqrt(N)``; None with no returns or no negative return.
  Both ratios are None when any per-bar return is not finite (equity at 0 or bad prices).
* max_drawdown: largest ``1 - equity / running peak`` as a positive magnitude (0.25 = 25%); the running
  peak starts at initial_capital. 0.0 when equity never falls below a previous peak.
* max_drawdown_duration: most consecutive bars with equity below its running peak. 0 when never below.
* calmar: ``cagr / max_drawdown``; None when cagr is None or max_drawdown is 0.
* win_rate: closed trades with pnl > 0 / closed trades; None without closed trades.
* profit_factor: gross profit / gross loss of closed trades in quote currency (sum of positive pnl over
  minus the sum of negative pnl); None when there is no losing trade (gross loss 0), 0.0 with no winner.
* expectancy: mean pnl per closed trade in quote currency; None without closed trades.
* avg_trade_return: mean trade_return of closed trades; None without closed trades.
* n_trades: number of closed trades (an open position at the end is not counted).
* exposure: bars that end in a position / all bars.
* buy_and_hold_return: ``close[-1] / close[0] - 1``, no fees.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from utils.intervals import bars_per_year, interval_ms

_YEAR_MS = 365 * 24 * 60 * 60 * 1000
# Below this fraction of |mean|, a standard deviation is rounding noise of a constant series.
_NOISE = 1e-9


# Each metric in one sentence, for people (reports print them beside the numbers); the exact rules are
# the module docstring's.
DEFINITIONS: dict[str, str] = {
    "total_return": "Final equity over the initial capital, minus 1; an open position is valued at the last "
    "close.",
    "cagr": "Compound annual growth rate: the total growth spread evenly over the years from the first bar's "
    "open to the last bar's close (365-day years).",
    "sharpe": "Mean per-bar return over its standard deviation, annualised by the square root of bars per "
    "year; risk-free rate 0.",
    "sortino": "Like the Sharpe ratio, but divided by the downside deviation (only losing bars count as "
    "risk).",
    "max_drawdown": "Largest fall of equity below its running peak (the capital counts as a peak), as a "
    "fraction of that peak.",
    "max_drawdown_duration": "Most consecutive bars spent below a previous equity peak.",
    "calmar": "CAGR divided by the maximum drawdown.",
    "win_rate": "Closed trades with a positive pnl (after fees), over all closed trades.",
    "profit_factor": "Gross profit over gross loss of the closed trades, in quote currency; undefined "
    "without a losing trade.",
    "expectancy": "Mean pnl of a closed trade after fees, in quote currency.",
    "avg_trade_return": "Mean return of a closed trade: its pnl over the notional plus entry fee it "
    "committed.",
    "n_trades": "Closed round trips; a position still open at the end is not counted.",
    "exposure": "Share of bars that end in a position.",
    "buy_and_hold_return": "Last close over first close, minus 1, with no fees: holding the asset instead.",
    "final_equity": "Cash plus the position marked at the last close, in quote currency.",
}


@dataclass(frozen=True, slots=True)
class Metrics:
    """Summary statistics of one backtest; definitions in the module docstring."""

    total_return: float
    cagr: float | None
    sharpe: float | None
    sortino: float | None
    max_drawdown: float
    max_drawdown_duration: int
    calmar: float | None
    win_rate: float | None
    profit_factor: float | None
    expectancy: float | None
    avg_trade_return: float | None
    n_trades: int
    exposure: float
    buy_and_hold_return: float


def compute_metrics(
    *,
    equity: np.ndarray,
    initial_capital: float,
    open_time: np.ndarray,
    interval: str,
    close: np.ndarray,
    trade_pnl: np.ndarray,
    trade_returns: np.ndarray,
    bars_in_position: int,
) -> Metrics:
    """All metrics for one backtest. `equity`, `open_time` and `close` have one value per bar (n >= 1)."""
    equity = np.asarray(equity, dtype=np.float64)
    n = equity.shape[0]
    if n == 0:
        raise ValueError("equity must have at least one bar")
    trade_pnl = np.asarray(trade_pnl, dtype=np.float64)
    trade_returns = np.asarray(trade_returns, dtype=np.float64)
    growth = float(equity[-1]) / initial_capital
    years = (int(open_time[-1]) - int(open_time[0]) + interval_ms(interval)) / _YEAR_MS
    cagr = _cagr(growth, years)
    (max_dd, max_dd_bars), (sharpe, sortino) = equity_risk(equity, initial_capital, bars_per_year(interval))
    n_trades = int(trade_pnl.shape[0])
    gross_profit = float(trade_pnl[trade_pnl > 0].sum())
    gross_loss = -float(trade_pnl[trade_pnl < 0].sum())
    return Metrics(
        total_return=growth - 1.0,
        cagr=cagr,
        sharpe=sharpe,
        sortino=sortino,
        max_drawdown=max_dd,
        max_drawdown_duration=max_dd_bars,
        calmar=_finite(cagr / max_dd) if cagr is not None and max_dd > 0 else None,
        win_rate=float(np.count_nonzero(trade_pnl > 0)) / n_trades if n_trades else None,
        profit_factor=_finite(gross_profit / gross_loss) if gross_loss > 0 else None,
        expectancy=_finite(float(trade_pnl.mean())) if n_trades else None,
        avg_trade_return=_finite(float(trade_returns.mean())) if n_trades else None,
        n_trades=n_trades,
        exposure=bars_in_position / n,
        buy_and_hold_return=float(close[-1]) / float(close[0]) - 1.0,
    )


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _cagr(growth: float, years: float) -> float | None:
    if not years > 0 or not math.isfinite(growth):
        return None
    if growth <= 0:
        return -1.0
    try:
        return _finite(growth ** (1.0 / years) - 1.0)
    except OverflowError:
        return None


def per_bar_returns(equity: np.ndarray) -> np.ndarray:
    """equity[t] / equity[t-1] - 1 for t >= 1."""
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = np.divide(equity[1:], equity[:-1])
    returns -= 1.0
    return np.asarray(returns)


def risk_ratios(returns: np.ndarray, periods_per_year: float) -> tuple[float | None, float | None]:
    """(sharpe, sortino) of per-bar returns, annualised; definitions and None cases in the module doc."""
    m = returns.shape[0]
    if m < 1:
        return None, None
    total = float(returns.sum())
    if not math.isfinite(total):  # an inf or NaN return anywhere makes the sum non-finite
        return None, None
    mean = total / m
    # One scratch buffer for both ratios (a million bars makes each array 8 MB, and fresh memory is
    # slow). Squares are summed in place rather than with np.dot: BLAS threads stall when the CPUs are
    # busy, and one pass over 8 MB does not need them.
    work = np.minimum(returns, 0.0)
    downside_squares = float(np.square(work, out=work).sum())
    centred_squares = math.nan
    if m >= 2:
        np.subtract(returns, mean, out=work)
        centred_squares = float(np.square(work, out=work).sum())
    return _ratios(m, total, downside_squares, centred_squares, periods_per_year)


def _ratios(
    m: int, total: float, downside_squares: float, centred_squares: float, periods_per_year: float
) -> tuple[float | None, float | None]:
    """(sharpe, sortino) from the sums over `m` finite returns: of the returns, of their negative parts
    squared, and of their squared distances from the mean (NaN when m < 2)."""
    mean = total / m
    scale = math.sqrt(periods_per_year)
    downside_dev = math.sqrt(downside_squares / m)
    sortino = _finite(mean / downside_dev * scale) if downside_dev > 0.0 else None
    sharpe = None
    if m >= 2:
        std = math.sqrt(centred_squares / (m - 1))
        if std > 0.0 and std > _NOISE * abs(mean):
            sharpe = _finite(mean / std * scale)
    return sharpe, sortino


def running_peak(equity: np.ndarray, initial: float | None = None) -> np.ndarray:
    """The highest equity so far at each bar; with `initial`, the peak starts there (the capital the
    curve started from counts as a peak), else at the curve's first value."""
    peak = np.maximum.accumulate(equity)
    if initial is not None:
        np.maximum(peak, initial, out=peak)
    return peak


def drawdown_series(equity: np.ndarray | Sequence[float], initial: float | None = None) -> np.ndarray:
    """Per bar, ``(peak - equity) / peak`` with the running peak of `running_peak`: 0.25 is 25% below
    it; 0 where the peak is not positive."""
    values = np.asarray(equity, dtype=np.float64)
    peak = running_peak(values, initial)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(peak > 0, (peak - values) / peak, 0.0)


def max_drawdown(equity: np.ndarray | Sequence[float], initial: float | None = None) -> tuple[float, float]:
    """(largest, last) of `drawdown_series`; (0.0, 0.0) for an empty curve."""
    if len(equity) == 0:
        return 0.0, 0.0
    series = drawdown_series(equity, initial)
    return float(series.max()), float(series[-1])


# From this many bars on, the drawdown and the risk ratios come from one compiled pass over the curve
# (numba, loaded on first use from its disk cache): the array versions make about a dozen passes over the
# curve and its returns, with three 8 MB temporaries on a million bars, where memory traffic, not
# arithmetic, is the cost, and two workers on two cores share that traffic. Below it numba's import would
# cost more than it saves.
_COMPILED_FROM_BARS = 100_000


def equity_risk(
    equity: np.ndarray, initial_capital: float, periods_per_year: float
) -> tuple[tuple[float, int], tuple[float | None, float | None]]:
    """((max drawdown, its duration) as `drawdown` gives them, (sharpe, sortino) as `risk_ratios` gives
    them for the curve's per-bar returns). On a long curve both come from one compiled pass: the drawdown
    with the same bits, the ratios with the same per-bar returns summed in another order (a few units in
    the last place of a float apart)."""
    if equity.shape[0] >= _COMPILED_FROM_BARS and equity.dtype == np.float64:
        lowest, longest, finite, total, downside, centred = _equity_kernel()(equity, float(initial_capital))
        worst = (0.0, 0) if longest == 0 else (1.0 - lowest, longest)
        if not finite:  # a NaN (or inf / inf) takes the array version, whose NaN rules are numpy's
            worst = _drawdown_arrays(equity, initial_capital)
        if not math.isfinite(total):  # an inf or NaN return anywhere makes the sum non-finite
            return worst, (None, None)
        return worst, _ratios(equity.shape[0] - 1, total, downside, centred, periods_per_year)
    return _drawdown_arrays(equity, initial_capital), risk_ratios(per_bar_returns(equity), periods_per_year)


def drawdown(equity: np.ndarray, initial_capital: float) -> tuple[float, int]:
    """(max drawdown as a positive fraction, most consecutive bars below the running peak), the peak
    starting at the initial capital. The fraction is ``1 - equity / peak`` (the metrics' definition,
    the same number as `max_drawdown` up to rounding). Both ways of computing it give the same bits."""
    if equity.shape[0] >= _COMPILED_FROM_BARS and equity.dtype == np.float64:
        return equity_risk(equity, initial_capital, 1.0)[0]
    return _drawdown_arrays(equity, initial_capital)


def _equity_pass(equity: np.ndarray, initial: float) -> tuple[float, int, bool, float, float, float]:
    """A curve of n >= 2 values: (lowest equity / peak, longest run below the peak, no NaN met in the
    drawdown, then the sums over the n - 1 per-bar returns: of the returns, of their negative parts
    squared, of their squared distances from the mean; those two NaN when a return is not finite).

    The drawdown makes the array version's operations (a running maximum, one division per bar), so it
    gives its results. Each return is the array version's ``equity[t] / equity[t-1] - 1``; each sum runs
    over eight interleaved accumulators, as numpy's pairwise sums do within a block, which keeps its
    rounding error as small and lets the additions overlap.
    """
    n = equity.shape[0]
    peak = initial
    lowest = np.inf
    run = 0
    longest = 0
    finite = True
    for i in range(n):
        value = equity[i]
        if value != value or peak != peak:
            finite = False
            break
        if value > peak:
            peak = value
        ratio = value / peak
        if ratio != ratio:  # inf / inf: numpy's min would be NaN
            finite = False
            break
        if ratio < lowest:
            lowest = ratio
        if value < peak:
            run += 1
            if run > longest:
                longest = run
        else:
            run = 0
    m = n - 1
    returns = np.empty(m)
    for j in range(m):
        returns[j] = equity[j + 1] / equity[j] - 1.0
    whole = m - m % 8
    sums = np.zeros(8)
    for j in range(0, whole, 8):
        for k in range(8):
            sums[k] += returns[j + k]
    for j in range(whole, m):
        sums[0] += returns[j]
    total = ((sums[0] + sums[1]) + (sums[2] + sums[3])) + ((sums[4] + sums[5]) + (sums[6] + sums[7]))
    if not np.isfinite(total):
        return lowest, longest, finite, total, np.nan, np.nan
    mean = total / m
    down = np.zeros(8)
    centred = np.zeros(8)
    for j in range(0, whole, 8):
        for k in range(8):
            r = returns[j + k]
            low = min(r, 0.0)
            down[k] += low * low
            d = r - mean
            centred[k] += d * d
    for j in range(whole, m):
        r = returns[j]
        low = min(r, 0.0)
        down[0] += low * low
        d = r - mean
        centred[0] += d * d
    downside = ((down[0] + down[1]) + (down[2] + down[3])) + ((down[4] + down[5]) + (down[6] + down[7]))
    spread = ((centred[0] + centred[1]) + (centred[2] + centred[3])) + (
        (centred[4] + centred[5]) + (centred[6] + centred[7])
    )
    return lowest, longest, finite, total, downside, spread


@functools.cache
def _equity_kernel() -> Callable[[np.ndarray, float], tuple[float, int, bool, float, float, float]]:
    import numba

    # error_model="numpy": a division by a zero peak or equity gives inf or NaN as numpy's does, never
    # raises.
    compiled: Callable[[np.ndarray, float], tuple[float, int, bool, float, float, float]] = numba.njit(
        cache=True, nogil=True, error_model="numpy"
    )(_equity_pass)
    return compiled


def _drawdown_arrays(equity: np.ndarray, initial_capital: float) -> tuple[float, int]:
    peak = running_peak(equity, initial_capital)
    below = equity < peak
    if not below.any():
        return 0.0, 0
    max_dd = 1.0 - float(np.divide(equity, peak, out=peak).min())  # peak's buffer is free now
    # Runs of consecutive underwater bars: split the bars where `below` flips, keep the underwater runs.
    flips = np.flatnonzero(below[1:] != below[:-1]) + 1
    run_lengths = np.diff(flips, prepend=0, append=equity.shape[0])
    underwater = run_lengths[0::2] if below[0] else run_lengths[1::2]
    return max_dd, int(underwater.max())
