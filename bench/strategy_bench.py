"""Benchmark: evaluating a JSON strategy (six comparisons over four distinct indicators) on 1,000,000 bars.

Run from the repo root: ``.venv/bin/python bench/strategy_bench.py [--bars N] [--runs R]``. Prints one
table; every time is the median (and min/max) of R >= 5 runs in this process on a seeded random walk, after
one untimed warm-up run. Target: ``evaluate`` of the validated spec within 150 ms at 1,000,000 bars (exit
status 1 if missed). Rows:

* indicators only: the four indicators called directly through ml_engine.indicators: the floor.
* evaluate (validated spec): ``strategy_parser.evaluate`` on a ``StrategySpec``: the measured target.
* evaluate (raw dict): the same from parsed JSON, validation included.
* trace: evaluate keeping every intermediate array (what the health check uses).
* health check: ``strategy_health.check`` (full trace, four prefix re-evaluations, three backtests).

BLAS is pinned to one thread unless OPENBLAS_NUM_THREADS / OMP_NUM_THREADS are set: on a shared machine
its threads stall when another process holds a core, which makes timings noisy, not faster.
"""

from __future__ import annotations

import os

# Must happen before numpy loads OpenBLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ml_engine import indicators as ind  # noqa: E402
from strategy_engine.spec import validate_spec  # noqa: E402
from strategy_engine.strategy_health import check  # noqa: E402
from strategy_engine.strategy_parser import evaluate, trace  # noqa: E402
from utils.market_data.candles import Candles  # noqa: E402

TARGET_MS = 150.0

RSI = {"indicator": "rsi", "params": {"period": 14}}
SMA200 = {"indicator": "sma", "params": {"period": 200}}
EMA12 = {"indicator": "ema", "params": {"period": 12}}
EMA26 = {"indicator": "ema", "params": {"period": 26}}
SPEC: dict[str, Any] = {
    "name": "bench: six conditions, four indicators",
    "symbol": "BTCUSDT",
    "interval": "1m",
    "entry": {
        "all": [
            {"left": RSI, "op": "<", "right": 30},
            {"left": {"price": "close"}, "op": ">", "right": SMA200},
            {"left": EMA26, "op": ">", "right": SMA200},
        ]
    },
    "exit": {
        "any": [
            {"left": RSI, "op": ">", "right": 70},
            {"left": EMA12, "op": "crosses_below", "right": EMA26},
            {"not": {"left": {"price": "close", "offset": 1}, "op": ">", "right": SMA200}},
        ]
    },
    "stop_loss": 0.02,
}


def synthetic_candles(n: int, seed: int = 42) -> Candles:
    """Random-walk OHLCV with realistic crypto prices (~30k, 0.1% moves per 1-minute bar)."""
    rng = np.random.default_rng(seed)
    close = 30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, n)))
    open_ = np.concatenate(([close[0]], close[:-1]))
    high = np.maximum(open_, close) * (1.0 + np.abs(rng.normal(0.0, 0.0005, n)))
    low = np.minimum(open_, close) * (1.0 - np.abs(rng.normal(0.0, 0.0005, n)))
    volume = rng.lognormal(3.0, 1.0, n)
    times = 1_600_000_000_000 + np.arange(n, dtype=np.int64) * 60_000
    return Candles("BTCUSDT", "1m", times, open_, high, low, close, volume, "sample")


def timed(func: Callable[[], object], runs: int) -> tuple[float, float, float, float]:
    """(first call, median, min, max) in milliseconds; the first call is untimed for the statistics."""
    start = time.perf_counter()
    func()
    first = (time.perf_counter() - start) * 1e3
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        samples.append((time.perf_counter() - start) * 1e3)
    return first, statistics.median(samples), min(samples), max(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7, help="timed runs per row (>= 5)")
    parser.add_argument("--health-runs", type=int, default=5, help="timed runs of the health check (>= 1)")
    args = parser.parse_args(argv)
    if args.runs < 5:
        parser.error("--runs must be >= 5")

    candles = synthetic_candles(args.bars)
    spec = validate_spec(SPEC)
    close = candles.close

    def indicators_only() -> None:
        ind.rsi(close, 14)
        ind.sma(close, 200)
        ind.ema(close, 12)
        ind.ema(close, 26)

    rows: list[tuple[str, Callable[[], object], int]] = [
        ("indicators only (4)", indicators_only, args.runs),
        ("evaluate (validated spec)", lambda: evaluate(spec, candles), args.runs),
        ("evaluate (raw dict)", lambda: evaluate(SPEC, candles), args.runs),
        ("trace", lambda: trace(spec, candles), args.runs),
        ("health check", lambda: check(spec, candles), args.health_runs),
    ]
    signals = evaluate(spec, candles)
    print(
        f"{args.bars:,} bars, 6 comparisons over 4 distinct indicators, "
        f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}; "
        f"{int(signals.entries.sum()):,} entry bars, {int(signals.exits.sum()):,} exit bars"
    )
    header = f"{'row':<26} | {'first ms':>8} | {'median ms':>9} | {'min ms':>8} | {'max ms':>8} | runs"
    print(header)
    print("-" * len(header))
    results = {}
    for name, func, runs in rows:
        first, median, low, high = timed(func, runs)
        results[name] = median
        print(f"{name:<26} | {first:8.1f} | {median:9.1f} | {low:8.1f} | {high:8.1f} | {runs}")
    target = results["evaluate (validated spec)"]
    ok = target <= TARGET_MS or args.bars != 1_000_000
    verdict = "within" if target <= TARGET_MS else "OVER"
    print(f"evaluate: {target:.1f} ms median, {verdict} the {TARGET_MS:g} ms target (at 1,000,000 bars)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
