"""Synthetic candles for replay and voter tests: AR(1) log-return walks, hand-made series, edited copies.

By default every series opens each bar at the previous close, so holding from bar t+1's open to its close
earns exactly the close-to-close log return of bar t+1; ``gap`` moves each open off the previous close
(so a fill at the next open and one at the decision's close differ). Open times start on a whole hour.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import numpy as np

from backtester.data import Candles
from utils.exchange import SymbolFilters

HOUR_MS = 3_600_000
START_MS = 444_444 * HOUR_MS  # 2020-09-13 12:00 UTC, a whole hour


def ohlcv(
    symbol: str,
    close: np.ndarray,
    *,
    volume: np.ndarray | None = None,
    start_ms: int = START_MS,
    interval_ms: int = HOUR_MS,
    first_open: float | None = None,
    gap: float = 0.0,
    seed: int = 0,
) -> Candles:
    """Candles with these closes: each opens at the previous close (the first at `first_open`, default its
    own close) times exp(N(0, gap)), high and low up to 0.2% beyond both; volume given or log-normal."""
    close = np.asarray(close, dtype=np.float64)
    n = close.shape[0]
    rng = np.random.default_rng(seed)
    start = close[0] if first_open is None else first_open
    open_ = np.concatenate(([start], close[:-1])) if n else close.copy()
    if gap:
        open_ = open_ * np.exp(rng.normal(0.0, gap, n))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.002, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.002, n))
    vol = rng.lognormal(2.0, 0.5, n) if volume is None else np.asarray(volume, dtype=np.float64)
    times = start_ms + np.arange(n, dtype=np.int64) * interval_ms
    return Candles(symbol, "1h", times, open_, high, low, close.copy(), vol, "sample")


def ar1_returns(n: int, phi: float, sigma: float, seed: int) -> np.ndarray:
    """Log returns r[t] = phi * r[t-1] + N(0, sigma); phi = 0 is a driftless random walk."""
    noise = np.random.default_rng(seed).normal(0.0, sigma, n)
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
    more = ohlcv(
        candles.symbol,
        close,
        start_ms=int(candles.open_time[-1]) + step,
        interval_ms=step,
        first_open=float(candles.close[-1]),
        seed=seed,
    )
    return Candles(
        candles.symbol,
        candles.interval,
        *(
            np.concatenate((candles.column(c), more.column(c)))
            for c in ("open_time", "open", "high", "low", "close", "volume")
        ),
        source=candles.source,
    )


def usdt_filters(
    symbols: Iterable[str],
    *,
    tick: str = "0.01",
    step: str = "0.001",
    min_qty: str = "0.001",
    max_qty: str = "9000",
    min_notional: str = "5",
) -> dict[str, SymbolFilters]:
    """TRADING filters for USDT-quoted symbols; a coarse LOT_SIZE step so rounding shows in quantities."""
    sizes = (tick, step, min_qty, max_qty, min_notional)
    return {s: SymbolFilters(s, "TRADING", s.removesuffix("USDT"), "USDT", *sizes) for s in symbols}
