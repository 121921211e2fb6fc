"""API benchmark: the real app behind a real uvicorn on 127.0.0.1, on a temporary SQLite install.

Run from the project root: ``.venv/bin/python bench/api_bench.py`` (``--help`` for sizes and options). It
prints one table; every reference is measured in the same run. The server is ``uvicorn main:app`` in its
own process, configured by environment as ``make run`` is, so the load's client threads never share its
interpreter (or its GIL).

Data: ``--bars`` (200,000) 1-minute BTCUSDT candles, imported through ``POST /api/binance/import``: the
last ones of ``../shared/data/BTC_USDT_1m.csv`` when that file exists, else the sample generator's
*synthetic* 1-minute series (the output says which). The agent: BTCUSDT trained once through
``POST /api/agents/BTCUSDT/train`` (or reused from ``--install``, a copy of a trained install).

Rows:

* POST /api/backtest over HTTP: the built-in sma_crossover (``--fast``/``--slow``, 10/20: about 5,500
  trades on the synthetic series), fee 0.001 per side, full trade list and a 2,000-point curve in the
  body; from the request sent to the body's last byte received. Every timed contender below runs in
  ``--rounds`` interleaved rounds (backtesting.py once per round, each of ours ``--runs`` times), so a
  shared machine's drifting speed hits both sides of each ratio alike; each figure is a median.
* backtesting.py: FractionalBacktest running the same crossover in this process on the same candles
  (its trades' entry and exit bars are checked equal to ours; exit status 1 if they differ). Target:
  at least 50x the HTTP time.
* engine + store in-process: ``backtester.service.run_and_store`` called directly in this process on
  the same install (candles from the store, signals, engine, stored row). Target: HTTP at most 3x it.
* GET /api/backtest/{id}: the stored backtest read back over HTTP.
* Under load (``--threads`` threads, each sending ``--requests`` requests cycling through the three
  endpoints below; a bench client holds ``GET /api/stream`` open meanwhile): p50 and p99 of
  GET /api/binance/candles (1m, limit 5000), GET /api/agents/BTCUSDT/predict and
  POST /api/mother-ai/decide, and of the stream's latency: from a ``POST /api/mother-ai/halt`` being
  sent to its ``kill_switch`` event arriving (each halt is followed by a resume).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import strategy_registry  # noqa: E402
from backtester import service  # noqa: E402
from bench.references import backtesting_py_sma_cross  # noqa: E402
from main import create_app  # noqa: E402
from routes.backtest import BacktestBody  # noqa: E402
from routes.common import AppContext  # noqa: E402
from tests.support.server import SseReader  # noqa: E402
from tests.support.settings import load_settings  # noqa: E402
from utils.market_data.candles import Candles  # noqa: E402
from utils.market_data.sample import PROFILES, generate  # noqa: E402

SHARED_1M = ROOT.parent / "shared" / "data" / "BTC_USDT_1m.csv"
API_KEY = "bench-api-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
SYMBOL = "BTCUSDT"
FEE = 0.001
TARGET_VS_BACKTESTING_PY = 50.0  # at least
TARGET_VS_IN_PROCESS = 3.0  # at most
TIMEOUT = httpx.Timeout(120.0)


def install_values(path: Path) -> dict[str, Any]:
    """An offline install in `path` (the layout of tests/support/settings.py, so a copy of the tests'
    trained install can be passed as --install)."""
    return {
        "database_url": f"sqlite:///{path / 'test.db'}",
        "api_key": API_KEY,
        "data_dir": path / "data",
        "env_file_path": path / ".env",
        "models_dir": path / "models",
        "strategies_dir": path / "strategies",
        "trade_log_dir": path / "logs",
        "trade_export_dir": path / "exports",
        "offline": True,
        "log_level": "WARNING",
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def uvicorn_server(install: Path) -> Iterator[str]:
    """`uvicorn main:app` serving the install until the block ends; yields its base URL."""
    env = {**os.environ, **{key.upper(): str(value) for key, value in install_values(install).items()}}
    env["PYTHONPATH"] = str(ROOT)
    env["LOG_LEVEL"] = "INFO"  # as `make run` serves (into server.log); this process logs warnings only
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "main:app", "--host", "127.0.0.1", "--port", str(port)]
    # cwd is the install: no developer's .env or storage/ folder is read or written.
    with open(install / "server.log", "wb") as log:
        server = subprocess.Popen([*command, "--no-access-log"], cwd=install, env=env, stdout=log, stderr=log)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{base}/api/health", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the server did not start; see {install / 'server.log'}")
                time.sleep(0.2)
            yield base
        finally:
            server.terminate()
            server.wait(timeout=60)


def candle_csv(bars: int) -> tuple[bytes, str]:
    """A plain OHLCV CSV (epoch-ms timestamps) of `bars` 1m candles, and what they are."""
    if SHARED_1M.exists():
        frame = pd.read_csv(SHARED_1M).tail(bars)
        return frame.to_csv(index=False).encode(), f"real BTC/USDT 1m candles ({SHARED_1M.name})"
    rows = generate(PROFILES[SYMBOL], bars=bars, interval="1m")
    # The generator rounds every column to 8 decimals, which moves a large float open time off its
    # exact millisecond; rint puts each back on its minute.
    rows[:, 0] = np.rint(rows[:, 0])
    frame = pd.DataFrame(rows[:, 1:], columns=["open", "high", "low", "close", "volume"])
    frame.insert(0, "timestamp", rows[:, 0].astype(np.int64))
    label = f"SYNTHETIC sample 1m series (no {SHARED_1M.name} in ../shared/data)"
    return frame.to_csv(index=False, float_format="%.8f").encode(), label


def expect(response: httpx.Response, *status: int) -> httpx.Response:
    """The response, if its status is one of `status` (200 by default); timings never parse bodies."""
    if response.status_code not in (status or (200,)):
        request = response.request
        raise SystemExit(f"{request.method} {request.url}: {response.status_code} {response.text[:500]}")
    return response


def ok(response: httpx.Response, *status: int) -> Any:
    return expect(response, *status).json()


def prepare_agent(http: httpx.Client) -> str:
    """A trained BTCUSDT agent: the install's own, or trained now through the API."""
    if ok(http.get(f"/api/agents/{SYMBOL}"))["active_version"] is not None:
        return "agent: BTCUSDT reused from --install"
    start = time.perf_counter()
    job = ok(http.post(f"/api/agents/{SYMBOL}/train"), 202)
    while job["status"] in ("queued", "running"):
        time.sleep(0.5)
        job = ok(http.get(f"/api/jobs/{job['id']}"))
    if job["status"] != "done":
        raise SystemExit(f"training failed: {job}")
    seconds = time.perf_counter() - start
    return f"agent: BTCUSDT trained through POST /api/agents/{SYMBOL}/train ({seconds:.0f} s)"


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def backtesting_py(candles: Candles, fast: int, slow: int) -> pd.DataFrame:
    """The crossover in backtesting.py (bench/references.py): its trades."""
    trades: pd.DataFrame = backtesting_py_sma_cross(candles, fast, slow, FEE)["_trades"]
    return trades


@dataclass
class LoadResult:
    latencies: dict[str, list[float]]  # what was measured -> ms
    seconds: float


def load_phase(base: str, threads: int, requests: int) -> LoadResult:
    """`threads` clients cycling through the three endpoints while a stream client is open and a prober
    halts (timed until its event arrives on the stream) and resumes the kill switch, until they finish."""
    calls: list[tuple[str, Callable[[httpx.Client], httpx.Response]]] = [
        (
            "GET /api/binance/candles (1m, limit 5000)",
            lambda c: c.get(
                "/api/binance/candles", params={"symbol": SYMBOL, "interval": "1m", "limit": 5000}
            ),
        ),
        (f"GET /api/agents/{SYMBOL}/predict", lambda c: c.get(f"/api/agents/{SYMBOL}/predict")),
        ("POST /api/mother-ai/decide", lambda c: c.post("/api/mother-ai/decide", json={"symbols": [SYMBOL]})),
    ]
    stream_name = "stream: halt sent -> its kill_switch event"
    latencies: dict[str, list[float]] = {name: [] for name, _ in calls}
    latencies[stream_name] = []
    failures: list[str] = []
    done = threading.Event()
    subscribed = threading.Event()
    arrivals: dict[str, float] = {}
    arrived = threading.Condition()

    def guarded(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # SystemExit from ok() too: a thread would drop it silently
                failures.append(f"{fn.__name__}: {exc}")
                subscribed.set()

        return run

    def worker(offset: int) -> None:
        with httpx.Client(base_url=base, headers=AUTH, timeout=TIMEOUT) as client:
            for i in range(requests):
                name, call = calls[(offset + i) % len(calls)]
                start = time.perf_counter()
                expect(call(client))
                latencies[name].append((time.perf_counter() - start) * 1000)

    def stream_reader() -> None:
        with (
            httpx.Client(base_url=base, headers=AUTH, timeout=TIMEOUT) as client,
            client.stream("GET", "/api/stream", params={"kinds": "kill_switch"}) as response,
        ):
            reader = SseReader(response)
            reader.next()  # the opening retry frame: subscribed from here on
            subscribed.set()
            while True:
                [event] = reader.events(1)
                state = event.data["kill_switch"]
                if state["halted"]:
                    with arrived:
                        arrivals[state["reason"]] = time.perf_counter()
                        arrived.notify_all()
                    if state["reason"] == "bench-stop":
                        return

    def probe(client: httpx.Client, reason: str) -> float:
        sent = time.perf_counter()
        ok(client.post("/api/mother-ai/halt", json={"reason": reason}))
        with arrived:
            if not arrived.wait_for(lambda: reason in arrivals, timeout=30):
                raise RuntimeError(f"no kill_switch event for {reason}")
        ok(client.post("/api/mother-ai/resume"))
        return (arrivals[reason] - sent) * 1000

    def prober() -> None:
        with httpx.Client(base_url=base, headers=AUTH, timeout=TIMEOUT) as client:
            while not done.is_set():
                latencies[stream_name].append(probe(client, f"bench-{len(latencies[stream_name])}"))
                time.sleep(0.05)
            probe(client, "bench-stop")  # ends the reader

    reader_thread = threading.Thread(target=guarded(stream_reader), daemon=True)
    reader_thread.start()
    if not subscribed.wait(30) or failures:
        raise SystemExit(f"the stream did not open: {failures}")
    helpers = [threading.Thread(target=guarded(prober))]

    def worker_at(offset: int) -> Callable[[], None]:
        def worker_() -> None:
            worker(offset)

        return worker_

    workers = [threading.Thread(target=guarded(worker_at(i))) for i in range(threads)]
    started = time.perf_counter()
    for thread in helpers + workers:
        thread.start()
    for thread in workers:
        thread.join()
    seconds = time.perf_counter() - started
    done.set()
    for thread in [*helpers, reader_thread]:
        thread.join(timeout=60)
    if failures:
        raise SystemExit("load phase failed: " + "; ".join(failures))
    return LoadResult(latencies, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=200_000)
    parser.add_argument("--fast", type=int, default=10)
    parser.add_argument("--slow", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5, help="rounds; backtesting.py runs once per round")
    parser.add_argument("--runs", type=int, default=3, help="runs per round of each of ours")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--requests", type=int, default=60, help="requests per load thread")
    parser.add_argument("--install", type=Path, help="copy of a trained install to start from")
    args = parser.parse_args()
    runs = max(args.runs, 1)
    rounds = max(args.rounds, 1)

    with tempfile.TemporaryDirectory(prefix="api-bench-") as tmp:
        install = Path(tmp) / "install"
        if args.install is not None:
            shutil.copytree(args.install, install)
        install.mkdir(exist_ok=True)
        csv, data_label = candle_csv(args.bars)
        with (
            uvicorn_server(install) as base,
            httpx.Client(base_url=base, headers=AUTH, timeout=TIMEOUT) as http,
        ):
            imported = ok(
                http.post(
                    "/api/binance/import",
                    params={"symbol": SYMBOL, "interval": "1m"},
                    files={"file": ("candles.csv", io.BytesIO(csv), "text/csv")},
                ),
                201,
            )
            agent_label = prepare_agent(http)

            body = {
                "symbol": SYMBOL,
                "interval": "1m",
                "strategy": "sma_crossover",
                "params": {"fast": args.fast, "slow": args.slow},
                "fee_rate": FEE,
            }
            first = ok(http.post("/api/backtest", json=body), 201)  # warm: numba, caches, connections
            n_bars, n_trades = first["n_bars"], len(first["trades"])
            posted = http.post("/api/backtest", json=body)
            size_mb = len(posted.content) / 1e6

            # In this process, on the same install: the service call the route makes.
            ctx: AppContext = create_app(load_settings(**install_values(install))).state.ctx
            request_body = BacktestBody.model_validate(body)
            strategy = strategy_registry.resolve(request_body.strategy, request_body.params, ctx.strategies)
            request = request_body.to_request(strategy)
            stored = service.run_and_store(ctx.market, ctx.sessions, strategy, request)
            candles = ctx.market.store.load("file", SYMBOL, "1m")
            theirs = backtesting_py(candles, args.fast, args.slow)

            # Interleaved rounds: a shared VM's speed drifts over seconds, and a ratio of two medians taken
            # a minute apart would measure the drift. Each round times every contender once.
            samples: dict[str, list[float]] = {"http": [], "get": [], "local": [], "bt": []}
            contenders: dict[str, Callable[[], object]] = {
                "http": lambda: expect(http.post("/api/backtest", json=body), 201),
                "get": lambda: expect(http.get(f"/api/backtest/{first['id']}")),
                "local": lambda: service.run_and_store(ctx.market, ctx.sessions, strategy, request),
                "bt": lambda: backtesting_py(candles, args.fast, args.slow),
            }
            for _ in range(rounds):
                for name, fn in contenders.items():
                    samples[name] += [median_ms(fn, 1) for _ in range(1 if name == "bt" else runs)]
            t_http, t_get, t_local, t_bt = (statistics.median(samples[k]) for k in samples)
            ours_bars = (stored.trades.entry_bar.tolist(), stored.trades.exit_bar.tolist())
            # backtesting.py closes a position still open at the end as one more trade; ours reports it apart.
            theirs_bars = (theirs["EntryBar"].tolist()[:n_trades], theirs["ExitBar"].tolist()[:n_trades])
            same = ours_bars == theirs_bars and len(theirs) - n_trades in (0, 1)
            ctx.engine.dispose()

            load = load_phase(base, args.threads, args.requests)

    ratio_bt = t_bt / t_http
    ratio_local = t_http / t_local
    print(f"{n_bars:,} 1m bars: {data_label}; {imported['rows']:,} rows imported by POST /api/binance/import")
    print(
        f"backtest: sma_crossover {args.fast}/{args.slow}, fee {FEE} per side: {n_trades:,} trades, "
        f"{size_mb:.1f} MB body; trades equal backtesting.py's (entry, exit bars): {'yes' if same else 'NO'}"
    )
    print(agent_label)
    print(
        f"load: {args.threads} threads x {args.requests} requests in {load.seconds:.1f} s, and meanwhile "
        "halt + resume in a loop, each halt timed until its event arrived on an open GET /api/stream"
    )
    print()
    rows: list[tuple[str, str, str, str, str]] = [
        (
            f"POST /api/backtest over HTTP ({n_trades:,} trades)",
            f"{len(samples['http'])}",
            f"{t_http:.1f}",
            "",
            "",
        ),
        (
            "backtesting.py in-process, same backtest",
            f"{len(samples['bt'])}",
            f"{t_bt:.1f}",
            "",
            f"{ratio_bt:.0f}x the HTTP time (target >= {TARGET_VS_BACKTESTING_PY:.0f}x): "
            + ("pass" if ratio_bt >= TARGET_VS_BACKTESTING_PY else "FAIL"),
        ),
        (
            "engine + store in-process (run_and_store)",
            f"{len(samples['local'])}",
            f"{t_local:.1f}",
            "",
            f"HTTP is {ratio_local:.2f}x it (target <= {TARGET_VS_IN_PROCESS:.0f}x): "
            + ("pass" if ratio_local <= TARGET_VS_IN_PROCESS else "FAIL"),
        ),
        ("GET /api/backtest/{id} over HTTP", f"{len(samples['get'])}", f"{t_get:.1f}", "", ""),
    ]
    for name, values in load.latencies.items():
        p50, p99 = np.percentile(values, [50, 99])
        rows.append((f"{name}, under load", f"{len(values)}", f"{p50:.1f}", f"{p99:.1f}", ""))
    print(f"| {'measurement':<58} | {'n':>4} | {'median/p50 ms':>13} | {'p99 ms':>7} | note")
    print(f"|{'-' * 60}|{'-' * 6}|{'-' * 15}|{'-' * 9}|{'-' * 50}")
    for name, n, median, p99, note in rows:
        print(f"| {name:<58} | {n:>4} | {median:>13} | {p99:>7} | {note}")
    if not same:  # then the ratio compares two different backtests
        raise SystemExit("backtesting.py's trades differ from ours: not the same backtest")


if __name__ == "__main__":
    main()
