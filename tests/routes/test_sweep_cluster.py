"""POST /api/backtest/sweep on a real Dask cluster (COMPUTE_SCHEDULER): the same rows as on local processes,
and a clear 503 when the configured scheduler does not answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from main import create_app
from tests.support.dask_cluster import DaskCluster
from tests.support.http import AUTH, ctx_of
from tests.support.settings import make_settings

# Each test's limit, its cluster's start included: a call that stops getting results fails, not hangs.
pytestmark = pytest.mark.timeout(240)

SWEEP = {
    "symbol": "BTCUSDT",
    "interval": "1h",
    "strategy": "sma_crossover",
    "params": {},
    "grid": {"fast": [5, 10, 20, 40], "slow": [20, 30, 60]},  # (20, 20), (40, 20), (40, 30) are rejected
    "stop_loss": 0.03,
    "rank_by": "sharpe",
}


def _sweep(folder: Path, **settings: Any) -> tuple[str, dict[str, Any]]:
    with TestClient(create_app(make_settings(folder, **settings)), raise_server_exceptions=False) as client:
        response = client.post("/api/backtest/sweep", json=SWEEP, headers=AUTH)
        assert response.status_code == 200, response.text
        return ctx_of(client).compute.name, response.json()


def test_a_sweep_on_the_cluster_equals_the_local_one_row_for_row(
    dask_cluster: DaskCluster, tmp_path: Path
) -> None:
    backend, on_cluster = _sweep(tmp_path / "cluster", compute_scheduler=dask_cluster.address)
    assert backend == "dask"
    local_backend, local = _sweep(tmp_path / "local", compute_local_workers=2)
    assert local_backend == "local"
    assert on_cluster == local  # every metric of every row, bit for bit, in the same ranked order
    assert on_cluster["combinations"] == 12
    assert [r["params"] for r in on_cluster["results"] if r["rank"] is None] == [
        {"fast": 20, "slow": 20},
        {"fast": 40, "slow": 20},
        {"fast": 40, "slow": 30},
    ]


def test_an_unreachable_scheduler_is_a_503_naming_it(tmp_path: Path) -> None:
    address = "tcp://127.0.0.1:9"  # discard: nothing listens there
    with TestClient(create_app(make_settings(tmp_path, compute_scheduler=address))) as client:
        response = client.post("/api/backtest/sweep", json=SWEEP, headers=AUTH)
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "compute_unavailable"
    assert address in error["message"] and "COMPUTE_SCHEDULER" in error["message"]
