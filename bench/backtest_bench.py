"""Backtest benchmark: engine speed against a plain numpy reference and backtesting.py, warm-up and memory.

Run from the project root: ``.venv/bin/python bench/backtest_bench.py`` (``--help`` for sizes). It prints one
table. Every time is the median of ``--runs`` runs in this process on synthetic 1-minute bars (a seeded
random walk). Rows:

* numpy reference: a plain vectorised SMA 10/20 crossover backtest written here (SMAs by cumsum, strict
  crossovers, positions by forward-fill, per-bar returns with fees at position changes, final equity). It
  is the baseline; its final equity is checked against ours, so both compute the same thing.
* ours, SMA e2e: indicators (ml_engine.indicators), signals (built-in sma_crossover), engine and metrics.
* ours, SMA + SL/TP: the same with a stop loss and a take profit (the compiled per-bar loop).
* backtesting.py: FractionalBacktest running the same crossover on ``--bt-bars`` bars, scaled linearly to
  ``--bars`` (its cost per bar is flat), because a million bars takes minutes. Test/bench only (AGPL).
* warm-up: a fresh interpreter importing the engine and running a tiny backtest with stops, minus a fresh
  interpreter importing numpy alone; numba's compiled code comes from its on-disk cache.
* peak memory: peak RSS (VmHWM, Linux) of a fresh interpreter building ``--bars`` bars and running the
  SL/TP backtest on them: interpreter, numpy, pandas and numba included.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from backtester.runner import BacktestConfig, BacktestResult, run_backtest  # noqa: E402
from backtester.strategies import sma_crossover  # noqa: E402
from bench.references import backtesting_py_sma_cross  # noqa: E402
from utils.market_data.candles import Candles  # noqa: E402

FEE = 0.001
FAST, SLOW = 10, 20
STOPS = {"stop_loss": 0.005, "take_profit": 0.01}


def synthetic_candles(n: int, seed: int = 42) -> Candles:
    """A random walk of 1-minute bars: open at the previous close plus noise, high/low around both."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, n)))
    open_ = np.empty(n)
    open_[0] = 100.0
    open_[1:] = close[:-1] * np.exp(rng.normal(0.0, 0.0002, n - 1))
    high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 0.001, n))
    low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 0.001, n))
    volume = rng.uniform(1.0, 10.0, n)
    open_time = 1_600_000_000_000 + np.arange(n, dtype=np.int64) * 60_000
    return Candles("SYN/USDT", "1m", open_time, open_, high, low, close, volume, "sample")


def numpy_reference(open_: np.ndarray, close: np.ndarray, capital: float = 10_000.0) -> float:
    """Plain vectorised SMA crossover backtest, fully invested, fee per side, fills at the next open."""
    n = close.shape[0]
    csum = np.cumsum(close)
    fast = np.full(n, np.nan)
    slow = np.full(n, np.nan)
    fast[FAST - 1] = csum[FAST - 1] / FAST
    fast[FAST:] = (csum[FAST:] - csum[:-FAST]) / FAST
    slow[SLOW - 1] = csum[SLOW - 1] / SLOW
    slow[SLOW:] = (csum[SLOW:] - csum[:-SLOW]) / SLOW
    # Strict crossovers on bar t (the project's rule); NaN warm-up compares False.
    up = np.zeros(n, dtype=bool)
    down = np.zeros(n, dtype=bool)
    up[1:] = (fast[:-1] <= slow[:-1]) & (fast[1:] > slow[1:])
    down[1:] = (fast[:-1] >= slow[:-1]) & (fast[1:] < slow[1:])
    # Position after bar t's close: the last event so far (forward-filled); held during bar t+1.
    event = np.where(down, -1, np.where(up, 1, 0))
    last = np.where(event != 0, np.arange(n), 0)
    np.maximum.accumulate(last, out=last)
    state = event[last] == 1
    held = np.zeros(n, dtype=bool)
    held[1:] = state[:-1]
    # Per-bar equity growth: close/close while held, entry bar from its open after the fee, exit bar
    # back to its open after the fee.
    prev_held = np.zeros(n, dtype=bool)
    prev_held[1:] = held[:-1]
    prev_close = np.empty(n)
    prev_close[0] = close[0]
    prev_close[1:] = close[:-1]
    growth = np.where(
        held,
        np.where(prev_held, close / prev_close, close / (open_ * (1.0 + FEE))),
        np.where(prev_held, open_ * (1.0 - FEE) / prev_close, 1.0),
    )
    return float(capital * np.prod(growth))


def ours(candles: Candles, config: BacktestConfig) -> BacktestResult:
    entries, exits = sma_crossover.signals(candles, sma_crossover.Params(FAST, SLOW))
    return run_backtest(candles, entries, exits, config)


def backtesting_py(candles: Candles) -> float:
    """The same crossover in backtesting.py (bench/references.py): its final equity."""
    return float(backtesting_py_sma_cross(candles, FAST, SLOW, FEE)["Equity Final [$]"])


def median_time(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


WARMUP_SCRIPT = """
import numpy as np
from utils.market_data.candles import Candles
from backtester.runner import BacktestConfig, run_backtest
from backtester.strategies import BUILTINS
n = 64
t = np.arange(n, dtype=np.int64) * 60_000
c = np.linspace(100.0, 110.0, n) + np.sin(np.arange(n))
candles = Candles("X", "1m", t, c, c + 1, c - 1, c, np.ones(n), "sample")
e, x = BUILTINS["sma_crossover"].signals(candles, BUILTINS["sma_crossover"].default_params())
run_backtest(candles, e, x, BacktestConfig())
run_backtest(candles, e, x, BacktestConfig(stop_loss=0.01, take_profit=0.02, trailing_stop=0.01))
"""

# VmHWM is this process's own peak RSS. getrusage's ru_maxrss would also count the parent's pages (Linux
# keeps the high-water mark across fork + exec), and the parent holds a million bars already.
MEMORY_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from bench.backtest_bench import STOPS, ours, synthetic_candles
from backtester.runner import BacktestConfig
result = ours(synthetic_candles({n}), BacktestConfig(**STOPS))
status = open("/proc/self/status").read()
print(status.split("VmHWM:")[1].split()[0])
"""


def fresh_process_seconds(code: str, runs: int) -> float:
    def run() -> None:
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)

    return median_time(run, runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument(
        "--bt-bars", type=int, default=100_000, help="bars for backtesting.py, scaled to --bars"
    )
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    n, runs = args.bars, max(args.runs, 1)

    candles = synthetic_candles(n)
    plain = BacktestConfig(fee_rate=FEE)
    with_stops = BacktestConfig(fee_rate=FEE, **STOPS)
    # First calls outside the timing: numba loads (or on a first ever run compiles) the stop loop.
    result = ours(candles, plain)
    stopped = ours(candles, with_stops)
    reference_equity = numpy_reference(candles.open, candles.close)
    if not np.isclose(reference_equity, result.final_equity, rtol=1e-9):
        raise SystemExit(f"reference {reference_equity} != ours {result.final_equity}: not the same backtest")

    t_ref = median_time(lambda: numpy_reference(candles.open, candles.close), runs)
    t_ours = median_time(lambda: ours(candles, plain), runs)
    t_stops = median_time(lambda: ours(candles, with_stops), runs)

    small = synthetic_candles(args.bt_bars)
    bt_equity = backtesting_py(small)
    small_ours = ours(small, plain).final_equity
    if not np.isclose(bt_equity, small_ours, rtol=1e-6):
        raise SystemExit(f"backtesting.py {bt_equity} != ours {small_ours} on {args.bt_bars} bars")
    t_bt = median_time(lambda: backtesting_py(small), runs) * (n / args.bt_bars)

    fresh_process_seconds(WARMUP_SCRIPT, 1)  # make sure numba's cache is populated
    t_warm = fresh_process_seconds(WARMUP_SCRIPT, runs) - fresh_process_seconds("import numpy", runs)
    rss_kb = int(
        subprocess.run(
            [sys.executable, "-c", MEMORY_SCRIPT.format(root=str(ROOT), n=n)],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )

    reasons: dict[str, int] = {}
    for trade in stopped.trades:
        reasons[trade.exit_reason] = reasons.get(trade.exit_reason, 0) + 1
    print(f"{n:,} synthetic 1m bars, median of {runs} runs; SMA {FAST}/{SLOW} crossover, fee {FEE} per side")
    print(
        f"trades: {result.metrics.n_trades:,} without stops; {stopped.metrics.n_trades:,} with "
        f"SL {STOPS['stop_loss']} / TP {STOPS['take_profit']} (exits: {reasons})"
    )
    print()
    rows = [
        ("numpy reference (baseline)", t_ref, "1.00x", ""),
        ("ours, SMA e2e", t_ours, f"{t_ours / t_ref:.2f}x", "target <= 2x"),
        ("ours, SMA + SL/TP e2e", t_stops, f"{t_stops / t_ref:.2f}x", "target <= 5x"),
        (
            f"backtesting.py ({args.bt_bars:,} bars x{n / args.bt_bars:g})",
            t_bt,
            f"{t_bt / t_ref:.0f}x",
            f"ours is {t_bt / t_ours:,.0f}x faster (target >= 100x)",
        ),
    ]
    print(f"| {'run':<42} | {'seconds':>9} | {'vs numpy':>8} | note")
    print(f"|{'-' * 44}|{'-' * 11}|{'-' * 10}|{'-' * 40}")
    for name, seconds, ratio, note in rows:
        print(f"| {name:<42} | {seconds:9.4f} | {ratio:>8} | {note}")
    print()
    print(
        f"fresh-process warm-up (import + tiny backtest with stops, minus `import numpy`): {t_warm:.3f} s "
        f"(target <= 1 s)"
    )
    print(
        f"peak memory, {n:,} bars with SL/TP in a fresh process (VmHWM): {rss_kb / 1024:.0f} MB "
        f"(target < 500 MB)"
    )


if __name__ == "__main__":
    main()
