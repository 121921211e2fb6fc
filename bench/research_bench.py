"""Research benchmark (issue 13): a sweep on each compute backend, memory per worker, optimiser speed.

Run from the project root: ``.venv/bin/python bench/research_bench.py`` (``--help`` for sizes; needs the dev
requirements, which include requirements-distributed.txt). It prints one table; every time is the median of
``--runs`` runs in this one process, after two untimed warm-up runs per backend (a backend's pool or cluster
is started once and kept, as the app keeps it; "first run" is the first of those, pool start included).
The runs of backends compared with each other alternate: 1 plain process, 2 plain processes, 1 again, ...;
likewise the two local pools and the two clusters, which are open together (the cluster not being measured
is paused, SIGSTOP, so its heartbeats do not take a core's time from the other). This shared VM's speed
drifts by a quarter within minutes, and measured one block after the other, a drift lands on one side of
a ratio.

* The sweep: the built-in ``sma_crossover`` over a 16 x 16 grid of fast x slow (256 combinations, all valid),
  each combination a full backtest (indicators, signals, engine, metrics) on ``--bars`` 1-minute bars: the
  work of ``POST /api/backtest/sweep`` (``backtester.service.run_combinations``, on the same data).
  - this process, serially: the reference without any pool (what one core does);
  - 1 plain process alone, 2 plain processes at once: the combinations run by one fresh process, then
    split over two started together, no pool and no cluster; their ratio is what this machine's two
    cores give this work at best (its ceiling; memory traffic, not only Python, bounds a backtest of
    1,000,000 bars, so two cores share more than their clocks);
  - 1 local worker, 2 local workers: ``utils.compute.LocalCompute`` (spawned processes);
  - 1 Dask worker, 2 Dask workers: a real local cluster, a scheduler and one or two single-threaded
    workers as separate processes on 127.0.0.1 (tests/support/dask_cluster.py), with the settings the
    README gives a cluster (``utils.compute.CLUSTER_ENV``, the allocator's), through
    ``utils.compute.DaskCompute``, which sends the candles to the workers directly.
  The table's ratios are against 1 local worker measured in the same run; the target (>= 1.7x for two
  workers) is judged 2 local / 1 local and 2 Dask / 1 Dask, each both as the ratio of the medians and as
  the median of each round's paired ratio (the two runs of a round are seconds apart), and met only when
  both reach it. Every
  backend's 256 metric rows are checked equal to the serial reference's.
* Peak memory per worker: the high-water RSS (VmHWM, Linux) of each worker process after its sweeps:
  interpreter, numpy, pandas, numba and (on Dask) the worker's own machinery included. Target < 1 GB.
* Walk-forward: ``--wf-windows`` rolling windows of ``--wf-trials`` trials each on 2 local workers, the
  windows searched together (what the app runs) against one after another; winners checked equal.
* Optimiser trials per second (``optimiser_trials_per_second``): the optimiser's search
  (backtester/optimize/search.py) over the same strategy on ``--opt-bars`` bars, TPE, its study in a
  temporary SQLite database as the app keeps it, on 2 local workers and on the 2 Dask workers.

Every process here (the references too) runs with the allocator settings utils/compute/pool.py gives its
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
import signal
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
from utils.compute import Compute, ComputeStatus, make_compute, tune_allocator  # noqa: E402
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

    def status(self) -> ComputeStatus:
        return ComputeStatus("local", None, True, 1, 1, None)

    def close(self) -> None:
        pass


@dataclass
class Measured:
    label: str
    seconds: float
    first_seconds: float  # the warm-up run: pool start (spawn, imports) or cluster connection included
    identical: bool
    peak_rss: list[int]  # bytes, per worker process
    runs: list[float]  # each timed run's seconds, in order: round k of every backend is runs[k]


def paired(base: Measured, other: Measured) -> float:
    """The median over rounds of base's run / other's run in the same round: measured a few seconds apart,
    the two runs of a round share the machine's speed at that moment, which a ratio of medians taken
    over different rounds does not."""
    return statistics.median(b / o for b, o in zip(base.runs, other.runs, strict=True))


def sweep_once(compute: Compute, candles: Candles) -> list[dict[str, Any]]:
    return run_combinations(compute, STRATEGY, combinations(), candles, CONFIG)


@dataclass(frozen=True)
class Backend:
    label: str
    compute: Compute
    pids: Callable[[], list[int]]  # its worker processes, for their peak memory
    # Process groups it keeps running while idle (a cluster's scheduler, nannies and workers), paused
    # while another backend is measured: see `measure`.
    groups: Sequence[int] = ()


@contextmanager
def _paused(groups: Sequence[int]) -> Iterator[None]:
    """Stop every process of `groups` (SIGSTOP) for the block, and let them go on after (SIGCONT)."""
    stopped = []
    try:
        for group in groups:
            os.killpg(group, signal.SIGSTOP)
            stopped.append(group)
        yield
    finally:
        for group in stopped:
            os.killpg(group, signal.SIGCONT)


def measure(
    backends: Sequence[Backend],
    candles: Candles,
    runs: int,
    reference: list[dict[str, Any]] | None,
) -> tuple[list[Measured], list[list[dict[str, Any]]]]:
    """Each backend's median sweep time, and the rows of its first run. The backends' runs alternate (one
    run of each, `runs` times over), so a drift of this shared machine's speed during the bench falls on
    all of them alike rather than on whichever was measured while it lasted.

    While one backend runs, the others' idle processes are paused: an idle Dask cluster's heartbeats and
    monitors take 1.7% (one worker) to 3.7% (two) of a core here, which a sweep that keeps both cores
    busy pays and one that leaves a core free does not, a bias against two workers that a user, with one
    cluster, never sees. An idle local pool's processes wait on a pipe and need no pausing."""

    def sweep(index: int) -> list[dict[str, Any]]:
        others = [g for j, b in enumerate(backends) if j != index for g in b.groups]
        with _paused(others):
            return sweep_once(backends[index].compute, candles)

    firsts, rows = [], []
    for index in range(len(backends)):
        start = time.perf_counter()
        rows.append(sweep(index))
        firsts.append(time.perf_counter() - start)
        # One more untimed run: a worker's heap grows to its working set over its first tasks (page
        # faults the runs after it no longer pay).
        sweep(index)
    times: list[list[float]] = [[] for _ in backends]
    for _ in range(runs):
        for index, (backend, timed, first_rows) in enumerate(zip(backends, times, rows, strict=True)):
            start = time.perf_counter()
            again = sweep(index)
            timed.append(time.perf_counter() - start)
            assert _same(again, first_rows), f"{backend.label}: a rerun gave other metrics"
    measured = [
        Measured(
            backend.label,
            statistics.median(timed),
            first,
            reference is None or _same(first_rows, reference),
            [_peak_rss(pid) for pid in backend.pids()],
            timed,
        )
        for backend, timed, first, first_rows in zip(backends, times, firsts, rows, strict=True)
    ]
    return measured, rows


def _serial(candles: Candles, runs: int) -> tuple[Measured, list[dict[str, Any]]]:
    """The serial reference in this process, and its rows (every backend's must equal them)."""
    (serial,), (rows,) = measure([Backend("this process, serially", InProcess(), list)], candles, runs, None)
    return serial, rows


def _same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    # repr: NaN equals NaN, and every float compares bit for bit.
    return repr(a) == repr(b)


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _pool_pids(compute: Compute) -> Callable[[], list[int]]:
    """The worker processes of one local pool (two pools are open at once while measured)."""

    def pids() -> list[int]:
        pool = getattr(compute, "_pool", None)  # LocalCompute's pool: the bench's view of its processes
        return list((getattr(pool, "_processes", None) or {}).keys())

    return pids


def _part_sweep(bars: int, part: int, parts: int, ready: Any, seconds: Any) -> None:
    """In a fresh process: every `parts`-th combination from `part` on, serially, started together with
    the other parts' processes."""
    tune_allocator()
    candles, _ = bench_candles(bars)
    items = combinations()[part::parts]
    run_combinations(InProcess(), STRATEGY, items[:2], candles, CONFIG)  # imports, numba's cache
    ready.wait()
    start = time.perf_counter()
    run_combinations(InProcess(), STRATEGY, items, candles, CONFIG)
    seconds.put(time.perf_counter() - start)


def plain_processes(bars: int, processes: int) -> float:
    """Seconds for the sweep split over `processes` fresh plain processes running at once, each serial
    (no pool, no cluster). One process alone against two at once is what two cores of this machine give
    this work at best: memory traffic, not only the Python code, bounds a backtest of 1,000,000 bars, so
    two cores share more than their clocks."""
    context = multiprocessing.get_context("spawn")
    ready, seconds = context.Barrier(processes), context.Queue()
    workers = [
        context.Process(target=_part_sweep, args=(bars, part, processes, ready, seconds))
        for part in range(processes)
    ]
    for worker in workers:
        worker.start()
    elapsed: float = max(seconds.get(timeout=600) for _ in workers)
    for worker in workers:
        worker.join()
    return elapsed


def plain_ceiling(bars: int, runs: int) -> tuple[list[float], list[float]]:
    """Seconds of each run of 1 plain process and of 2 at once, their runs alternating (see `measure`)."""
    alone, split = [], []
    for _ in range(runs):
        alone.append(plain_processes(bars, 1))
        split.append(plain_processes(bars, 2))
    return alone, split


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


def walk_forward_seconds(
    compute: Compute, candles: Candles, windows: int, trials: int, runs: int
) -> tuple[float, float]:
    """Median seconds of a walk-forward optimisation of `windows` rolling windows, `trials` TPE trials
    each, the studies in a temporary SQLite database: the windows searched together (what the app runs,
    ``walk_forward.run_windows``) and one after another (each window its own search and scoring, as
    before windows shared the workers). The winners are checked equal."""
    from backtester.optimize import search as opt
    from backtester.optimize import walk_forward as wf
    from backtester.optimize.windows import walk_forward_windows
    from strategy_engine.spec import IntTunable

    space = {
        "fast": IntTunable(type="int", low=FAST[0], high=FAST[-1], step=3),
        "slow": IntTunable(type="int", low=SLOW[0], high=SLOW[-1], step=20),
    }
    recipe = opt.Recipe(builtin="sma_crossover")
    shared = opt.Shared(candles, recipe, CONFIG, "sharpe")
    parts = walk_forward_windows(len(candles), windows, mode="rolling")
    together, alone = [], []
    with tempfile.TemporaryDirectory(prefix="research-bench-wf-") as folder:
        common: dict[str, Any] = {
            "n_trials": trials,
            "sampler": "tpe",
            "direction": "maximize",
            "constraints": opt.Constraints(),
            "storage": f"sqlite:///{folder}/optuna.db",
            "seed": 1,
        }
        for run in range(runs + 1):  # the first run of each is a warm-up
            start = time.perf_counter()
            joint = wf.run_windows(compute, shared, recipe, space, parts, study_prefix=f"t{run}", **common)
            if run:
                together.append(time.perf_counter() - start)
            start = time.perf_counter()
            single = [
                wf.run_windows(compute, shared, recipe, space, [w], study_prefix=f"a{run}-{i}", **common)[0]
                for i, w in enumerate(parts)
            ]
            if run:
                alone.append(time.perf_counter() - start)
            winners = [r.search.winner for r in joint], [r.search.winner for r in single]
            if winners[0] != winners[1]:
                raise AssertionError("walk-forward winners differ between joint and one-by-one windows")
    return statistics.median(together), statistics.median(alone)


# --- the table ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--opt-bars", type=int, default=100_000)
    parser.add_argument("--opt-trials", type=int, default=64)
    parser.add_argument("--wf-windows", type=int, default=4)
    parser.add_argument("--wf-trials", type=int, default=16)
    args = parser.parse_args()

    # The references run with the allocator settings the workers get, so they differ by the pool alone.
    tune_allocator()
    load_before = os.getloadavg()[0]
    candles, data_note = bench_candles(args.bars)
    serial, reference = _serial(candles, args.runs)
    alone, split = plain_ceiling(args.bars, args.runs)
    plain_one = Measured("1 plain process alone", statistics.median(alone), 0.0, True, [], alone)
    ceiling = Measured("2 plain processes at once (ceiling)", statistics.median(split), 0.0, True, [], split)
    with local(1) as compute_one, local(2) as compute:
        (one, two), _ = measure(
            [
                Backend("1 local worker", compute_one, _pool_pids(compute_one)),
                Backend("2 local workers", compute, _pool_pids(compute)),
            ],
            candles,
            args.runs,
            reference,
        )
        compute_one.close()  # idle from here on; the optimiser and walk-forward run on two workers
        opt_candles = bench_candles(args.opt_bars)[0]
        opt_local, opt_note = optimiser_trials_per_second(compute, opt_candles, args.opt_trials, args.runs)
        wf_joint, wf_alone = walk_forward_seconds(
            compute, opt_candles, args.wf_windows, args.wf_trials, args.runs
        )
    # Workers given room above what they use, so the memory they report is theirs, not Dask's spilling.
    # Both clusters run at once, so their runs alternate as the local pools' do.
    with dask_cluster(1, memory_limit="4GB") as cluster_one, dask_cluster(2, memory_limit="4GB") as cluster:
        compute_one, compute = make_compute(cluster_one.address, 1), make_compute(cluster.address, 1)
        try:
            (dask_one, dask), _ = measure(
                [
                    Backend(
                        "1 Dask worker",
                        compute_one,
                        lambda: list(cluster_one.worker_pids().values()),
                        [p.pid for p in cluster_one.processes],
                    ),
                    Backend(
                        "2 Dask workers",
                        compute,
                        lambda: list(cluster.worker_pids().values()),
                        [p.pid for p in cluster.processes],
                    ),
                ],
                candles,
                args.runs,
                reference,
            )
            compute_one.close()
            with _paused([p.pid for p in cluster_one.processes]):
                opt_dask, _ = optimiser_trials_per_second(compute, opt_candles, args.opt_trials, args.runs)
        finally:
            compute_one.close()
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
    for m in (serial, plain_one, ceiling, one, two, dask_one, dask):
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
    for label, seconds in (("windows together", wf_joint), ("windows one after another", wf_alone)):
        row = f"walk-forward, {label}"
        print(f"| {row:<36} | {seconds:8.2f} | {'':>10} | {'':>9} | {'yes':>9} | {'':<22} |")
    print(f"optimiser: {opt_note}, {args.opt_bars:,} bars of the same data (trials/s in the seconds column)")
    print(
        f"walk-forward: {args.wf_windows} rolling windows x {args.wf_trials} TPE trials on 2 local workers, "
        f"{args.opt_bars:,} bars; together / one after another: {wf_alone / wf_joint:.2f}x faster"
    )
    print()
    # Judged on both: the ratio of the medians, and the median of each round's paired ratio.
    for m, base in ((two, one), (dask, dask_one)):
        ratio, pair = base.seconds / m.seconds, paired(base, m)
        verdict = "meets" if min(ratio, pair) >= 1.7 else "MISSES"
        print(
            f"{m.label} / {base.label}: {ratio:.2f}x, paired by round {pair:.2f}x ({verdict} the 1.7x target)"
        )
    print(f"1 Dask worker / 1 local worker: {dask_one.seconds / one.seconds:.2f}x the time")
    print(
        f"two plain processes / one on this work (this machine's ceiling): "
        f"{plain_one.seconds / ceiling.seconds:.2f}x, paired by round {paired(plain_one, ceiling):.2f}x; "
        f"1 local worker / this process: {serial.seconds / one.seconds:.2f}x"
    )
    worst = max(p for m in (one, two, dask_one, dask) for p in m.peak_rss)
    print(f"largest worker peak RSS: {worst / MB:.0f} MB ({'under' if worst < 1024 * MB else 'OVER'} 1 GB)")


if __name__ == "__main__":
    main()
