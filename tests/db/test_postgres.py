"""The same code on PostgreSQL: a real server the suite starts (tests/support/postgres.py), a fresh
database per test, `DATABASE_URL=postgresql+psycopg://...` and no other change."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from db import storage
from main import create_app
from tests.support.http import AUTH, ctx_of, wait_for_job
from tests.support.settings import make_settings


def test_app_runs_on_postgres(pg_url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, database_url=pg_url)
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/health").json()["database"] is True
        symbols = client.get("/api/binance/symbols", headers=AUTH).json()
        assert {s["symbol"] for s in symbols["symbols"]} == {"BTCUSDT", "ETHUSDT"}
        sessions = ctx_of(client).sessions
        params = {"symbol": "BTCUSDT", "interval": "1h", "start": 1_700_000_000_000, "end": 1_700_360_000_000}
        storage.create_job(sessions, "e" * 32, "sync", params, now_ms=ctx_of(client).clock())
        # Left running by a process from before jobs had owners: the next start takes it up again.
        storage.update_job(sessions, "e" * 32, status="running", progress=0.5, attempts=1)
    with TestClient(create_app(settings)) as client:
        job = wait_for_job(client, {"id": "e" * 32}, timeout=60)
        # Offline test settings: the rerun fails with the project's error, by a process that ran it.
        assert (job["status"], job["error"]["code"], job["attempts"], job["params"]) == (
            "failed",
            "offline",
            2,
            params,
        )
        assert isinstance(job["created_at"], int) and job["created_at"] > 1_600_000_000_000  # epoch ms


def test_paper_orders_on_postgres_fill_once_and_balance(pg_url: str, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor
    from decimal import Decimal

    from mother_ai.trade_executer import OrderRequest, PaperExecutor, list_orders

    settings = make_settings(tmp_path, database_url=pg_url)
    with TestClient(create_app(settings)) as client:
        ctx = ctx_of(client)
        executor = PaperExecutor(settings.paper, ctx.sessions, ctx.market)
        initial = executor.portfolio().balances["USDT"]

        def buy(i: int) -> str:
            # Ids repeat in pairs: each pair must fill once between them.
            return executor.submit(
                OrderRequest("BTCUSDT", "BUY", quote_amount=Decimal(50), client_order_id=f"pg-{i // 2}")
            ).client_order_id

        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(buy, range(16)))
        orders, total = list_orders(ctx.sessions, "paper", limit=100)
        assert total == 8 == len(set(ids))
        spent = sum((o.quote_quantity + o.fee for o in orders), Decimal(0))
        assert executor.portfolio().balances["USDT"] == initial - spent
