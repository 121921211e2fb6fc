"""db/storage.py: migrations to head, SQLite pragmas, jobs interrupted by a restart."""

from __future__ import annotations

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


def test_interrupted_jobs_are_marked_failed(tmp_path: Path) -> None:
    engine = storage.make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    storage.upgrade_to_head(engine)
    sessions = storage.make_session_factory(engine)
    storage.create_job(sessions, "a" * 32, "sync", {})
    storage.create_job(sessions, "b" * 32, "sync", {})
    storage.update_job(sessions, "b" * 32, status="running")
    storage.create_job(sessions, "c" * 32, "sync", {})
    storage.update_job(sessions, "c" * 32, status="done")
    assert storage.fail_interrupted_jobs(sessions) == 2
    statuses = {job.id[0]: (job.status, job.message) for job in storage.list_jobs(sessions, 10, 0)[0]}
    assert statuses["a"] == ("failed", "interrupted by a server restart")
    assert statuses["b"][0] == "failed"
    assert statuses["c"][0] == "done"


def test_jobs_survive_and_are_failed_across_an_app_restart(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from main import create_app
    from tests.support.http import AUTH
    from tests.support.settings import make_settings

    settings = make_settings(tmp_path)
    with TestClient(create_app(settings)) as client:
        sessions = ctx_of(client).sessions
        storage.create_job(sessions, "d" * 32, "train", {"symbol": "BTCUSDT"})
        storage.update_job(sessions, "d" * 32, status="running", progress=0.4)
    with TestClient(create_app(settings)) as client:
        job = client.get(f"/api/jobs/{'d' * 32}", headers=AUTH).json()
    assert job["status"] == "failed"
    assert job["progress"] == 0.4
    assert "restart" in job["message"]
