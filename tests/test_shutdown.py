"""SIGTERM to the real server (`uvicorn main:app` as its own process) while a job runs: the server ends on
its own, cleanly, without running the job to its end; the job is queued again as interrupted; the next
start resumes it from the work already done and finishes it."""

from __future__ import annotations

import re
import signal
from pathlib import Path
from typing import Any

import optuna
import pytest
from sqlalchemy import select

from db import storage
from db.models import Job
from tests.support.process import ENDED, install_env, server_process
from tests.support.server import wait_until
from utils.jobs import INTERRUPTED_MESSAGE

# Its waits (120 s for the first trials, 60 s for the exit, 300 s for the resumed run) within its limit.
pytestmark = pytest.mark.timeout(600)
TRIALS = 240
# A space of 2,856 combinations, so the trials are distinct and the search outlasts the signal.
OPTIMISATION = {
    "symbol": "BTCUSDT",
    "interval": "1h",
    "strategy": "sma_crossover",
    "space": {
        "fast": {"type": "int", "low": 3, "high": 50},
        "slow": {"type": "int", "low": 60, "high": 200, "step": 5},
    },
    "start": "2024-01-01",
    "end": "2024-07-01",
    "n_trials": TRIALS,
}


def told(url: str, study: str) -> list[tuple[int, dict[str, Any]]]:
    """The finished trials of an Optuna study in the app's database: (number, parameters), in order."""
    # Optuna's tables share Alembic's version table with ours, so its schema check is off, as in the app
    # (backtester/optimize/service.py).
    storage = optuna.storages.RDBStorage(url, skip_compatibility_check=True)
    trials = optuna.load_study(study_name=study, storage=storage).get_trials(
        deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)
    )
    return [(t.number, dict(t.params)) for t in sorted(trials, key=lambda t: t.number)]


def test_sigterm_during_an_optimisation_ends_the_server_and_the_next_start_resumes_the_study(
    tmp_path: Path,
) -> None:
    env = install_env(tmp_path)
    database = env["DATABASE_URL"]
    log = tmp_path / "server.log"
    with server_process(env, log) as server, server.client() as client:
        started = client.post("/api/optimize", json=OPTIMISATION)
        assert started.status_code == 202, started.text
        job_id = started.json()["id"]

        def trials_done() -> int:
            job = client.get(f"/api/jobs/{job_id}").json()
            assert job["status"] not in ENDED, f"the optimisation ended before the signal: {job}"
            found = re.fullmatch(r"trial (\d+) of \d+", job["message"])
            return int(found.group(1)) if found else 0

        wait_until(lambda: trials_done() >= 8, timeout=120, what="the optimisation's first trials")
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(60)
    # Uvicorn raises the signal again once its shutdown is complete, so a clean stop ends by SIGTERM.
    assert code == -signal.SIGTERM, f"the server ended with {code} after SIGTERM:\n{server.tail()}"
    assert "Application shutdown complete" in log.read_text(), "the lifespan's shutdown ran to its end"

    engine = storage.make_engine(database)
    try:
        with storage.make_session_factory(engine)() as session:
            job = session.scalars(select(Job).where(Job.id == job_id)).one()
            assert (job.status, job.message, job.owner, job.attempts) == (
                "queued",
                INTERRUPTED_MESSAGE,
                None,
                1,
            )
            assert job.params is not None
            optimization_id = str(job.params["optimization_id"])
    finally:
        engine.dispose()
    before = told(database, optimization_id)
    assert 8 <= len(before) < TRIALS, "the server stopped the search rather than running it out"

    with server_process(env, log) as server, server.client() as client:
        wait_until(
            lambda: client.get(f"/api/jobs/{job_id}").json()["status"] in ENDED,
            timeout=300,
            what="the resumed optimisation",
        )
        job_out = client.get(f"/api/jobs/{job_id}").json()
        result = client.get(f"/api/optimizations/{optimization_id}").json()
    assert (job_out["status"], job_out["attempts"]) == ("done", 2), job_out
    assert job_out["result"]["trials"] == result["n_trials"] == TRIALS
    after = told(database, optimization_id)
    assert len(after) == TRIALS and after[: len(before)] == before, "resumed: the trials told before stay"
    reported = {(t["number"], tuple(sorted(t["values"].items()))) for t in result["trials"]}
    assert {(n, tuple(sorted(p.items()))) for n, p in after} == reported
