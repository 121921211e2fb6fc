"""db/storage.py: migrations to head, SQLite pragmas, relaxed transactions, a job left running by a stopped
process."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.orm import Session

from db import storage
from db.models import SymbolInfo
from tests.support.http import ctx_of


def test_migrations_reach_head_and_are_idempotent(tmp_path: Path) -> None:
    engine = storage.make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    storage.upgrade_to_head(engine)
    storage.upgrade_to_head(engine)
    tables = set(inspect(engine).get_table_names())
    assert {"alembic_version", "jobs", "symbols"} <= tables
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000


def test_a_job_left_running_by_a_stopped_process_resumes_after_an_app_restart(tmp_path: Path) -> None:
    import subprocess
    import sys

    from fastapi.testclient import TestClient

    from main import create_app
    from tests.support.http import wait_for_job
    from tests.support.settings import make_settings

    settings = make_settings(tmp_path)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True
    )
    dead_owner = f"{socket.gethostname()[:40]}:{int(gone.stdout)}:deadbeef"
    with TestClient(create_app(settings)) as client:
        sessions = ctx_of(client).sessions
        end = ctx_of(client).clock()
        params = {"symbol": "BTCUSDT", "interval": "1h", "start": end - 3_600_000 * 50, "end": end}
        storage.create_job(sessions, "d" * 32, "sync", params, running_as=dead_owner, now_ms=end)
        storage.update_job(sessions, "d" * 32, progress=0.4)
    with TestClient(create_app(settings)) as client:
        job = wait_for_job(client, {"id": "d" * 32}, timeout=60)
    # Offline (the test settings): the resumed sync ends with the project's error, not as "interrupted".
    assert (job["status"], job["error"]["code"], job["attempts"]) == ("failed", "offline", 2)


# How each database reports "this commit waits for the disk" (durable) and "it does not" (relaxed).
DURABILITY = {
    "sqlite": ("PRAGMA synchronous", 2, 1),  # FULL, NORMAL
    "postgresql": ("SHOW synchronous_commit", "on", "off"),
}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_relaxed_transaction_relaxes_only_itself(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    engine = storage.make_engine(url)
    storage.upgrade_to_head(engine)
    sessions = storage.make_session_factory(engine)
    query, durable, relaxed = DURABILITY[backend]

    def setting(session: Session) -> tuple[object, int]:
        raw = session.connection().connection.dbapi_connection
        return session.execute(text(query)).scalar(), id(raw)

    with storage.transaction(sessions) as session:
        assert setting(session)[0] == durable
    with storage.transaction(sessions, durable=False) as session:
        inside, connection = setting(session)
        session.add(
            SymbolInfo(
                symbol="BTCUSDT",
                status="TRADING",
                base_asset="BTC",
                quote_asset="USDT",
                tick_size="0.01",
                step_size="0.00001",
                min_qty="0.00001",
                max_qty="9000",
                min_notional="5",
                source="sample",
            )
        )
    assert inside == relaxed
    for _ in range(2):  # the next transactions are durable again
        with storage.transaction(sessions) as session:
            now, again = setting(session)
            assert now == durable
            # SQLite's setting lives on the connection: the same pooled one must be the one restored.
            assert again == connection or backend != "sqlite"
    with sessions() as session:
        assert session.get(SymbolInfo, "BTCUSDT") is not None  # committed all the same
    engine.dispose()
