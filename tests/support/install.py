"""A whole offline install on disk (database, models, candle store, strategies, logs), trained once and
copied into each test that needs trained agents: a copy starts from the same state, and whatever the test
does to it stays in its own tmp_path."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from main import create_app
from tests.support.http import AUTH, wait_for_job
from tests.support.settings import make_settings

DEFAULT_AGENTS = ("BTCUSDT", "ETHUSDT")


@dataclass(frozen=True)
class TrainedInstall:
    path: Path  # pass a copy's folder to make_settings, as for any tmp_path
    jobs: dict[str, dict[str, Any]]  # symbol -> its finished training job, as GET /api/jobs/{id} showed it

    def copy_to(self, destination: Path) -> Path:
        shutil.copytree(self.path, destination, dirs_exist_ok=True)
        return destination


def train_install(path: Path, symbols: tuple[str, ...] = DEFAULT_AGENTS) -> TrainedInstall:
    """A fresh offline install at `path` (default settings, the sample data) whose default agents were
    each trained once through POST /api/agents/{symbol}/train and activated. One after the other: a
    training already keeps both cores busy, two at once take as long."""
    jobs: dict[str, dict[str, Any]] = {}
    with TestClient(create_app(make_settings(path))) as client:
        for symbol in symbols:
            started = client.post(f"/api/agents/{symbol}/train", headers=AUTH)
            assert started.status_code == 202, started.text
            jobs[symbol] = wait_for_job(client, started.json())
            assert jobs[symbol]["status"] == "done", jobs[symbol]
    return TrainedInstall(path, jobs)
