"""Sync speed and politeness: one year of 1-minute candles from an exchange that answers at once.

Runs the real sync path (python-binance -> BinanceExchange -> MarketData -> Parquet store) against
the fake Binance server from tests/fakes on 127.0.0.1, then re-syncs the same range.
Target (issue 2): about 526,000 candles stored within 60 s; a re-sync makes at most 1-2 requests;
request weight stays under the limit. Run: .venv/bin/python bench/sync_bench.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db import storage
from tests.fakes.fake_binance import FakeBinance
from utils.binance_api import BinanceExchange
from utils.market_data.candles import CandleStore
from utils.market_data.market import MarketData

YEAR_START = 1_672_531_200_000  # 2023-01-01
YEAR_END = 1_704_067_200_000 - 60_000  # last minute of 2023


def main() -> None:
    with FakeBinance(now_ms=1_709_251_200_000) as fake, tempfile.TemporaryDirectory() as tmp:
        engine = storage.make_engine(f"sqlite:///{tmp}/bench.db")
        storage.upgrade_to_head(engine)
        sessions = storage.make_session_factory(engine)
        pauses: list[float] = []
        exchange = BinanceExchange(api_url=fake.url, clock=lambda: fake.now_ms, sleep=pauses.append)
        market = MarketData(
            CandleStore(Path(tmp) / "store"), exchange, sessions, lambda: fake.now_ms, Path(tmp)
        )

        start = time.perf_counter()
        first = market.sync("BTCUSDT", "1m", YEAR_START, YEAR_END)
        first_s = time.perf_counter() - start
        weights = [int(r.headers.get("X-MBX-USED-WEIGHT-1M", 0)) for r in fake.requests]
        start = time.perf_counter()
        again = market.sync("BTCUSDT", "1m", YEAR_START, YEAR_END)
        again_s = time.perf_counter() - start
        peak_weight = exchange.used_weight

    print("Sync of one year of 1m BTCUSDT candles from a local fake Binance (answers at once)")
    print("| run     | candles added | stored  | requests | seconds | target        |")
    print("|---------|---------------|---------|----------|---------|---------------|")
    runs = (("first", first, first_s, "<= 60 s"), ("re-sync", again, again_s, "<= 2 requests"))
    for name, report, seconds, target in runs:
        print(
            f"| {name:<7} | {report.added:13,} | {report.stored:7,} | {report.requests:8} | {seconds:7.2f} "
            f"| {target:<13} |"
        )
    print(
        f"weight: {first.requests * 2} spent in total, last X-MBX-USED-WEIGHT-1M seen {peak_weight} "
        f"(limit 6000, pause at 90%); pauses taken: {len(pauses)}; requests recorded: {len(weights)}"
    )


if __name__ == "__main__":
    main()
