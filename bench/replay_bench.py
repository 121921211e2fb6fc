"""Benchmark: a Mother AI replay of two symbols over two years of hourly candles, by phase.

Run from the repo root: ``.venv/bin/python bench/replay_bench.py [--runs R] [--retrain-mode refit|full]``.
Data: the deterministic sample series (BTCUSDT and ETHUSDT, 17,520 1h candles each), or with ``--shared``
the real BTC/USDT 2h candles of ../shared/data (one symbol). The agents are the default BTC and ETH agents
(logistic regression, random forest and gradient boosting candidates, 5 folds), retraining every 168
candles after a 6,000-candle warm-up, zero costs and no confidence floor so the loop trades.

Prints one table: the median (min, max) of R runs of each phase of ``run_replay`` -- training (every
retrain), prediction (batched per model window, plus resolution and weights), the decision loop with full
decision payloads, the comparisons (each voter alone, equal weights, buy and hold) -- and the decision
loop's decisions per second; then the whole replay, the compressed size of what the service stores, and
the peak resident memory of the process. Targets (exit status 1 if missed): whole replay within 120 s,
decision loop at least 2,000 decisions per second, peak memory under 1 GB.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import numpy as np
from sqlalchemy import select

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agents import btc_agent, eth_agent  # noqa: E402
from db import storage  # noqa: E402
from db.models import ReplayChunk, ReplayRun  # noqa: E402
from mother_ai.fills import CostModel  # noqa: E402
from mother_ai.policy import RiskLimits  # noqa: E402
from mother_ai.replay import ReplayInputs, ReplayParams, ReplayResult, run_replay  # noqa: E402
from mother_ai.replay_service import CHUNK_STEPS, ReplayRequest, save_result  # noqa: E402
from utils.market_data.candles import Candles  # noqa: E402
from utils.market_data.market import SAMPLE_FILTERS  # noqa: E402
from utils.market_data.sample import PROFILES, generate  # noqa: E402

TARGET_TOTAL_S = 120.0
TARGET_DECISIONS_PER_S = 2000.0
TARGET_PEAK_MB = 1024.0


def sample_inputs() -> tuple[dict[str, Candles], str]:
    candles = {}
    for symbol, profile in PROFILES.items():
        rows = generate(profile)
        candles[symbol] = Candles(
            symbol,
            "1h",
            rows[:, 0].astype(np.int64),
            rows[:, 1],
            rows[:, 2],
            rows[:, 3],
            rows[:, 4],
            rows[:, 5],
            "sample",
        )
    return candles, "1h"


def shared_inputs() -> tuple[dict[str, Candles], str]:
    import pandas as pd

    path = ROOT.parent / "shared" / "data" / "BTC_USDT_2h.csv"
    if not path.exists():
        sys.exit(f"{path} is missing (it lives beside the project, see its README)")
    frame = pd.read_csv(path)
    times = pd.to_datetime(frame["timestamp"], utc=True).astype("int64") // 1_000_000
    o, h, lo, c, v = (frame[name].to_numpy(np.float64) for name in ("open", "high", "low", "close", "volume"))
    candles = Candles("BTCUSDT", "2h", times.to_numpy(np.int64), o, h, lo, c, v, "file")
    return {"BTCUSDT": candles}, "2h"


def stored_bytes(result: ReplayResult, params: ReplayParams) -> int:
    """What the replay service stores for `result` (series and decision chunks), measured in a real SQLite."""
    with tempfile.TemporaryDirectory() as folder:
        engine = storage.make_engine(f"sqlite:///{folder}/bench.db")
        storage.upgrade_to_head(engine)
        sessions = storage.make_session_factory(engine)
        first, last = int(result.step_times[0]), int(result.step_times[-1])
        request = ReplayRequest(
            params.symbols,
            params.interval,
            first,
            last,
            params.initial_balance,
            params.retrain_every,
            params.warmup,
        )
        save_result(sessions, "bench", "bench", request, result, [])
        with sessions() as session:
            series = sum(len(r.series) for r in session.scalars(select(ReplayRun)))
            chunks = sum(len(c.payload) for c in session.scalars(select(ReplayChunk)))
        engine.dispose()
    return series + chunks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--retrain-mode", choices=("refit", "full"), default="refit")
    parser.add_argument("--retrain-every", type=int, default=168)
    parser.add_argument("--warmup", type=int, default=6000)
    parser.add_argument("--shared", action="store_true", help="real BTC/USDT 2h candles from ../shared/data")
    args = parser.parse_args()
    candles, interval = shared_inputs() if args.shared else sample_inputs()
    configs = {"BTCUSDT": btc_agent.default_config(), "ETHUSDT": eth_agent.default_config()}
    agents = {s: replace(configs[s], interval=interval) for s in candles}
    params = ReplayParams(
        symbols=tuple(sorted(candles)),
        interval=interval,
        warmup=args.warmup,
        retrain_every=args.retrain_every,
        initial_balance=Decimal("10000"),
        quote_asset="USDT",
        costs=CostModel(0.0, 0.0),
        limits=RiskLimits(min_confidence=0.0),
        retrain_mode=args.retrain_mode,
    )
    inputs = ReplayInputs(candles, agents, [], {f.symbol: f for f in SAMPLE_FILTERS})
    phases: dict[str, list[float]] = {
        "training": [],
        "prediction": [],
        "decision loop": [],
        "comparisons": [],
    }
    totals: list[float] = []
    rates: list[float] = []
    result = None
    for _ in range(max(1, args.runs)):
        started = time.perf_counter()
        result = run_replay(params, inputs)
        total = time.perf_counter() - started
        totals.append(total)
        t = result.timings
        phases["training"].append(t["training"])
        phases["prediction"].append(t["prediction"])
        phases["decision loop"].append(t["decision"])
        phases["comparisons"].append(total - t["training"] - t["prediction"] - t["decision"])
        rates.append(len(result.main.decisions) / t["decision"])
    assert result is not None
    steps = len(result.main.decisions)
    stored = stored_bytes(result, params)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def row(name: str, values: list[float], unit: str = "s") -> str:
        return (
            f"| {name:<28} | {statistics.median(values):>10.2f} {unit:<5} | {min(values):>9.2f} | "
            f"{max(values):>9.2f} |"
        )

    source = "shared BTC/USDT 2h" if args.shared else "sample BTCUSDT+ETHUSDT 1h"
    retrains = sum(1 for r in result.retrains if r["ok"])
    print(
        f"Replay of {len(candles)} symbol(s), {source}, {max(len(c) for c in candles.values())} candles, "
        f"warm-up {args.warmup}, {steps} decision steps, retrain every {args.retrain_every} "
        f"({retrains} trainings, mode {args.retrain_mode}), {len(result.main.fills)} fills; "
        f"median (min, max) of {len(totals)} run(s)"
    )
    print("| phase                        |     median       |       min |       max |")
    print("|------------------------------|------------------|-----------|-----------|")
    for name, values in phases.items():
        print(row(name, values))
    print(row("whole replay", totals))
    print(row("decisions per second", rates, "/s"))
    print(
        f"stored result (series + decision chunks, as saved): {stored / 1e6:.2f} MB "
        f"({CHUNK_STEPS} steps a chunk)"
    )
    print(f"peak resident memory: {peak_mb:.0f} MB")
    ok = (
        statistics.median(totals) <= TARGET_TOTAL_S
        and statistics.median(rates) >= TARGET_DECISIONS_PER_S
        and peak_mb <= TARGET_PEAK_MB
    )
    print(
        f"targets: whole replay <= {TARGET_TOTAL_S:.0f} s, >= {TARGET_DECISIONS_PER_S:.0f} decisions/s, "
        f"peak <= {TARGET_PEAK_MB:.0f} MB: {'met' if ok else 'MISSED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
