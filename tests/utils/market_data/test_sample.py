"""The sample generator: deterministic, on the interval's grid at every interval, and valid candles."""

from __future__ import annotations

import numpy as np
import pytest

from utils.intervals import interval_ms
from utils.market_data.candles import ohlcv_problems
from utils.market_data.sample import PROFILES, SAMPLE_START_MS, generate


@pytest.mark.parametrize("interval", ["1m", "5m", "1h", "1d"])
@pytest.mark.parametrize("symbol", sorted(PROFILES))
def test_sample_candles_sit_on_the_grid_and_keep_the_candle_rules(symbol: str, interval: str) -> None:
    rows = generate(PROFILES[symbol], bars=100_000, interval=interval)
    expected = SAMPLE_START_MS + interval_ms(interval) * np.arange(len(rows), dtype=np.int64)
    assert np.array_equal(rows[:, 0].astype(np.int64), expected), "no open time off the grid"
    assert not any(mask.any() for mask, _ in ohlcv_problems(rows[:, 1:6]))
    assert np.array_equal(rows, generate(PROFILES[symbol], bars=100_000, interval=interval))
