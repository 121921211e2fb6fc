"""Talking to the real app through a TestClient: the bearer header, the app and its context as their own
types, and waiting for (or cancelling) a background job."""

from __future__ import annotations

from typing import Any, cast

from fastapi import FastAPI
from fastapi.testclient import TestClient

from db import storage
from routes.common import AppContext
from tests.support.settings import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def app_of(client: TestClient) -> FastAPI:
    """The FastAPI app behind `client` (TestClient types it as any ASGI app)."""
    return cast(FastAPI, client.app)


def ctx_of(client: TestClient) -> AppContext:
    """The AppContext ``create_app`` built for the app behind `client` (app.state holds it untyped)."""
    return cast(AppContext, app_of(client).state.ctx)


def wait_for_job(client: TestClient, job: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    """Block until `job` (a 202's body) ends in the app; its final state as GET /api/jobs/{id} shows it."""
    ctx_of(client).jobs.wait(job["id"], timeout=timeout)
    return client.get(f"/api/jobs/{job['id']}", headers=AUTH).json()


def cancel_unfinished_jobs(client: TestClient) -> int:
    """Ask every queued or running job of the app to stop at its next checkpoint; how many were asked."""
    ctx = ctx_of(client)
    jobs, _total = storage.list_jobs(ctx.sessions, limit=10_000, offset=0)
    return sum(ctx.jobs.cancel(job.id) is not None for job in jobs if job.status in ("queued", "running"))
