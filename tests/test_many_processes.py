"""Three API processes on one PostgreSQL, as `uvicorn --workers 3` or three hosts run them: they start
together on a fresh database (migrations run once, under a lock), 60 concurrent decide-and-execute calls
spread across them keep every risk limit and record exactly the fills they report, and exactly one of them
holds the scheduler; a job submitted to one process finishes in another when the process running it is
killed, and a cancel sent to any process stops a job wherever it runs."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from tests.support.process import ENDED, install_env, server_processes
from tests.support.server import wait_until
from tests.support.settings import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}
MAX_POSITION = Decimal("0.1")
TRADING = {
    "paper_fee_rate": "0",
    "paper_slippage_bps": "0",
    "risk_min_confidence": "0",
    "risk_max_position_fraction": str(MAX_POSITION),
    "scheduler_enabled": "true",
    "scheduler_symbols": "BTCUSDT",
}


def test_three_processes_on_one_postgresql_share_one_set_of_limits(pg_url: str, tmp_path: Path) -> None:
    env = install_env(tmp_path / "install", database_url=pg_url, **TRADING)
    logs = [tmp_path / f"server-{i}.log" for i in range(3)]
    with server_processes(env, logs) as servers:
        urls = [s.url for s in servers]
        with httpx.Client(headers=AUTH, timeout=120) as client:
            job = client.post(f"{urls[0]}/api/agents/BTCUSDT/train").json()
            wait_until(
                lambda: client.get(f"{urls[1]}/api/jobs/{job['id']}").json()["status"] in ENDED,
                timeout=300,
                what="the training (seen from another process)",
            )
            assert client.get(f"{urls[2]}/api/jobs/{job['id']}").json()["status"] == "done"

            def decide(i: int) -> dict[str, Any]:
                response = client.post(f"{urls[i % 3]}/api/mother-ai/decide", json={"execute": True})
                assert response.status_code == 200, response.text
                body: dict[str, Any] = response.json()
                return body

            with ThreadPoolExecutor(12) as pool:
                outcomes = list(pool.map(decide, range(60)))
            orders = client.get(f"{urls[1]}/api/orders", params={"limit": 500}).json()["orders"]
            portfolio = client.get(f"{urls[2]}/api/portfolio").json()
            health = [client.get(f"{url}/api/health").json() for url in urls]

    reported = {
        o["order"]["id"] for o in outcomes if o["order"] and Decimal(o["order"]["executed_quantity"]) > 0
    }
    filled = {o["id"] for o in orders if Decimal(o["executed_quantity"]) > 0}
    assert reported == filled and len(filled) >= 2, "exactly the fills the calls reported, and some"
    assert all(o["decision"]["order_status"] != "PENDING" for o in outcomes)
    spent = sum(Decimal(o["quote_quantity"]) + Decimal(o["fee"]) for o in orders if o["side"] == "BUY")
    got = sum(Decimal(o["quote_quantity"]) - Decimal(o["fee"]) for o in orders if o["side"] == "SELL")
    usdt = next(b for b in portfolio["balances"] if b["asset"] == "USDT")
    assert Decimal(usdt["amount"]) == Decimal(10_000) - spent + got
    equity = Decimal(portfolio["equity"])
    for position in portfolio["positions"]:
        value = Decimal(position["quantity"]) * Decimal(position["mark_price"])
        assert value <= MAX_POSITION * equity, (value, equity)
    capped = [o for o in outcomes if o["decision"]["action"] != "buy"]
    assert capped, "the position limit stopped further buys once it was reached"
    assert [h["scheduler"]["leader"] for h in health].count(True) == 1


def test_a_job_outlives_the_process_running_it_and_cancels_reach_it_anywhere(
    pg_url: str, tmp_path: Path
) -> None:
    env = install_env(
        tmp_path / "install",
        database_url=pg_url,
        job_heartbeat_seconds="0.5",
        job_poll_interval_seconds="0.5",
    )
    logs = [tmp_path / f"server-{i}.log" for i in range(3)]
    engine = create_engine(pg_url)
    with server_processes(env, logs) as servers, httpx.Client(headers=AUTH, timeout=120) as client:
        by_pid = {server.process.pid: server for server in servers}

        def runner_of(job_id: str) -> int | None:
            with engine.connect() as connection:
                owner = connection.execute(
                    text("SELECT owner FROM jobs WHERE id = :id AND status = 'running'"), {"id": job_id}
                ).scalar()
            return None if owner is None else int(str(owner).split(":")[1])

        job = client.post(f"{servers[0].url}/api/agents/BTCUSDT/train").json()
        wait_until(lambda: runner_of(job["id"]) is not None, timeout=60, what="a process to take the job")
        doomed = by_pid[runner_of(job["id"]) or 0]
        doomed.process.kill()  # kill -9: no shutdown, no last word in the database
        doomed.process.wait(10)
        alive = [server for server in servers if server is not doomed]
        url = f"{alive[0].url}/api/jobs/{job['id']}"
        wait_until(lambda: client.get(url).json()["status"] in ENDED, timeout=300, what="the job to finish")
        finished = client.get(url).json()
        assert (finished["status"], finished["attempts"]) == ("done", 2), finished
        agent = client.get(f"{alive[1].url}/api/agents/BTCUSDT").json()
        assert agent["active_version"] == finished["result"]["version"]

        # A cancel sent to a process that does not run the job still stops it.
        other = client.post(f"{alive[0].url}/api/agents/ETHUSDT/train").json()
        wait_until(lambda: runner_of(other["id"]) is not None, timeout=60, what="a process to take the job")
        runs_it = runner_of(other["id"])
        sender = next(s for s in alive if s.process.pid != runs_it)
        asked = client.post(f"{sender.url}/api/jobs/{other['id']}/cancel")
        assert asked.status_code == 200 and asked.json()["cancel_requested"] is True, asked.text
        ended = f"{sender.url}/api/jobs/{other['id']}"
        wait_until(lambda: client.get(ended).json()["status"] in ENDED, timeout=60, what="the cancel")
        assert client.get(ended).json()["status"] == "cancelled"
        assert client.get(f"{sender.url}/api/agents/ETHUSDT").json()["active_version"] is None
    engine.dispose()
