"""Research benchmark (issue 13): a sweep on each compute backend, memory per worker, optimiser speed.

Run from the project root: ``.venv/bin/python bench/research_bench.py`` (``--help`` for sizes; needs the dev
requirements, which include requirements-distributed.txt). It prints one table; every time is the median of
``--runs`` runs in this one process, after two untimed warm-up runs per backend (a backend's pool or cluster
is started once and kept, as the app keeps it; "first run" is the first of those, pool start included).

* The sweep: the built-in ``sma_crossover`` over a 16 x 16 grid of fast x slow (256 combinations, all valid),
  each combination a full backtest (indicators, signals, engine, metrics) on ``--bars`` 1-minute bars: the
  work of ``POST /api/backtest/sweep`` (``backtester.service.run_combinations``, on the same data).
  - this process, serially: the reference without any pool (what one core does);
  - 2 serial processes at once: the combinations split over two plain processes started together, no pool
    and no cluster: what this machine's two cores give this work at best (its ceiling; memory traffic,
    not Python, bounds a backtest of 1,000,000 bars, so two cores share more than their clocks);
  - 1 local worker, 2 local workers: ``utils.compute.LocalCompute`` (spawned processes);
  - 2 Dask workers: a real local cluster, a scheduler and two single-threaded workers as separate
    processes on 127.0.0.1 (tests/support/dask_cluster.py), through ``utils.compute.DaskCompute``.
  Ratios are against 1 local worker measured in the same run; the target is >= 1.7x for two workers. Every
  backend's 256 metric rows are checked equal to the serial reference's.
* Peak memory per worker: the high-water RSS (VmHWM, Linux) of each worker process after its sweeps:
  interpreter, numpy, pandas, numba and (on Dask) the worker's own machinery included. Target < 1 GB.
* Optimiser trials per second (``optimiser_trials_per_second``): the optimiser's search
  (backtester/optimize/search.py) over the same strategy on ``--opt-bars`` bars, TPE, its study in a
  temporary SQLite database as the app keeps it, on 2 local workers and on the 2 Dask workers.

Every process here (the references too) runs with the allocator settings utils/compute.py gives its
workers (``tune_allocator``), so the rows differ by where the work runs alone. The load average before and
after is printed: on a shared 2-core machine another process's work shows up in every ratio.

Data: 1-minute bars from ../shared/data when it holds enough (a ``BTC_USDT_1m.csv`` there); otherwise the
project's deterministic sample generator (utils/market_data/sample.py, the BTCUSDT profile, synthetic). The
table says which.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import strategy_registry  # noqa: E402
from backtester.runner import BacktestConfig  # noqa: E402
from backtester.service import SignalFactory, run_combinations  # noqa: E402
from tests.support.dask_cluster import dask_cluster  # noqa: E402
from utils.compute import Compute, make_compute, tune_allocator  # noqa: E402
from utils.market_data.candles import Candles  # noqa: E402
from utils.market_data.sample import PROFILES, generate  # noqa: E402

SHARED_DATA = ROOT.parent / "shared" / "data"
FAST = list(range(5, 53, 3))  # 16 values
SLOW = list(range(60, 380, 20))  # 16 values: every fast < every slow, so all 256 combinations are valid
CONFIG = BacktestConfig(fee_rate=0.001)
MB = 1024 * 1024
S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")


def bench_candles(bars: int) -> tuple[Candles, str]:
    """`bars` 1-minute candles and a line saying where they come from."""
    real = SHARED_DATA / "BTC_USDT_1m.csv"
    if real.exists():
        import pandas as pd

        frame = pd.read_csv(real).tail(bars)
        if len(frame) == bars:
            # Milliseconds whatever resolution pandas parses the times at.
            epoch = pd.Timestamp(0, tz="UTC")
            times = (pd.to_datetime(frame["timestamp"], utc=True) - epoch) // pd.Timedelta(milliseconds=1)
            names = ("open", "high", "low", "close", "volume")
            o, h, low, c, v = (frame[k].to_numpy(np.float64) for k in names)
            return (
                Candles("BTCUSDT", "1m", times.to_numpy(np.int64), o, h, low, c, v, "file"),
                f"real BTC/USDT 1m candles, the last {bars:,} of {real}",
            )
    rows = generate(PROFILES["BTCUSDT"], bars, "1m")
    o, h, low, c, v = (np.ascontiguousarray(rows[:, i]) for i in range(1, 6))
    candles = Candles("BTCUSDT", "1m", rows[:, 0].astype(np.int64), o, h, low, c, v, "sample")
    why = "no 1-minute file in ../shared/data" if SHARED_DATA.exists() else "no ../shared/data here"
    return candles, f"SAMPLE (synthetic) BTCUSDT 1m candles from utils/market_data/sample.py ({why})"


def combinations() -> list[dict[str, int]]:
    return [{"fast": f, "slow": s} for f in FAST for s in SLOW]


STRATEGY: SignalFactory = partial(strategy_registry.resolve, "sma_crossover")


class InProcess:
    """The serial reference: `Compute.map` in this process, one task after the other."""

    name = "this process"
    workers = 1

    def map(
        self,
        fn: Callable[[S, T], R],
        items: Sequence[T],
        shared: S,
        *,
        progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[R]:
        return [fn(shared, item) for item in items]

    def close(self) -> None:
        pass


@dataclass
class Measured:
    label: str
    seconds: float
    first_seconds: float  # the warm-up run: pool start (spawn, imports) or cluster connection included
    identical: bool
    peak_rss: list[int]  # bytes, per worker process


def sweep_once(compute: Compute, candles: Candles) -> list[dict[str, Any]]:
    return run_combinations(compute, STRATEGY, combinations(), candles, CONFIG)


def measure(
    label: str,
    compute: Compute,
    candles: Candles,
    runs: int,
    reference: list[dict[str, Any]] | None,
    worker_pids: Callable[[], list[int]],
) -> tuple[Measured, list[dict[str, Any]]]:
    start = time.perf_counter()
    rows = sweep_once(compute, candles)
    first = time.perf_counter() - start
    # One more untimed run: a worker's heap grows to its working set over its first tasks (page faults
    # the runs after it no longer pay).
    sweep_once(compute, candles)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        again = sweep_once(compute, candles)
        times.append(time.perf_counter() - start)
        assert _same(again, rows), f"{label}: a rerun gave other metrics"
    identical = reference is None or _same(rows, reference)
    peaks = [_peak_rss(pid) for pid in worker_pids()]
    return Measured(label, statistics.median(times), first, identical, peaks), rows


def _same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    # repr: NaN equals NaN, and every float compares bit for bit.
    return repr(a) == repr(b)


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _local_worker_pids() -> list[int]:
    """This process's spawned pool workers (not multiprocessing's resource tracker)."""
    pids = []
    for child in psutil.Process().children(recursive=True):
        command = " ".join(child.cmdline())
        if "multiprocessing" in command and "spawn_main" in command and "resource_tracker" not in command:
            pids.append(child.pid)
    return pids


def _half_sweep(bars: int, half: int, ready: Any, seconds: Any) -> None:
    """In a fresh process: half the combinations, serially, started with the other half's process."""
    tune_allocator()
    candles, _ = bench_candles(bars)
    items = combinations()[half::2]
    run_combinations(InProcess(), STRATEGY, items[:2], candles, CONFIG)  # imports, numba's cache
    ready.wait()
    start = time.perf_counter()
    run_combinations(InProcess(), STRATEGY, items, candles, CONFIG)
    seconds.put(time.perf_counter() - start)


def machine_ceiling(bars: int, runs: int) -> float:
    """Seconds for the sweep split over two plain processes running at once, each serial (no pool, no
    cluster): what two cores of this machine give this work at best. Memory traffic, not the Python
    code, bounds a backtest of 1,000,000 bars, so two cores share more than their clocks."""
    context = multiprocessing.get_context("spawn")
    times: list[float] = []
    for _ in range(runs):
        ready, seconds = context.Barrier(2), context.Queue()
        workers = [context.Process(target=_half_sweep, args=(bars, h, ready, seconds)) for h in (0, 1)]
        for worker in workers:
            worker.start()
        times.append(max(seconds.get(timeout=600), seconds.get(timeout=600)))
        for worker in workers:
            worker.join()
    return statistics.median(times)


@contextmanager
def local(workers: int) -> Iterator[Compute]:
    compute = make_compute(None, workers)
    try:
        yield compute
    finally:
        compute.close()


# --- the optimiser --------------------------------------------------------------------------------------


def optimiser_trials_per_second(
    compute: Compute, candles: Candles, trials: int, runs: int
) -> tuple[float, str]:
    """Median trials per second of the optimiser's search (TPE, fast x slow over the sweep's ranges, the
    study in a temporary SQLite database) on `candles`, and a note; (nan, why) when it cannot run."""
    try:
        from backtester.optimize import search as opt
        from strategy_engine.spec import IntTunable
    except ImportError as exc:
        return float("nan"), f"not measured: {exc}"
    space = {
        "fast": IntTunable(type="int", low=FAST[0], high=FAST[-1], step=3),
        "slow": IntTunable(type="int", low=SLOW[0], high=SLOW[-1], step=20),
    }
    shared = opt.Shared(candles, opt.Recipe(builtin="sma_crossover"), CONFIG, "sharpe")
    rates = []
    with tempfile.TemporaryDirectory(prefix="research-bench-") as folder:
        storage = f"sqlite:///{folder}/optuna.db"
        for run in range(runs + 1):  # the first run warms the workers' imports for the optimiser's code
            start = time.perf_counter()
            opt.search(
                compute,
                shared,
                space,
                start=0,
                end=len(candles),
                n_trials=trials,
                sampler="tpe",
                direction="maximize",
                constraints=opt.Constraints(),
                storage=storage,
                study_name=f"bench-{uuid.uuid4().hex}",
                seed=run,
            )
            if run:
                rates.append(trials / (time.perf_counter() - start))
    return statistics.median(rates), f"{trials} TPE trials per run, the study in SQLite"


# --- the table ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--opt-bars", type=int, default=100_000)
    parser.add_argument("--opt-trials", type=int, default=64)
    args = parser.parse_args()

    # The references run with the allocator settings the workers get, so they differ by the pool alone.
    tune_allocator()
    load_before = os.getloadavg()[0]
    candles, data_note = bench_candles(args.bars)
    serial, reference = measure("this process, serially", InProcess(), candles, args.runs, None, list)
    split = machine_ceiling(args.bars, args.runs)
    ceiling = Measured("2 serial processes at once (ceiling)", split, 0.0, True, [])
    with local(1) as compute:
        one, _ = measure("1 local worker", compute, candles, args.runs, reference, _local_worker_pids)
    with local(2) as compute:
        two, _ = measure("2 local workers", compute, candles, args.runs, reference, _local_worker_pids)
        opt_candles = bench_candles(args.opt_bars)[0]
        opt_local, opt_note = optimiser_trials_per_second(compute, opt_candles, args.opt_trials, args.runs)
    # Workers given room above what they use, so the memory they report is theirs, not Dask's spilling.
    with dask_cluster(2, memory_limit="4GB") as cluster:
        compute = make_compute(cluster.address, 1)
        try:
            pids = lambda: list(cluster.worker_pids().values())  # noqa: E731
            dask, _ = measure("2 Dask workers (local cluster)", compute, candles, args.runs, reference, pids)
            opt_dask, _ = optimiser_trials_per_second(compute, opt_candles, args.opt_trials, args.runs)
        finally:
            compute.close()
    load_after = os.getloadavg()[0]

    print(
        f"\n{len(FAST) * len(SLOW)} sma_crossover combinations (fast {FAST[0]}..{FAST[-1]} x slow "
        f"{SLOW[0]}..{SLOW[-1]}) on {len(candles):,} 1m bars; median of {args.runs} runs; "
        f"{psutil.cpu_count()} CPU cores, load average {load_before:.2f} before, {load_after:.2f} after"
    )
    print(f"data: {data_note}\n")
    print(
        f"| {'sweep on':<36} | {'seconds':>8} | {'vs 1 local':>10} | {'first run':>9} | {'same rows':>9} "
        f"| {'peak RSS per worker':<22} |"
    )
    print(f"|{'-' * 38}|{'-' * 10}|{'-' * 12}|{'-' * 11}|{'-' * 11}|{'-' * 24}|")
    for m in (serial, ceiling, one, two, dask):
        peaks = ", ".join(f"{p / MB:.0f} MB" for p in m.peak_rss) or "-"
        first = f"{m.first_seconds:9.2f}" if m.first_seconds else f"{'-':>9}"
        print(
            f"| {m.label:<36} | {m.seconds:8.2f} | {one.seconds / m.seconds:9.2f}x | {first} | "
            f"{'yes' if m.identical else 'NO':>9} | {peaks:<22} |"
        )
    for label, rate in (("2 local workers", opt_local), ("2 Dask workers", opt_dask)):
        shown = "-" if rate != rate else f"{rate:.1f}"
        row = f"optimiser, trials/s, {label}"
        print(f"| {row:<36} | {shown:>8} | {'':>10} | {'':>9} | {'':>9} | {'':<22} |")
    print(f"optimiser: {opt_note}, {args.opt_bars:,} bars of the same data (trials/s in the seconds column)")
    print()
    for m in (two, dask):
        ratio = one.seconds / m.seconds
        verdict = "meets" if ratio >= 1.7 else "MISSES"
        print(f"{m.label} / 1 local worker: {ratio:.2f}x ({verdict} the 1.7x target)")
    print(
        f"two plain processes / one on this work (this machine's ceiling): {serial.seconds / split:.2f}x; "
        f"1 local worker / this process: {serial.seconds / one.seconds:.2f}x"
    )
    worst = max(p for m in (one, two, dask) for p in m.peak_rss)
    print(f"largest worker peak RSS: {worst / MB:.0f} MB ({'under' if worst < 1024 * MB else 'OVER'} 1 GB)")


if __name__ == "__main__":
    main()
