"""utils/jobs.py: jobs claimed from the database by any process, on SQLite and on PostgreSQL.

Several runners on one database stand for several API processes (each has its own owner name, as each
process has): a job submitted to one runs in another, a cancel from one reaches a job another runs, each
job runs exactly once however many claim at the same time, a job whose owner went silent is queued again
(and failed after too many tries), one live job per exclusive key, and a shutdown queues its running jobs
again instead of losing them.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db import storage
from db.models import utc_at
from tests.support.server import wait_until
from utils.errors import Conflict
from utils.events import EventLog
from utils.jobs import INTERRUPTED_MESSAGE, JobBusy, JobCancelled, JobHandler, JobRunner, JobTimings, Report

FAST = JobTimings(poll_s=0.05, heartbeat_s=0.05, stale_s=30.0, max_attempts=3)
Sessions = sessionmaker[Session]


@pytest.fixture
def sessions(database_url: str) -> Iterator[Sessions]:
    engine = storage.make_engine(database_url)
    storage.upgrade_to_head(engine)
    yield storage.make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def runners() -> Iterator[Callable[..., JobRunner]]:
    made: list[JobRunner] = []

    def make(sessions: Sessions, **kwargs: Any) -> JobRunner:
        runner = JobRunner(sessions, timings=kwargs.pop("timings", FAST), **kwargs)
        made.append(runner)
        return runner

    yield make
    for runner in made:
        runner.shutdown(timeout=5)


def _noted(into: list[str], value: str, result: dict[str, Any]) -> dict[str, Any]:
    into.append(value)
    return result


def _half_way(_params: dict[str, Any], report: Report) -> dict[str, Any]:
    report(0.5, "half way")
    return {"ok": True}


def _until_cancelled(started: threading.Event) -> Callable[[dict[str, Any], Report], dict[str, Any]]:
    def work(_params: dict[str, Any], report: Report) -> dict[str, Any]:
        started.set()
        while True:  # checkpoints until told to stop, as a training does between folds
            report(0.5, "working")
            threading.Event().wait(0.01)

    return work


def test_a_job_submitted_to_one_process_runs_in_another(
    sessions: Sessions, runners: Callable[..., JobRunner]
) -> None:
    ran_by: list[str] = []
    front = runners(sessions)  # accepts requests, never started: it runs nothing itself
    worker = runners(sessions)
    front.register("sync", lambda params, _r: {"twice": params["n"] * 2})
    worker.register("sync", lambda params, _r: _noted(ran_by, worker.owner, {"twice": params["n"] * 2}))
    worker.start()
    job = front.submit("sync", {"n": 21})
    done = front.wait(job.id, timeout=30)
    assert (done.status, done.result, done.owner, done.attempts) == ("done", {"twice": 42}, worker.owner, 1)
    assert ran_by == [worker.owner]


def test_each_job_runs_exactly_once_however_many_processes_claim(
    sessions: Sessions, runners: Callable[..., JobRunner]
) -> None:
    runs: list[tuple[str, int]] = []
    lock = threading.Lock()
    pool = [runners(sessions, max_workers=3) for _ in range(3)]
    for runner in pool:

        def work(params: dict[str, Any], _report: Report, owner: str = runner.owner) -> dict[str, Any]:
            with lock:
                runs.append((owner, int(params["i"])))
            return {"i": params["i"]}

        runner.register("sync", work)
    jobs = [pool[i % 3].submit("sync", {"i": i}) for i in range(30)]
    for runner in pool:
        runner.start()
    finished = [pool[0].wait(job.id, timeout=60) for job in jobs]
    assert [job.status for job in finished] == ["done"] * 30
    assert sorted(i for _, i in runs) == list(range(30)), "every job ran once, none twice"
    assert {job.owner for job in finished} == {owner for owner, _ in runs}


def test_a_cancel_from_another_process_stops_the_job_at_its_next_checkpoint(
    sessions: Sessions, runners: Callable[..., JobRunner]
) -> None:
    started = threading.Event()
    front, worker = runners(sessions), runners(sessions)
    front.register("train", _until_cancelled(started))
    worker.register("train", _until_cancelled(started))
    worker.start()
    job = front.submit("train", {"symbol": "BTCUSDT"})
    assert started.wait(30)
    asked = front.cancel(job.id)
    assert asked is not None and asked.cancel_requested and asked.status == "running"
    ended = front.wait(job.id, timeout=30)
    assert (ended.status, ended.message, ended.result) == ("cancelled", "cancelled", None)
    assert front.cancel(job.id) is None, "an ended job cannot be cancelled again"


def test_a_queued_job_cancelled_ends_at_once_and_never_runs(
    sessions: Sessions, runners: Callable[..., JobRunner]
) -> None:
    front = runners(sessions)
    front.register("sync", lambda _p, _r: pytest.fail("a cancelled job must never run"))
    job = front.submit("sync", {})
    cancelled = front.cancel(job.id)
    assert cancelled is not None and (cancelled.status, cancelled.started_at) == ("cancelled", None)
    worker = runners(sessions)
    worker.register("sync", lambda _p, _r: pytest.fail("a cancelled job must never run"))
    worker.start()
    threading.Event().wait(0.3)  # several dispatcher rounds: it would have been claimed by now
    row = storage.get_job(sessions, job.id)
    assert row is not None and row.status == "cancelled" and row.owner is None


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


# 2001-09-09: far from the machine's time, so a row stamped by the machine's clock cannot pass.
T0 = 1_000_000_000_000


def _finishing_at(clock: Clock, then: int, outcome: Callable[[], dict[str, Any]]) -> JobHandler:
    def work(_params: dict[str, Any], _report: Report) -> dict[str, Any]:
        clock.now = then  # the job took until then
        return outcome()

    return work


def _fail() -> dict[str, Any]:
    raise Conflict("the data is not there", code="no_data")


def _crash() -> dict[str, Any]:
    raise RuntimeError("a bug")


@pytest.mark.parametrize(
    ("outcome", "status"),
    [(lambda: {"ok": True}, "done"), (_fail, "failed"), (_crash, "failed")],
    ids=["done", "failed", "crashed"],
)
def test_a_jobs_created_started_and_finished_times_are_its_runners_clock(
    sessions: Sessions, runners: Callable[..., JobRunner], outcome: Callable[[], dict[str, Any]], status: str
) -> None:
    clock = Clock(T0)
    runner = runners(sessions, clock=clock)
    runner.register("sync", _finishing_at(clock, T0 + 2_000, outcome))
    job = runner.submit("sync", {})
    clock.now = T0 + 1_000  # claimed a second after it was queued
    runner.start()
    ended = runner.wait(job.id, timeout=30)
    assert ended.status == status
    assert (ended.created_at, ended.started_at, ended.finished_at) == (
        utc_at(T0),
        utc_at(T0 + 1_000),
        utc_at(T0 + 2_000),
    )


def test_a_cancelled_jobs_end_is_its_runners_clock(
    sessions: Sessions, runners: Callable[..., JobRunner]
) -> None:
    clock = Clock(T0)
    started = threading.Event()
    runner = runners(sessions, clock=clock)
    runner.register("train", _until_cancelled(started))
    queued = runner.submit("train", {"n": 1})
    clock.now = T0 + 500
    ended_queued = runner.cancel(queued.id)
    assert ended_queued is not None and (ended_queued.started_at, ended_queued.finished_at) == (
        None,
        utc_at(T0 + 500),
    )
    job = runner.submit("train", {"n": 2})
    runner.start()
    assert started.wait(30)
    clock.now = T0 + 3_000
    runner.cancel(job.id)
    ended = runner.wait(job.id, timeout=30)
    assert (ended.status, ended.created_at, ended.started_at, ended.finished_at) == (
        "cancelled",
        utc_at(T0 + 500),
        utc_at(T0 + 500),
        utc_at(T0 + 3_000),
    )


def test_a_job_run_here_is_stamped_by_its_runners_clock(
    sessions: Sessions, runners: Callable[..., JobRunner]
) -> None:
    clock = Clock(T0)
    runner = runners(sessions, clock=clock)

    def work(_report: Report) -> dict[str, Any]:
        clock.now = T0 + 4_000
        return {"v": 1}

    runner.run_here("train", {"symbol": "BTCUSDT"}, work)
    (row,), _ = storage.list_jobs(sessions, 10, 0)
    assert (row.created_at, row.started_at, row.finished_at, row.heartbeat_at) == (
        utc_at(T0),
        utc_at(T0),
        utc_at(T0 + 4_000),
        T0,
    )


def _running_elsewhere(sessions: Sessions, job_id: str, owner: str, beat: int, attempts: int = 1) -> None:
    storage.update_job(
        sessions, job_id, status="running", owner=owner, heartbeat_at=beat, attempts=attempts, progress=0.6
    )


@pytest.mark.parametrize(
    ("attempts", "status", "runs"),
    [(1, "done", 1), (2, "done", 1), (3, "failed", 0)],
    ids=["first-try", "second-try", "out-of-tries"],
)
def test_a_job_whose_owner_went_silent_is_queued_again_then_failed_after_too_many_tries(
    sessions: Sessions, runners: Callable[..., JobRunner], attempts: int, status: str, runs: int
) -> None:
    clock = Clock(1_000_000_000)
    ran: list[str] = []
    timings = JobTimings(poll_s=0.05, heartbeat_s=0.05, stale_s=10.0, max_attempts=3)
    survivor = runners(sessions, clock=clock, timings=timings)
    survivor.register("sync", lambda _p, _r: _noted(ran, "ran", {"ok": True}))
    job = survivor.submit("sync", {})
    # Claimed by a process on another host that then went silent: only its heartbeat tells.
    _running_elsewhere(
        sessions, job.id, "other-host:4242:abcd1234", beat=clock.now - 5_000, attempts=attempts
    )
    survivor.start()
    threading.Event().wait(0.3)
    row = storage.get_job(sessions, job.id)
    assert row is not None and row.status == "running", "5 s of silence is not 10: the owner may live"
    clock.now += 6_000
    ended = survivor.wait(job.id, timeout=30)
    assert ended.status == status
    assert len(ran) == runs
    if status == "failed":
        assert "3 times" in ended.message and ended.owner is None
        assert ended.finished_at == utc_at(clock.now), "ended at the clock's time, not the machine's"
    else:
        assert (ended.owner, ended.attempts) == (survivor.owner, attempts + 1)


def test_a_silent_owner_that_was_asked_to_cancel_ends_cancelled_not_retried(
    sessions: Sessions, runners: Callable[..., JobRunner]
) -> None:
    clock = Clock(2_000_000_000)
    survivor = runners(sessions, clock=clock, timings=JobTimings(0.05, 0.05, 1.0, 3))
    survivor.register("sync", lambda _p, _r: pytest.fail("a cancelled job must not run again"))
    job = survivor.submit("sync", {})
    _running_elsewhere(sessions, job.id, "other-host:1:feedf00d", beat=clock.now - 60_000)
    storage.update_job(sessions, job.id, cancel_requested=True)
    survivor.start()
    ended = survivor.wait(job.id, timeout=30)
    assert (ended.status, ended.finished_at) == ("cancelled", utc_at(clock.now))


def test_at_start_jobs_of_a_dead_process_of_this_host_are_queued_again_at_once(
    sessions: Sessions, runners: Callable[..., JobRunner]
) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True
    )
    dead = f"{socket.gethostname()[:40]}:{int(gone.stdout)}:0badc0de"
    # A long stale_s: only knowing the pid is gone can explain an immediate requeue.
    restarted = runners(sessions, timings=JobTimings(0.05, 0.05, 3600.0, 3))
    restarted.register("sync", lambda _p, _r: {"ok": True})
    job = restarted.submit("sync", {})
    _running_elsewhere(sessions, job.id, dead, beat=10**15)  # a heartbeat "from the future" changes nothing
    assert restarted.recover() == [job.id]
    restarted.start()
    assert restarted.wait(job.id, timeout=30).status == "done"


def test_a_live_owner_on_this_host_keeps_its_job(
    sessions: Sessions, runners: Callable[..., JobRunner]
) -> None:
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = f"{socket.gethostname()[:40]}:{alive.pid}:11111111"
        other = runners(sessions)
        other.register("sync", lambda _p, _r: {"ok": True})
        job = other.submit("sync", {})
        _running_elsewhere(sessions, job.id, owner, beat=other._clock())
        assert other.recover() == []
        row = storage.get_job(sessions, job.id)
        assert row is not None and (row.status, row.owner) == ("running", owner)
    finally:
        alive.kill()
        alive.wait()


def test_one_live_job_per_exclusive_key_across_processes(
    sessions: Sessions, runners: Callable[..., JobRunner]
) -> None:
    a, b = runners(sessions), runners(sessions)
    for runner in (a, b):
        runner.register("train", lambda _p, _r: {"ok": True})

    def submit(i: int) -> str:
        try:
            return (
                (a if i % 2 else b).submit("train", {"symbol": "BTCUSDT"}, exclusive_key="train:BTCUSDT").id
            )
        except JobBusy as busy:
            return f"busy:{busy.job_id}"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(submit, range(16)))
    winners = [o for o in outcomes if not o.startswith("busy:")]
    assert len(winners) == 1, outcomes
    assert {o.removeprefix("busy:") for o in outcomes} == set(winners), "every refusal names the live job"
    other = a.submit("train", {"symbol": "ETHUSDT"}, exclusive_key="train:ETHUSDT")  # another key is free
    a.start()
    a.wait(winners[0], timeout=30)
    a.wait(other.id, timeout=30)
    again = b.submit("train", {"symbol": "BTCUSDT"}, exclusive_key="train:BTCUSDT")
    assert again.id != winners[0], "an ended job frees its key"


def test_run_here_is_a_recorded_exclusive_job(sessions: Sessions, runners: Callable[..., JobRunner]) -> None:
    runner = runners(sessions)
    runner.register("train", lambda _p, _r: {"ok": True})
    queued = runner.submit("train", {"symbol": "BTCUSDT"}, exclusive_key="train:BTCUSDT")
    with pytest.raises(JobBusy) as busy:
        runner.run_here(
            "train", {"symbol": "BTCUSDT"}, lambda _r: {"ok": True}, exclusive_key="train:BTCUSDT"
        )
    assert busy.value.job_id == queued.id
    result = runner.run_here(
        "train", {"symbol": "ETHUSDT"}, lambda _r: {"v": 1}, exclusive_key="train:ETHUSDT"
    )
    assert result == {"v": 1}
    rows, _ = storage.list_jobs(sessions, 10, 0)
    here = [row for row in rows if row.params == {"symbol": "ETHUSDT"}]
    assert [(r.status, r.result, r.owner, r.attempts) for r in here] == [("done", {"v": 1}, runner.owner, 1)]


def test_run_here_cancelled_from_elsewhere_raises_and_records_it(
    sessions: Sessions, runners: Callable[..., JobRunner]
) -> None:
    runner, other = runners(sessions), runners(sessions)
    runner.start()  # its dispatcher heartbeats and so sees the cancel
    seen: list[str] = []

    def work(report: Report) -> dict[str, Any]:
        seen.append(report.job_id)
        other.cancel(report.job_id)
        wait_until(report.cancelled, timeout=30, what="the cancel to reach the job")
        report(0.9, "would write now")
        return {"written": True}

    with pytest.raises(JobCancelled):
        runner.run_here("train", {"symbol": "BTCUSDT"}, work)
    row = storage.get_job(sessions, seen[0])
    assert row is not None and (row.status, row.result) == ("cancelled", None)


def test_a_shutdown_queues_running_jobs_again_and_never_starts_queued_ones(
    sessions: Sessions, runners: Callable[..., JobRunner]
) -> None:
    started = threading.Event()
    runner = runners(sessions, max_workers=1)
    runner.register("train", _until_cancelled(started))
    running = runner.submit("train", {"symbol": "BTCUSDT"})
    runner.start()
    assert started.wait(30)
    queued = runner.submit("train", {"symbol": "ETHUSDT"})
    runner.shutdown(timeout=10)
    first, second = storage.get_job(sessions, running.id), storage.get_job(sessions, queued.id)
    assert first is not None and (first.status, first.message, first.owner) == (
        "queued",
        INTERRUPTED_MESSAGE,
        None,
    )
    assert first.finished_at is None and first.started_at is None
    assert second is not None and (second.status, second.attempts, second.started_at) == ("queued", 0, None)
    # The next process (or another one) runs both.
    done: list[str] = []
    after = runners(sessions)
    after.register("train", lambda params, _r: _noted(done, params["symbol"], {"ok": True}))
    after.start()
    assert [after.wait(j.id, timeout=30).status for j in (running, queued)] == ["done", "done"]
    assert sorted(done) == ["BTCUSDT", "ETHUSDT"]


def test_a_stream_in_one_process_sees_jobs_another_process_runs(
    sessions: Sessions, runners: Callable[..., JobRunner]
) -> None:
    events = EventLog(lambda: 0)
    watcher = runners(sessions, events=events)
    watcher.start()  # it runs nothing (no handler), it only watches
    worker = runners(sessions)
    worker.register("sync", _half_way)
    worker.start()
    job = worker.submit("sync", {})
    worker.wait(job.id, timeout=30)

    def statuses() -> list[str]:
        published = events.after(0)
        assert isinstance(published, list)
        return [e.payload.status for e in published if e.kind == "job" and e.key == job.id]  # type: ignore[attr-defined]

    wait_until(lambda: "done" in statuses(), timeout=30, what="the other process's job events")
    threading.Event().wait(0.3)  # more watcher rounds: the same change must not be published twice
    seen = statuses()
    assert seen[-1] == "done" and seen.count("done") == 1, seen
