"""The real candles in ../shared/data (outside the repo): read them, or skip saying why they are absent.

A fresh clone has no ../shared/data, so every test that reads it goes through `shared_csv`, which skips
with the missing path and the reason instead of failing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from utils.market_data.candles import Candles

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"  # beside the project checkout


def shared_csv(name: str, directory: Path | None = None) -> pd.DataFrame:
    """The file `name` (columns timestamp, open, high, low, close, volume) as read, or a skip."""
    path = (directory or SHARED_DATA) / name
    if not path.exists():
        pytest.skip(f"{path} is absent (real market data lives outside the repo; a fresh clone has none)")
    return pd.read_csv(path)


def shared_candles(name: str, symbol: str, interval: str, directory: Path | None = None) -> Candles:
    """The file `name` as Candles (timestamps are UTC open times), or a skip."""
    raw = shared_csv(name, directory)
    times = pd.DatetimeIndex(pd.to_datetime(raw["timestamp"], utc=True)).as_unit("ms").asi8
    open_, high, low, close, volume = (
        raw[c].to_numpy(np.float64) for c in ("open", "high", "low", "close", "volume")
    )
    return Candles(symbol, interval, times, open_, high, low, close, volume, "file")
