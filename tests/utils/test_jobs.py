"""The job runner when the server stops: running jobs stop at their next checkpoint, queued ones never
start, and both are recorded as interrupted (not as cancelled by a user), so a SIGTERM during a
training ends the server promptly and says what happened."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from db import storage
from main import create_app
from tests.support.http import AUTH, ctx_of
from tests.support.server import wait_until
from tests.support.settings import make_settings
from utils.jobs import INTERRUPTED_MESSAGE, JobRunner, Report


def test_a_shutdown_stops_running_jobs_and_never_starts_queued_ones(client: TestClient) -> None:
    sessions = ctx_of(client).sessions
    runner = JobRunner(sessions, max_workers=1)
    started = threading.Event()
    never = threading.Event()

    def work(report: Report) -> dict[str, Any]:
        started.set()
        while True:  # checkpoints until told to stop, as a training does between folds
            report(0.5, "working")
            never.wait(0.01)

    running = runner.submit("train", {"symbol": "BTCUSDT"}, work)
    queued = runner.submit("train", {"symbol": "ETHUSDT"}, work)
    assert started.wait(10)
    runner.shutdown(timeout=10)
    rows = {job.id: storage.get_job(sessions, job.id) for job in (running, queued)}
    for row in rows.values():
        assert row is not None and (row.status, row.message) == ("failed", INTERRUPTED_MESSAGE)
        assert row.finished_at is not None
    queued_row = rows[queued.id]
    assert queued_row is not None and queued_row.started_at is None, "the queued job never ran"


def test_the_app_stopping_during_a_training_records_it_as_interrupted(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path))) as client:
        job = client.post("/api/agents/BTCUSDT/train", headers=AUTH).json()

        def running() -> bool:
            return bool(client.get(f"/api/jobs/{job['id']}", headers=AUTH).json()["status"] == "running")

        wait_until(running, timeout=30, what="the training to start")
    with TestClient(create_app(make_settings(tmp_path))) as client:
        after = client.get(f"/api/jobs/{job['id']}", headers=AUTH).json()
        assert (after["status"], after["message"]) == ("failed", INTERRUPTED_MESSAGE)
        assert client.get("/api/agents/BTCUSDT/models", headers=AUTH).json()["models"] == []
        assert client.get("/api/agents/BTCUSDT", headers=AUTH).json()["active_version"] is None
