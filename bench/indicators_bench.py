"""Benchmark: every ml_engine indicator against its TA-Lib equivalent on 1,000,000 synthetic bars.

Run from the repo root: ``.venv/bin/python bench/indicators_bench.py [--bars N] [--repeat R]``.
Each indicator and its TA-Lib counterpart are timed alternately in the same run (median of R runs,
R >= 5) and the ratio ours/TA-Lib must be <= 3. Exit status 1 if any indicator misses the target.

Both sides run on one core: TA-Lib is single-threaded, and the library sizes its BLAS calls so that
OpenBLAS keeps them on the calling thread.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import talib
from talib._ta_lib import MA_Type  # talib re-exports it untyped

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml_engine import indicators as ind

TARGET_RATIO = 3.0


def synthetic_bars(n: int, seed: int = 42) -> dict[str, np.ndarray]:
    """Random-walk OHLCV with realistic crypto prices (~30k, 0.5% moves per bar)."""
    rng = np.random.default_rng(seed)
    close = 30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.005, n)))
    open_ = np.concatenate(([close[0]], close[:-1]))
    high = np.maximum(open_, close) * (1.0 + np.abs(rng.normal(0.0, 0.002, n)))
    low = np.minimum(open_, close) * (1.0 - np.abs(rng.normal(0.0, 0.002, n)))
    volume = rng.lognormal(3.0, 1.0, n)
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


def cases(b: dict[str, np.ndarray]) -> list[tuple[str, Callable[[], object], Callable[[], object]]]:
    """(name, ours, TA-Lib equivalent) at the registry's default parameters."""
    h, lo, c, v = b["high"], b["low"], b["close"], b["volume"]
    return [
        ("sma(20)", lambda: ind.sma(c, 20), lambda: talib.SMA(c, 20)),
        ("ema(20)", lambda: ind.ema(c, 20), lambda: talib.EMA(c, 20)),
        ("wma(20)", lambda: ind.wma(c, 20), lambda: talib.WMA(c, 20)),
        ("rsi(14)", lambda: ind.rsi(c, 14), lambda: talib.RSI(c, 14)),
        ("macd(12,26,9)", lambda: ind.macd(c, 12, 26, 9), lambda: talib.MACD(c, 12, 26, 9)),
        (
            "bollinger(20,2)",
            lambda: ind.bollinger(c, 20, 2.0),
            lambda: talib.BBANDS(c, 20, 2.0, 2.0, MA_Type.SMA),
        ),
        ("atr(14)", lambda: ind.atr(h, lo, c, 14), lambda: talib.ATR(h, lo, c, 14)),
        (
            "stochastic(14,3)",
            lambda: ind.stochastic(h, lo, c, 14, 3),
            lambda: talib.STOCHF(h, lo, c, 14, 3, MA_Type.SMA),
        ),
        ("obv", lambda: ind.obv(c, v), lambda: talib.OBV(c, v)),
        ("roc(10)", lambda: ind.roc(c, 10), lambda: talib.ROC(c, 10)),
        ("williams_r(14)", lambda: ind.williams_r(h, lo, c, 14), lambda: talib.WILLR(h, lo, c, 14)),
        ("cci(20)", lambda: ind.cci(h, lo, c, 20), lambda: talib.CCI(h, lo, c, 20)),
        ("adx(14)", lambda: ind.adx(h, lo, c, 14), lambda: talib.ADX(h, lo, c, 14)),
        ("donchian(20)", lambda: ind.donchian(h, lo, 20), lambda: (talib.MAX(h, 20), talib.MIN(lo, 20))),
        (
            "vwap(20)",
            lambda: ind.vwap(h, lo, c, v, 20),
            lambda: talib.SUM(talib.TYPPRICE(h, lo, c) * v, 20) / talib.SUM(v, 20),
        ),
    ]


def time_pair(ours: Callable[[], object], ref: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median milliseconds of each, run alternately so machine noise hits both alike."""
    ours()
    ref()  # warm caches and lazy initialisation before timing
    ours_ms, ref_ms = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        ours()
        ours_ms.append((time.perf_counter() - start) * 1e3)
        start = time.perf_counter()
        ref()
        ref_ms.append((time.perf_counter() - start) * 1e3)
    return statistics.median(ours_ms), statistics.median(ref_ms)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per function (>= 5)")
    args = parser.parse_args(argv)
    if args.repeat < 5:
        parser.error("--repeat must be >= 5")

    bars = synthetic_bars(args.bars)
    version = talib.__ta_version__.decode()  # type: ignore[attr-defined]  # missing from talib's stubs
    print(f"{args.bars:,} bars, median of {args.repeat} runs, TA-Lib {version}")
    header = (
        f"{'indicator':<18} | {'ours ms':>8} | {'talib ms':>8} | {'ratio':>5} | within {TARGET_RATIO:g}x?"
    )
    print(header)
    print("-" * len(header))
    misses = []
    for name, ours, ref in cases(bars):
        ours_ms, ref_ms = time_pair(ours, ref, args.repeat)
        ratio = ours_ms / ref_ms
        ok = ratio <= TARGET_RATIO
        if not ok:
            misses.append(name)
        print(f"{name:<18} | {ours_ms:8.2f} | {ref_ms:8.2f} | {ratio:5.2f} | {'yes' if ok else 'NO'}")
    if misses:
        print(f"missed the {TARGET_RATIO:g}x target: {', '.join(misses)}")
        return 1
    print(f"all {len(cases(bars))} indicators within {TARGET_RATIO:g}x of TA-Lib")
    return 0


if __name__ == "__main__":
    sys.exit(main())
