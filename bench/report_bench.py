"""Report benchmark: the HTML report of a large backtest, its size and its time to first render in a browser.

Run from the project root: ``.venv/bin/python bench/report_bench.py`` (``--help`` for sizes). Needs Debian's
Chromium (``.ci/system-deps`` installs it), driven headless by Playwright's Python package.

For each size in ``--bars`` (default 17,520 and 1,000,000 one-minute candles: the sample generator's
*synthetic* BTCUSDT series, stored as an imported file), a backtest of the built-in sma_crossover (10/20, a
2% stop, fee 0.001) runs and is stored as ``POST /api/backtest`` stores it; then its report is built as
``GET /api/backtest/{id}/report`` builds it (``backtester.report``) and written to a file. Columns:

* trades: the backtest's closed trades (the page draws at most 1,000 markers per kind and lists 500 rows);
* build: median seconds to build the page on the server (reading the stored result and candles,
  computing the indicators, downsampling, writing the HTML);
* HTML: the page's size in bytes (target: under 5 MB at 1,000,000 bars), with plotly.js embedded;
* first chart, all charts: median milliseconds from navigation start to the first chart drawn and to every
  chart drawn, as the page itself measures them (``window.reportTiming``), over ``--runs`` fresh pages, each
  in a new browser context (no cache), a 1280x900 viewport (target: all charts within 3,000 ms at
  1,000,000 bars);
* wall: median milliseconds from asking the browser to open the file to the page saying it has drawn
  everything, measured here.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import strategy_registry  # noqa: E402
from backtester import report, service  # noqa: E402
from backtester.runner import BacktestConfig  # noqa: E402
from db import storage  # noqa: E402
from strategy_engine.store import StrategyStore  # noqa: E402
from tests.support import browser  # noqa: E402
from utils.market_data.candles import CandleStore  # noqa: E402
from utils.market_data.market import MarketData  # noqa: E402
from utils.market_data.sample import PROFILES, generate  # noqa: E402

SIZE_LIMIT = 5_000_000
RENDER_LIMIT_MS = 3000.0


def build_page(tmp: Path, bars: int) -> tuple[str, int, float]:
    """The report page of a backtest over `bars` synthetic 1-minute candles: (HTML, trades, build seconds)."""
    engine = storage.make_engine(f"sqlite:///{tmp / 'bench.db'}")
    storage.upgrade_to_head(engine)
    sessions = storage.make_session_factory(engine)
    store = CandleStore(tmp / "store")
    store.merge("file", "BTCUSDT", "1m", generate(PROFILES["BTCUSDT"], bars=bars, interval="1m"))
    market = MarketData(store, None, sessions, lambda: 4_000_000_000_000, tmp)
    strategy = strategy_registry.resolve("sma_crossover", {"fast": 10, "slow": 20})
    request = service.BacktestRequest("BTCUSDT", "1m", None, None, BacktestConfig(stop_loss=0.02))
    stored = service.run_and_store(market, sessions, strategy, request)
    strategies = StrategyStore(sessions, tmp / "strategies")
    times, page = [], ""
    for _ in range(3):
        started = time.perf_counter()
        page = report.backtest_report_html(sessions, store, strategies, stored.run.id, 0)
        times.append(time.perf_counter() - started)
    engine.dispose()
    return page, len(stored.trades), statistics.median(times)


def render_times(path: Path, runs: int) -> tuple[float, float, float]:
    """Median (first chart, all charts, wall) milliseconds over `runs` fresh pages."""
    first, every, wall = [], [], []
    with browser.chromium() as chromium:
        for _ in range(runs):
            with browser.page(chromium) as (tab, log):
                started = time.perf_counter()
                tab.goto(path.as_uri())
                browser.wait_rendered(tab)
                wall.append((time.perf_counter() - started) * 1000)
                timing = tab.evaluate("window.reportTiming")
                first.append(float(timing["first"]))
                every.append(float(timing["all"]))
                if log.console_errors or log.page_errors or [u for u in log.requests if u != path.as_uri()]:
                    raise SystemExit(f"the page misbehaved: {log}")
    return statistics.median(first), statistics.median(every), statistics.median(wall)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bars", type=int, nargs="+", default=[17_520, 1_000_000])
    parser.add_argument("--runs", type=int, default=5, help="browser loads per size")
    args = parser.parse_args()
    if browser.chromium_path() is None:
        raise SystemExit("Chromium is not installed: run .ci/system-deps (it apt-installs Debian's chromium)")
    rows = []
    for bars in args.bars:
        with tempfile.TemporaryDirectory() as folder:
            tmp = Path(folder)
            page, trades, build = build_page(tmp, bars)
            path = tmp / "report.html"
            path.write_text(page)
            first, every, wall = render_times(path, args.runs)
            rows.append((bars, trades, build, len(page.encode()), first, every, wall))
    print(
        f"Backtest report (sma_crossover 10/20 on synthetic 1m candles), median of {args.runs} browser loads"
    )
    header = f"{'bars':>10} {'trades':>8} {'build s':>8} {'HTML bytes':>11} {'first chart ms':>15}"
    print(header + f" {'all charts ms':>14} {'wall ms':>8}")
    for bars, trades, build, size, first, every, wall in rows:
        print(
            f"{bars:>10,} {trades:>8,} {build:>8.2f} {size:>11,} {first:>15.0f} {every:>14.0f} {wall:>8.0f}"
        )
    largest = max(rows, key=lambda r: r[0])
    size_ok = largest[3] < SIZE_LIMIT
    time_ok = largest[5] < RENDER_LIMIT_MS
    print(
        f"targets at {largest[0]:,} bars: HTML < {SIZE_LIMIT:,} bytes: {'yes' if size_ok else 'NO'}; "
        f"all charts within {RENDER_LIMIT_MS:.0f} ms: {'yes' if time_ok else 'NO'}"
    )


if __name__ == "__main__":
    main()
