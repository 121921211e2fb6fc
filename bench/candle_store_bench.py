"""Candle store load speed: 1,000,000 stored candles from Parquet vs the same rows from SQLite.

Justifies keeping candles in columnar files rather than the database: prints the median of
several runs for each and the ratio. Run: .venv/bin/python bench/candle_store_bench.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.market_data.candles import CandleStore

N = 1_000_000
RUNS = 5


def synthetic(n: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    close = 30_000 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(open_, close) * 1.001
    low = np.minimum(open_, close) * 0.999
    t = 1_577_836_800_000 + 60_000 * np.arange(n)
    return np.column_stack([t.astype(np.float64), open_, high, low, close, rng.uniform(1, 10, n)])


def median_time(fn: Callable[[], object], runs: int = RUNS) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    rows = synthetic(N)
    with tempfile.TemporaryDirectory() as tmp:
        store = CandleStore(Path(tmp) / "store")
        start = time.perf_counter()
        store.merge("binance", "BTCUSDT", "1m", rows)
        t_write = time.perf_counter() - start
        parquet = median_time(lambda: store.load("binance", "BTCUSDT", "1m"))
        window = median_time(
            lambda: store.load("binance", "BTCUSDT", "1m", int(rows[400_000, 0]), int(rows[500_000, 0]))
        )

        engine = create_engine(f"sqlite:///{tmp}/bench.db")
        frame = pd.DataFrame(rows, columns=["open_time", "open", "high", "low", "close", "volume"])
        frame["open_time"] = frame["open_time"].astype(np.int64)
        frame.to_sql("candles", engine, index=False, chunksize=50_000)
        with engine.begin() as conn:
            conn.execute(text("CREATE UNIQUE INDEX ix_t ON candles (open_time)"))

        def sqlite_load() -> None:
            with engine.connect() as conn:
                result = conn.execute(
                    text("SELECT open_time, open, high, low, close, volume FROM candles ORDER BY open_time")
                )
                np.array(result.fetchall(), dtype=np.float64)

        sqlite = median_time(sqlite_load, 3)
    print(f"Candle store, {N:,} candles, median of {RUNS} runs (SQLite: 3)")
    print("| operation                         | seconds |")
    print("|-----------------------------------|---------|")
    print(f"| Parquet write (merge into empty)  | {t_write:7.3f} |")
    print(f"| Parquet load, all candles         | {parquet:7.3f} |")
    print(f"| Parquet load, 100k-candle window  | {window:7.3f} |")
    print(f"| SQLite via SQLAlchemy, all        | {sqlite:7.3f} |")
    print(
        f"SQLite / Parquet: {sqlite / parquet:.0f}x slower; target 'well under a second': "
        f"{'met' if parquet < 0.25 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
