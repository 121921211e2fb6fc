"""Tests of the JSON strategy engine; the candle builders below are shared by its test modules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtester.data import Candles

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
HOUR_MS = 3_600_000


def make_candles(
    close: np.ndarray,
    open_: np.ndarray | None = None,
    *,
    symbol: str = "BTCUSDT",
    interval: str = "1h",
    source: str = "cache",
) -> Candles:
    """Candles with the given closes (and opens; default: the previous close), high/low around them."""
    close = np.asarray(close, dtype=np.float64)
    n = close.shape[0]
    if open_ is None:
        open_ = np.concatenate((close[:1], close[:-1]))
    open_ = np.asarray(open_, dtype=np.float64)
    high = np.fmax(open_, close) * 1.002
    low = np.fmin(open_, close) * 0.998
    times = np.arange(n, dtype=np.int64) * HOUR_MS + 1_600_000_000_000
    volume = 1.0 + np.abs(np.sin(np.arange(n, dtype=np.float64)))
    return Candles(symbol, interval, times, open_, high, low, close.copy(), volume, source)


def random_candles(n: int, seed: int = 0, *, drift: float = 0.0, vol: float = 0.01) -> Candles:
    """A geometric random walk with realistic OHLC around it."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(drift, vol, n)))
    return make_candles(close)


def shared_candles(name: str, symbol: str, interval: str) -> Candles:
    """Real candles from ../shared/data, or a skip saying why they are absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is absent (real market data lives outside the repo; a fresh clone has none)")
    frame = pd.read_csv(path)
    times = pd.to_datetime(frame["timestamp"]).to_numpy().astype("datetime64[ms]").astype(np.int64)
    columns = (frame[c].to_numpy(np.float64) for c in ("open", "high", "low", "close", "volume"))
    return Candles(symbol, interval, times, *columns, "file")
