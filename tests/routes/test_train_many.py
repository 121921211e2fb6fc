"""POST /api/agents/train: several agents trained in one job, their fits side by side on the compute
backend (local worker processes, or a real Dask cluster, one of whose workers is killed mid-job), each
model registered and activated; one training per agent at a time whichever way it was asked for."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from main import create_app
from tests.support.dask_cluster import DaskCluster
from tests.support.http import AUTH, ctx_of, wait_for_job
from tests.support.server import wait_until
from tests.support.settings import make_settings

# Each test's limit, its cluster's start included: a call that stops getting results fails, not hangs.
pytestmark = pytest.mark.timeout(240)

SYMBOLS = ["BTCUSDT", "ETHUSDT"]


def _check_trained(client: TestClient, job: dict[str, Any]) -> None:
    assert job["status"] == "done", job
    results = {r["symbol"]: r for r in job["result"]["results"]}
    assert sorted(results) == SYMBOLS
    for symbol, result in results.items():
        assert result["error"] is None and result["version"], result
        agent = client.get(f"/api/agents/{symbol}", headers=AUTH).json()
        assert agent["active_version"] == result["version"], "registered and activated"
        models = client.get(f"/api/agents/{symbol}/models", headers=AUTH).json()
        assert [m["version"] for m in models["models"]] == [result["version"]]
        assert result["metrics"] == models["models"][0]["metrics"]


def test_several_agents_train_in_one_job_and_one_training_per_agent_holds(client: TestClient) -> None:
    started = client.post("/api/agents/train", json={"symbols": SYMBOLS}, headers=AUTH)
    assert started.status_code == 202, started.text
    assert started.json()["kind"] == "train_many"
    again = client.post("/api/agents/train", json={"symbols": ["ETHUSDT"]}, headers=AUTH)
    single = client.post("/api/agents/BTCUSDT/train", headers=AUTH)
    for refused in (again, single):
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "training_in_progress"
    _check_trained(client, wait_for_job(client, started.json(), timeout=900))
    unknown = client.post("/api/agents/train", json={"symbols": ["BTCUSDT", "XRPUSDT"]}, headers=AUTH)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "agent_not_found"


def test_a_dask_worker_killed_mid_training_loses_no_agent(dask_cluster: DaskCluster, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, compute_scheduler=dask_cluster.address)
    try:
        with TestClient(create_app(settings)) as client:
            assert ctx_of(client).compute.name == "dask"
            victim = next(iter(dask_cluster.worker_pids().values()))
            started = client.post("/api/agents/train", json={"symbols": SYMBOLS}, headers=AUTH).json()

            def fitting() -> bool:
                job = client.get(f"/api/jobs/{started['id']}", headers=AUTH).json()
                return bool(job["status"] == "running" and job["message"].startswith("fitting"))

            wait_until(fitting, timeout=120, what="the fits to be on the workers")
            os.kill(victim, signal.SIGKILL)  # mid-fit: its task is computed again on another worker
            _check_trained(client, wait_for_job(client, started, timeout=900))
    finally:
        dask_cluster.wait_for_workers(2)  # the nanny restarts the killed worker for the next tests
