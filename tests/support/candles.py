"""Synthetic candles shared by the test packages: random walks and AR(1) series, hand-made series, edited
copies, real frames converted, the offline sample, and rows as the candle store takes them.

`ohlcv` opens each bar at the previous close by default, so holding from bar t+1's open to its close
earns exactly the close-to-close log return of bar t+1; ``gap`` moves each open off the previous close
(so a fill at the next open and one at the decision's close differ). Open times start on a whole hour.

Every builder is deterministic in its seed; tests calibrated on a series (the ml_engine honesty bands,
the replay and voter statistics) depend on its exact draws, so a builder's draw order never changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from utils.intervals import interval_ms
from utils.market_data.candles import Candles, DataSource
from utils.market_data.sample import PROFILES, generate

HOUR_MS = 3_600_000
START_MS = 444_444 * HOUR_MS  # 2020-09-13 12:00 UTC, a whole hour
SEPT_2020_MS = 1_600_000_000_000  # 2020-09-13 12:26:40 UTC: where the plain walks below start


def ohlcv(
    symbol: str,
    close: np.ndarray,
    *,
    volume: float | np.ndarray | None = None,
    start_ms: int = START_MS,
    interval: str = "1h",
    first_open: float | None = None,
    gap: float = 0.0,
    wick: float = 0.002,
    seed: int = 0,
    rng: np.random.Generator | None = None,
) -> Candles:
    """Candles with these closes: each opens at the previous close (the first at `first_open`, default its
    own close) times exp(N(0, gap)), high and low up to `wick` (0.2%) beyond both; volume given (one number
    for every bar, or one per bar) or log-normal. The draws (gaps, highs, lows, volumes, in that order)
    come from `rng`, else from a new generator seeded `seed`."""
    close = np.asarray(close, dtype=np.float64)
    n = int(close.shape[0])
    rng = np.random.default_rng(seed) if rng is None else rng
    start = close[0] if first_open is None else first_open
    open_ = np.concatenate(([start], close[:-1])) if n else close.copy()
    if gap:
        open_ = open_ * np.exp(rng.normal(0.0, gap, n))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, wick, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, wick, n))
    vol = rng.lognormal(2.0, 0.5, n) if volume is None else np.full(n, volume, dtype=np.float64)
    times = start_ms + np.arange(n, dtype=np.int64) * interval_ms(interval)
    return Candles(symbol, interval, times, open_, high, low, close.copy(), vol, "sample")


def ar1_returns(
    n: int, phi: float, sigma: float, seed: int = 0, *, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Log returns r[t] = phi * r[t-1] + N(0, sigma), drawn from `rng` (else a new one from `seed`);
    phi = 0 is a driftless random walk."""
    noise = (np.random.default_rng(seed) if rng is None else rng).normal(0.0, sigma, n)
    if phi == 0.0:
        return noise  # what the recursion below gives exactly, without the loop
    r = np.empty(n)
    r[0] = noise[0]
    for t in range(1, n):
        r[t] = phi * r[t - 1] + noise[t]
    return r


def ar1_candles(
    symbol: str, n: int, *, phi: float = 0.0, sigma: float = 0.01, gap: float = 0.0, seed: int = 0
) -> Candles:
    """Hourly candles whose close-to-close log returns are AR(1) (see ``ar1_returns``), from 100."""
    close = 100.0 * np.exp(np.cumsum(ar1_returns(n, phi, sigma, seed)))
    return ohlcv(symbol, close, first_open=100.0, gap=gap, seed=seed + 1)


def market_walk(
    n: int,
    phi: float = 0.0,
    seed: int = 0,
    *,
    symbol: str = "SYNUSDT",
    interval: str = "1h",
    start_ms: int = SEPT_2020_MS,
    wick: float = 0.002,
    gap: float = 0.0,
    volume: float | np.ndarray | None = None,
) -> Candles:
    """Candles from 100 whose log returns are AR(1) with 1% noise (phi = 0: a random walk), every draw
    from one generator seeded `seed`: the returns first, then `ohlcv`'s gaps, wicks and volumes.

    The ml_engine and backtester tests use these series (``ar1_candles`` above draws its returns and its
    wicks from two generators, which the replay tests are calibrated on)."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(ar1_returns(n, phi, 0.01, rng=rng)))
    return ohlcv(
        symbol,
        close,
        volume=volume,
        start_ms=start_ms,
        interval=interval,
        first_open=100.0,
        gap=gap,
        wick=wick,
        rng=rng,
    )


def make_candles(
    close: np.ndarray,
    open_: np.ndarray | None = None,
    *,
    symbol: str = "BTCUSDT",
    interval: str = "1h",
    source: DataSource = "cache",
) -> Candles:
    """Candles with the given closes (and opens; default: the previous close), high/low 0.2% beyond
    both, a volume that varies without randomness, hourly from SEPT_2020_MS."""
    close = np.asarray(close, dtype=np.float64)
    n = close.shape[0]
    if open_ is None:
        open_ = np.concatenate((close[:1], close[:-1]))
    open_ = np.asarray(open_, dtype=np.float64)
    high = np.fmax(open_, close) * 1.002
    low = np.fmin(open_, close) * 0.998
    times = np.arange(n, dtype=np.int64) * HOUR_MS + SEPT_2020_MS
    volume = 1.0 + np.abs(np.sin(np.arange(n, dtype=np.float64)))
    return Candles(symbol, interval, times, open_, high, low, close.copy(), volume, source)


def random_candles(n: int, seed: int = 0, *, drift: float = 0.0, vol: float = 0.01) -> Candles:
    """`make_candles` over a geometric random walk from 100 (log returns N(drift, vol))."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(drift, vol, n)))
    return make_candles(close)


def sample_candles(symbol: str, bars: int) -> Candles:
    """`bars` hourly candles of the offline sample series for `symbol` (utils/market_data/sample.py)."""
    rows = generate(PROFILES[symbol], bars=bars)
    times = rows[:, 0].astype(np.int64)
    return Candles(symbol, "1h", times, rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4], rows[:, 5], "sample")


def frame_candles(frame: pd.DataFrame, interval: str, symbol: str = "REF") -> Candles:
    """A backtesting.py frame (Open, High, Low, Close, Volume on a DatetimeIndex) as Candles."""
    times = frame.index.as_unit("ms").asi8
    open_, high, low, close, volume = (
        frame[c].to_numpy(np.float64) for c in ("Open", "High", "Low", "Close", "Volume")
    )
    return Candles(symbol, interval, times, open_, high, low, close, volume, "file")


def store_rows(
    open_time: Sequence[int] | np.ndarray,
    close: float | Sequence[float] | np.ndarray = 100.0,
    *,
    high: np.ndarray | None = None,
    low: np.ndarray | None = None,
    volume: float = 1.0,
) -> np.ndarray:
    """Rows as ``CandleStore.merge`` takes them (open_time, open, high, low, close, volume), each candle
    opening at its close; `close` is one value for all or one per candle, high/low default to close ± 1."""
    t = np.asarray(open_time, dtype=np.float64)
    c = np.broadcast_to(np.asarray(close, dtype=np.float64), t.shape)
    h = c + 1 if high is None else high
    lo = c - 1 if low is None else low
    return np.column_stack([t, c, h, lo, c, np.full(t.shape[0], volume)])


def edited_after(candles: Candles, after_ms: int, seed: int, extra: int = 0) -> Candles:
    """A copy whose candles opening after `after_ms` are scaled by random factors (OHLC by one factor per
    bar, volume by another), with `extra` more random-walk candles appended: the same past, another future."""
    rng = np.random.default_rng(seed)
    later = np.asarray(candles.open_time) > after_ms
    k = int(later.sum())
    price = np.ones(len(candles))
    price[later] = np.exp(rng.normal(0.0, 0.05, k))
    volume = np.ones(len(candles))
    volume[later] = rng.uniform(0.2, 5.0, k)
    edited = replace(
        candles,
        open=candles.open * price,
        high=candles.high * price,
        low=candles.low * price,
        close=candles.close * price,
        volume=candles.volume * volume,
    )
    return appended(edited, extra, seed + 1) if extra else edited


def appended(candles: Candles, extra: int, seed: int) -> Candles:
    """`candles` followed by `extra` random-walk candles continuing from its last close."""
    rng = np.random.default_rng(seed)
    step = int(candles.open_time[1] - candles.open_time[0])
    close = float(candles.close[-1]) * np.exp(np.cumsum(rng.normal(0.0, 0.01, extra)))
    assert step == interval_ms(candles.interval), "appended continues a regular series"
    more = ohlcv(
        candles.symbol,
        close,
        start_ms=int(candles.open_time[-1]) + step,
        interval=candles.interval,
        first_open=float(candles.close[-1]),
        seed=seed,
    )
    times, open_, high, low, close_, volume = (
        np.concatenate((candles.column(c), more.column(c)))
        for c in ("open_time", "open", "high", "low", "close", "volume")
    )
    return Candles(candles.symbol, candles.interval, times, open_, high, low, close_, volume, candles.source)
