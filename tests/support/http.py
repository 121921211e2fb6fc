"""Talking to the real app through a TestClient: the bearer header and waiting for a background job."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from db import storage
from tests.support.settings import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def wait_for_job(client: TestClient, job: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    """Block until `job` (a 202's body) ends in the app; its final state as GET /api/jobs/{id} shows it."""
    client.app.state.ctx.jobs.wait(job["id"], timeout=timeout)  # type: ignore[attr-defined]
    return client.get(f"/api/jobs/{job['id']}", headers=AUTH).json()  # type: ignore[no-any-return]


def cancel_unfinished_jobs(client: TestClient) -> int:
    """Ask every queued or running job of the app to stop at its next checkpoint; how many were asked."""
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    jobs, _total = storage.list_jobs(ctx.sessions, limit=10_000, offset=0)
    return sum(ctx.jobs.cancel(job.id) for job in jobs if job.status in ("queued", "running"))
