"""The public indicator functions: argument checks, the leading-NaN skip and a workspace, then the core.

Each function validates its periods, turns its inputs into float64 arrays of one length and runs its
core (``cores``) from the first bar where every input is a number, with scratch lent by
``SCRATCH_POOL``; the outputs are fresh arrays, NaN before that bar.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ml_engine.indicators.cores import (
    adx_core,
    atr_core,
    bollinger_core,
    cci_core,
    donchian_core,
    ema_core,
    macd_core,
    obv_core,
    roc_core,
    rsi_core,
    sma_core,
    stochastic_core,
    vwap_core,
    williams_r_core,
    wma_core,
)
from ml_engine.indicators.inputs import FloatArray, check_period, first_valid, input_arrays
from ml_engine.indicators.workspace import SCRATCH_POOL, BufferPool, Workspace


def _run(
    core: Callable[..., tuple[FloatArray, ...]],
    arrays: list[FloatArray],
    *params: Any,
    pool: BufferPool = SCRATCH_POOL,
) -> tuple[FloatArray, ...]:
    """Run ``core`` from the first bar with all inputs present, NaN before it, on scratch from ``pool``."""
    start = first_valid(arrays)
    with Workspace(pool) as ws:
        if start == 0:
            return core(ws, *arrays, *params)
        outputs = core(ws, *(arr[start:] for arr in arrays), *params)
    head = np.full(start, np.nan)
    return tuple(np.concatenate((head, out)) for out in outputs)


def sma(x: ArrayLike, period: int) -> FloatArray:
    """Simple moving average (TA-Lib SMA): mean of the last ``period`` values; warm-up period - 1."""
    p = check_period("period", period, 1)
    return _run(sma_core, input_arrays(x=x), p)[0]


def ema(x: ArrayLike, period: int) -> FloatArray:
    """Exponential moving average (TA-Lib EMA): k = 2/(period+1), seeded at bar period-1 with the SMA
    of the first ``period`` values; warm-up period - 1."""
    p = check_period("period", period, 1)
    return _run(ema_core, input_arrays(x=x), p)[0]


def wma(x: ArrayLike, period: int) -> FloatArray:
    """Linearly weighted moving average (TA-Lib WMA): weights 1..period, newest heaviest; warm-up
    period - 1."""
    p = check_period("period", period, 1)
    return _run(wma_core, input_arrays(x=x), p)[0]


def rsi(close: ArrayLike, period: int = 14) -> FloatArray:
    """Relative strength index (TA-Lib RSI): Wilder-smoothed gains/losses seeded with their simple
    mean over the first ``period`` changes, 100*gain/(gain+loss), 0 when nothing moved; warm-up period."""
    p = check_period("period", period, 2)
    return _run(rsi_core, input_arrays(close=close), p)[0]


def macd(
    close: ArrayLike, fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """MACD (TA-Lib MACD) -> (macd, signal, hist): EMA(fast) - EMA(slow), both started at bar slow-1
    (fast EMA seeded with the mean of its last ``fast`` bars there), signal = EMA(signal) of the line
    seeded with its SMA; all three NaN for the first slow+signal-2 bars. Requires fast <= slow
    (TA-Lib silently swaps them; a reversed pair is rejected here instead)."""
    f = check_period("fast", fast, 2)
    s = check_period("slow", slow, 2)
    g = check_period("signal", signal, 1)
    if f > s:
        raise ValueError(f"fast must be <= slow, got fast={f}, slow={s}")
    m, sig, hist = _run(macd_core, input_arrays(close=close), f, s, g)
    return m, sig, hist


def bollinger(
    close: ArrayLike, period: int = 20, k: float = 2.0
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Bollinger bands (TA-Lib BBANDS with SMA) -> (upper, middle, lower): SMA +/- k population
    standard deviations of the last ``period`` closes; warm-up period - 1."""
    p = check_period("period", period, 2)
    if isinstance(k, bool) or not isinstance(k, int | float | np.integer | np.floating):
        raise ValueError(f"k must be a number, got {k!r}")
    if not (np.isfinite(k) and k >= 0):
        raise ValueError(f"k must be finite and >= 0, got {k}")
    upper, middle, lower = _run(bollinger_core, input_arrays(close=close), p, float(k))
    return upper, middle, lower


def atr(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> FloatArray:
    """Average true range (TA-Lib ATR): Wilder smoothing of the true range, seeded with the mean true
    range of bars 1..period; warm-up period."""
    p = check_period("period", period, 1)
    return _run(atr_core, input_arrays(high=high, low=low, close=close), p)[0]


def stochastic(
    high: ArrayLike, low: ArrayLike, close: ArrayLike, k_period: int = 14, d_period: int = 3
) -> tuple[FloatArray, FloatArray]:
    """Fast stochastic (TA-Lib STOCHF(k_period, d_period, SMA)) -> (k, d): k = 100*(close - lowest
    low)/(highest high - lowest low) over ``k_period`` bars (0 for a flat window), d = SMA(k, d_period);
    both NaN for the first k_period+d_period-2 bars (TA-Lib aligns the outputs)."""
    kp = check_period("k_period", k_period, 1)
    dp = check_period("d_period", d_period, 1)
    k, d = _run(stochastic_core, input_arrays(high=high, low=low, close=close), kp, dp)
    return k, d


def obv(close: ArrayLike, volume: ArrayLike) -> FloatArray:
    """On-balance volume (TA-Lib OBV): starts at the first bar's volume, then adds the volume on up
    closes and subtracts it on down closes; no warm-up."""
    return _run(obv_core, input_arrays(close=close, volume=volume))[0]


def roc(x: ArrayLike, period: int) -> FloatArray:
    """Rate of change in percent (TA-Lib ROC): 100*(x/x[t-period] - 1), 0 when x[t-period] is 0;
    warm-up period."""
    p = check_period("period", period, 1)
    return _run(roc_core, input_arrays(x=x), p)[0]


def williams_r(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> FloatArray:
    """Williams %R (TA-Lib WILLR): -100*(highest high - close)/(highest high - lowest low) over
    ``period`` bars, 0 for a flat window; warm-up period - 1."""
    p = check_period("period", period, 2)
    return _run(williams_r_core, input_arrays(high=high, low=low, close=close), p)[0]


def cci(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 20) -> FloatArray:
    """Commodity channel index (TA-Lib CCI): (typical - SMA(typical)) / (0.015 * mean absolute
    deviation), typical = (high+low+close)/3, 0 when either is 0; warm-up period - 1."""
    p = check_period("period", period, 2)
    return _run(cci_core, input_arrays(high=high, low=low, close=close), p)[0]


def adx(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> FloatArray:
    """Average directional index (TA-Lib ADX): Wilder sums of +DM/-DM/TR (first over bars 1..period-1),
    DX from bar ``period``, ADX = mean of the first ``period`` DX then Wilder-smoothed; warm-up
    2*period - 1."""
    p = check_period("period", period, 2)
    return _run(adx_core, input_arrays(high=high, low=low, close=close), p)[0]


def donchian(high: ArrayLike, low: ArrayLike, period: int) -> tuple[FloatArray, FloatArray]:
    """Donchian channel -> (upper, lower): highest high and lowest low of the last ``period`` bars,
    current bar included (TA-Lib MAX(high) / MIN(low)); warm-up period - 1."""
    p = check_period("period", period, 1)
    upper, lower = _run(donchian_core, input_arrays(high=high, low=low), p)
    return upper, lower


def vwap(high: ArrayLike, low: ArrayLike, close: ArrayLike, volume: ArrayLike, period: int) -> FloatArray:
    """Rolling volume-weighted average price: sum(typical*volume)/sum(volume) over the last ``period``
    bars, typical = (high+low+close)/3 (TA-Lib SUM(TYPPRICE*volume)/SUM(volume)); NaN where the
    window's volume is 0; warm-up period - 1."""
    p = check_period("period", period, 1)
    return _run(vwap_core, input_arrays(high=high, low=low, close=close, volume=volume), p)[0]
