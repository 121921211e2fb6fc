"""Deterministic SAMPLE candles so a fresh install works offline. Synthetic: never real market data.

The series is a random walk with volatility clustering (a GARCH(1,1)-like variance), an
intraday volume/volatility cycle and fat-tailed shocks, calibrated to look like BTC/ETH hourly
candles (about 55-75% annualised volatility). Everything is seeded from the symbol name, so the
same symbol always gives the same candles on every machine.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from utils.intervals import interval_ms

SAMPLE_START_MS = 1_672_531_200_000  # 2023-01-01T00:00:00Z
SAMPLE_BARS = 2 * 365 * 24  # two years of hourly candles


@dataclass(frozen=True, slots=True)
class SampleProfile:
    symbol: str
    start_price: float
    annual_vol: float
    base_volume: float


PROFILES: dict[str, SampleProfile] = {
    "BTCUSDT": SampleProfile("BTCUSDT", 16_500.0, 0.55, 900.0),
    "ETHUSDT": SampleProfile("ETHUSDT", 1_200.0, 0.70, 12_000.0),
}
SAMPLE_INTERVAL = "1h"


def _seed(symbol: str) -> int:
    # hashlib, not hash(): Python salts str hashes per process.
    return int.from_bytes(hashlib.sha256(f"sample:{symbol}".encode()).digest()[:8], "little")


def generate(profile: SampleProfile, bars: int = SAMPLE_BARS, interval: str = SAMPLE_INTERVAL) -> np.ndarray:
    """(bars, 6) rows: open_time ms, open, high, low, close, volume."""
    rng = np.random.default_rng(_seed(profile.symbol))
    step = interval_ms(interval)
    per_bar_vol = profile.annual_vol / np.sqrt(365 * 24 * 3_600_000 / step)

    # Volatility clustering: a GARCH(1,1)-shaped variance driven by the shocks' own history.
    shocks = rng.standard_t(df=4, size=bars) / np.sqrt(2.0)  # unit variance, fat tails
    alpha, beta = 0.06, 0.92
    omega = per_bar_vol**2 * (1 - alpha - beta)
    variance = np.empty(bars)
    variance[0] = per_bar_vol**2
    returns = np.empty(bars)
    for i in range(bars):  # generation only, once per install: clarity beats vectorising this
        if i:
            variance[i] = omega + alpha * returns[i - 1] ** 2 + beta * variance[i - 1]
        returns[i] = np.sqrt(variance[i]) * shocks[i]
    hours = (SAMPLE_START_MS // step + np.arange(bars)) % 24
    intraday = 1.0 + 0.25 * np.cos((hours - 15) / 24 * 2 * np.pi)  # busier US/EU overlap
    returns *= intraday

    close = profile.start_price * np.exp(np.cumsum(returns))
    open_ = np.empty(bars)
    open_[0] = profile.start_price
    open_[1:] = close[:-1]
    # Wicks beyond the body, proportional to the bar's volatility.
    wick_scale = np.sqrt(variance) * intraday
    upper = np.abs(rng.normal(0.0, 0.6, bars)) * wick_scale
    lower = np.abs(rng.normal(0.0, 0.6, bars)) * wick_scale
    high = np.maximum(open_, close) * (1 + upper)
    low = np.minimum(open_, close) * (1 - lower)
    volume = profile.base_volume * intraday * np.exp(rng.normal(0.0, 0.35, bars)) * (1 + 40 * np.abs(returns))
    open_time = SAMPLE_START_MS + step * np.arange(bars, dtype=np.int64)
    values = np.round(np.column_stack([open_, high, low, close, volume]), 8)
    # Open times are not rounded: at 1e12 ms, rounding to 8 decimals moves some by a millisecond.
    return np.column_stack([open_time.astype(np.float64), values])
