"""Load benchmark: throughput and p50/p99 under concurrent clients, against one API process and three on
one PostgreSQL, and the offline speed of a server whose Binance is unreachable (the circuit breaker).

Every configuration is real ``uvicorn main:app`` processes on 127.0.0.1 over a fresh temporary install with
the offline sample data; PostgreSQL is a throwaway cluster from Debian's server binaries
(tests/support/postgres.py). Each load runs for a fixed time (``--seconds``) with ``--clients`` threads,
spreading requests round-robin over the configuration's processes:

* health: GET /api/health
* candles: GET /api/binance/candles?limit=500
* backtest: POST /api/backtest, sma_crossover on the sample's 1h BTCUSDT candles
* writes: a mix of strategy saves (each one measures the strategy's health) and decides without execution

After the load every server's log is searched for ERROR lines; the table counts them beside the 5xx
answers. Run: ``.venv/bin/python bench/load_bench.py`` (about two minutes on two cores).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.postgres import fresh_database, postgres_cluster
from tests.support.process import install_env, server_processes
from tests.support.settings import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}
SPEC = {
    "symbol": "BTCUSDT",
    "interval": "1h",
    "entry": {"left": {"price": "close"}, "op": ">", "right": {"indicator": "sma", "params": {"period": 20}}},
    "exit": {"left": {"price": "close"}, "op": "<", "right": {"indicator": "sma", "params": {"period": 20}}},
}
Request = Callable[[httpx.Client, str, int], httpx.Response]


def health(client: httpx.Client, url: str, _i: int) -> httpx.Response:
    return client.get(f"{url}/api/health")


def candles(client: httpx.Client, url: str, _i: int) -> httpx.Response:
    params: dict[str, str | int] = {"symbol": "BTCUSDT", "interval": "1h", "limit": 500}
    return client.get(f"{url}/api/binance/candles", params=params)


def backtest(client: httpx.Client, url: str, _i: int) -> httpx.Response:
    body = {"symbol": "BTCUSDT", "interval": "1h", "strategy": "sma_crossover", "params": {"fast": 10}}
    return client.post(f"{url}/api/backtest", json=body)


def writes(client: httpx.Client, url: str, i: int) -> httpx.Response:
    if i % 2:
        return client.post(f"{url}/api/mother-ai/decide", json={"execute": False})
    return client.post(f"{url}/api/strategies", json={**SPEC, "name": f"load {time.time_ns()} {i}"})


LOADS: dict[str, Request] = {"health": health, "candles": candles, "backtest": backtest, "writes": writes}


@dataclass
class Row:
    config: str
    load: str
    requests: int
    per_s: float
    p50_ms: float
    p99_ms: float
    errors_5xx: int
    other: int  # 4xx: a bug in the load or the server


def run_load(urls: list[str], name: str, request: Request, seconds: float, clients: int) -> Row:
    latencies: list[float] = []
    statuses: list[int] = []
    counter = itertools.count()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        with httpx.Client(headers=AUTH, timeout=120) as client:
            while time.monotonic() < deadline:
                i = next(counter)
                start = time.perf_counter()
                try:
                    status = request(client, urls[i % len(urls)], i).status_code
                except httpx.HTTPError:
                    status = 599  # no answer counts as a server error
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    statuses.append(status)

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.monotonic() - started
    ordered = sorted(latencies)
    return Row(
        "",
        name,
        len(ordered),
        len(ordered) / took,
        statistics.median(ordered) * 1000,
        ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000,
        sum(s >= 500 for s in statuses),
        sum(400 <= s < 500 for s in statuses),
    )


def log_errors(logs: list[Path]) -> int:
    return sum(" ERROR " in line for log in logs for line in log.read_text(errors="replace").splitlines())


def configuration(
    label: str, env: dict[str, str], count: int, folder: Path, loads: list[str], seconds: float, clients: int
) -> tuple[list[Row], int]:
    logs = [folder / f"{label.replace(' ', '-')}-{i}.log" for i in range(count)]
    rows = []
    with server_processes(env, logs) as servers:
        urls = [server.url for server in servers]
        with httpx.Client(headers=AUTH, timeout=300) as client:
            job = client.post(f"{urls[0]}/api/agents/BTCUSDT/train").json()
            while client.get(f"{urls[0]}/api/jobs/{job['id']}").json()["status"] in ("queued", "running"):
                time.sleep(0.2)  # a bench, not a test: waiting for the training to end
        for name in loads:
            row = run_load(urls, name, LOADS[name], seconds, clients)
            row.config = label
            rows.append(row)
    return rows, log_errors(logs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="each load's duration")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client threads")
    args = parser.parse_args()
    rows: list[Row] = []
    errors: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="load-bench-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        server = stack.enter_context(postgres_cluster())
        for label, count in (("1 process, PostgreSQL", 1), ("3 processes, PostgreSQL", 3)):
            folder = root / label.replace(" ", "-").replace(",", "")
            env = install_env(folder, database_url=fresh_database(server), log_level="INFO")
            loads = list(LOADS)
            found, errors[label] = configuration(label, env, count, root, loads, args.seconds, args.clients)
            rows += found
        # Binance unreachable (a name that never resolves: a machine without network) against OFFLINE=true.
        for label, extra in (
            ("1 process, OFFLINE=true", {}),
            ("1 process, Binance unreachable", {"offline": "false", "binance_api_url": "http://api.binance.invalid/api"}),
        ):
            folder = root / label.replace(" ", "-").replace(",", "").replace("=", "")
            env = install_env(folder, **extra)
            found, errors[label] = configuration(label, env, 1, root, ["candles"], args.seconds, args.clients)
            rows += found

    print(f"\n{args.clients} concurrent clients, {args.seconds:.0f} s per load; latencies in ms\n")
    columns = ("requests", "req/s", "p50", "p99", "5xx", "4xx")
    widths = (8, 8, 8, 8, 5, 5)
    cells = " ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True))
    header = f"{'configuration':32} {'load':9} {cells}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.config:32} {r.load:9} {r.requests:8d} {r.per_s:8.1f} {r.p50_ms:8.1f} {r.p99_ms:8.1f} "
            f"{r.errors_5xx:5d} {r.other:5d}"
        )
    print()
    for label, count in errors.items():
        print(f"ERROR lines in the logs of {label}: {count}")
    by = {(r.config, r.load): r for r in rows}
    for load in LOADS:
        one, three = by[("1 process, PostgreSQL", load)], by[("3 processes, PostgreSQL", load)]
        print(f"{load}: 3 processes / 1 process throughput = {three.per_s / one.per_s:.2f}x")
    offline = by[("1 process, OFFLINE=true", "candles")]
    away = by[("1 process, Binance unreachable", "candles")]
    print(f"candles with Binance unreachable / OFFLINE=true throughput = {away.per_s / offline.per_s:.2f}x")


if __name__ == "__main__":
    main()
