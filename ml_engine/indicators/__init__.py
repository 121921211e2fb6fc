"""The project's one indicator library: TA-Lib-compatible, vectorised, causal technical indicators.

Used by the backtester, the strategy engine and the ML features; no other module computes indicators.
This package re-exports the public names; the modules each hold one part:

* ``api``: the public functions (``sma`` ... ``vwap``): argument checks, leading-NaN skip, dispatch;
* ``registry``: ``INDICATORS`` (name -> ``IndicatorSpec``: inputs, parameters with ranges, output
  names, warm-up) for the strategy engine, and ``compute``, which runs one by name from a candles
  mapping;
* ``cores``: one core per indicator, NaN-free arrays in, full-length outputs out;
* ``kernels``: the vectorised building blocks (rolling windows, BLAS products, recursive filters);
* ``workspace``: scratch memory, ``SCRATCH_POOL`` (the process's buffer pool) and ``Workspace``;
* ``inputs``: turning arguments into float64 arrays and checked periods.

Conventions shared by every function:

* Inputs are 1-D numpy arrays or pandas Series (anything ``np.asarray`` accepts); outputs are fresh
  float64 numpy arrays of the input's length, NaN exactly where TA-Lib returns NaN (its warm-up) and
  equal to TA-Lib's values after it: to 1e-8 relative (tested; ~1e-13 typical), bit for bit for
  OBV, ROC, Donchian. Sums run in another order than TA-Lib's loops, so a value TA-Lib gets
  exactly (e.g. MACD line == signal on a perfectly straight price line) may differ in the last bit.
* Causal: the value at bar t uses only bars 0..t; the values on a prefix of a series are
  bit-identical to the first values on the whole series.
* Leading NaNs are skipped the way the ``talib`` wrapper does (computation starts at the first bar
  where every input is a number). A NaN after that makes every output that depends on it NaN: for
  the recursive indicators (EMA, WMA, RSI, ATR, ADX, MACD, OBV) that is every later bar, as in
  TA-Lib's running sums; for the window indicators only the windows that contain it.
* Periods are integers; a period below the minimum TA-Lib accepts raises ValueError.
* Vectorised: no Python loop over bars (the few loops run over chunks of 2**18 bars, over the lags
  of a window, or over blocks of BLAS calls). Rolling sums/extremes use doubling over power-of-two
  windows (log2(period) whole-array operations, pairwise-accurate: no cumulative-sum
  cancellation); the recursive filters (EMA, Wilder) run blockwise as small matrix products (see
  ``kernels.ar1``). Scratch arrays are recycled between calls (see ``workspace.Workspace``).
"""

from __future__ import annotations

from ml_engine.indicators.api import (
    adx,
    atr,
    bollinger,
    cci,
    donchian,
    ema,
    macd,
    obv,
    roc,
    rsi,
    sma,
    stochastic,
    vwap,
    williams_r,
    wma,
)
from ml_engine.indicators.registry import INDICATORS, IndicatorSpec, ParamSpec, compute

__all__ = [
    "INDICATORS",
    "IndicatorSpec",
    "ParamSpec",
    "adx",
    "atr",
    "bollinger",
    "cci",
    "compute",
    "donchian",
    "ema",
    "macd",
    "obv",
    "roc",
    "rsi",
    "sma",
    "stochastic",
    "vwap",
    "williams_r",
    "wma",
]
