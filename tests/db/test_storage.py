"""db/storage.py: migrations to head, SQLite pragmas, a job left running by a stopped process."""

from __future__ import annotations

import socket
from pathlib import Path

from sqlalchemy import inspect, text

from db import storage
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
