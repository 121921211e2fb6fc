"""Background jobs in the app's process: submit work, watch its progress in the database, cancel it.

A job is a row (queued, running, done, failed, cancelled) plus a function run on a small thread pool.
The function receives a `report(progress, message)` callback; progress writes are throttled
so a chatty job cannot flood the database. Every report is a checkpoint: after ``cancel(job_id)``
the next one raises ``JobCancelled`` (``report.cancelled()`` asks without raising), the job ends as
``cancelled`` and whatever it would have written at the end is never written. Jobs left unfinished
by a previous process are marked failed at start-up (see `db.storage.fail_interrupted_jobs`).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from db import storage
from db.models import Job, utcnow
from utils.errors import AppError
from utils.events import EventLog

log = logging.getLogger(__name__)

_MIN_WRITE_INTERVAL_S = 0.25
SHUTDOWN_WAIT_S = 8.0  # a SIGTERM ends the server within about 10 s even during a training
INTERRUPTED_MESSAGE = "interrupted by a server shutdown; start it again"


class JobCancelled(Exception):
    """Raised at a job's next checkpoint after it was cancelled."""


class Report:
    """The progress callback a job receives; also its cancellation checkpoint, and the way a job finishes
    in the same transaction as its last write (``complete_in``)."""

    def __init__(self, job_id: str, write: Callable[[float, str], None], cancel: threading.Event) -> None:
        self.job_id = job_id
        self._write = write
        self._cancel = cancel
        self.completed = False

    def complete_in(self, session: Session, result: dict[str, Any]) -> None:
        """Mark the job done inside the caller's transaction, so its outcome and its record commit
        together (a training's model, its activation and its job: a crash leaves all or none)."""
        storage.mark_job_done(session, self.job_id, result)
        self.completed = True

    def __call__(self, progress: float, message: str) -> None:
        if self._cancel.is_set():
            raise JobCancelled()
        self._write(progress, message)

    def cancelled(self) -> bool:
        return self._cancel.is_set()


JobFn = Callable[[Report], dict[str, Any]]


class JobRunner:
    def __init__(
        self, sessions: sessionmaker[Session], max_workers: int = 2, events: EventLog | None = None
    ) -> None:
        self._sessions = sessions
        self._events = events  # each change of a job's row becomes a ``job`` event (the row as it is then)
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="job")
        self._futures: dict[str, Future[None]] = {}
        self._cancels: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._shutting_down = False  # set once: a job stopped from now on was interrupted, not cancelled

    def submit(self, kind: str, params: dict[str, Any], fn: JobFn) -> Job:
        job = storage.create_job(self._sessions, uuid.uuid4().hex, kind, params)
        self._changed(job.id)
        with self._lock:
            self._cancels[job.id] = threading.Event()
        future = self._pool.submit(self._run, job.id, fn)
        with self._lock:
            self._futures[job.id] = future
        job_id = job.id
        future.add_done_callback(lambda _f: self._forget(job_id))
        return job

    def wait(self, job_id: str, timeout: float | None = None) -> None:
        """Block until the job finishes (for tests and shutdown; requests never call this)."""
        with self._lock:
            future = self._futures.get(job_id)
        if future is not None:
            future.result(timeout=timeout)

    def cancel(self, job_id: str) -> bool:
        """Ask a queued or running job of this process to stop at its next checkpoint.
        False when this process runs no such job (it finished, or never ran here)."""
        with self._lock:
            event = self._cancels.get(job_id)
        if event is None:
            return False
        event.set()
        return True

    def shutdown(self, timeout: float = SHUTDOWN_WAIT_S) -> None:
        """Stop for a server shutdown: queued jobs never start, running ones are asked to stop at
        their next checkpoint; both are recorded as interrupted. Waits at most `timeout` seconds, so
        a SIGTERM during a training ends the server promptly."""
        with self._lock:
            self._shutting_down = True
            cancels = list(self._cancels.items())
            futures = dict(self._futures)
        for _, event in cancels:
            event.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        running = []
        for job_id, future in futures.items():
            if future.cancelled():  # it never started: its row still says queued
                self._interrupted(job_id)
            else:
                running.append(future)
        # Only the others: a future cancelled this way never counts as done for wait().
        wait(running, timeout=timeout)

    def _update(self, job_id: str, **fields: Any) -> None:
        storage.update_job(self._sessions, job_id, **fields)
        self._changed(job_id)

    def _changed(self, job_id: str) -> None:
        if self._events is None:
            return
        job = storage.get_job(self._sessions, job_id)
        if job is not None:
            self._events.publish("job", job_id, job)

    def _forget(self, job_id: str) -> None:
        with self._lock:
            self._futures.pop(job_id, None)
            self._cancels.pop(job_id, None)

    def _run(self, job_id: str, fn: JobFn) -> None:
        with self._lock:
            cancel = self._cancels.setdefault(job_id, threading.Event())
        if cancel.is_set():
            self._cancelled(job_id)
            return
        self._update(job_id, status="running", started_at=utcnow(), message="running")
        last_write = 0.0

        def write(progress: float, message: str) -> None:
            nonlocal last_write
            now = time.monotonic()
            if now - last_write >= _MIN_WRITE_INTERVAL_S:
                last_write = now
                self._update(job_id, progress=max(0.0, min(1.0, progress)), message=message[:500])

        report = Report(job_id, write, cancel)
        try:
            result = fn(report)
        except JobCancelled:
            self._cancelled(job_id)
            return
        except AppError as exc:
            self._update(
                job_id,
                status="failed",
                message=exc.message,
                finished_at=utcnow(),
                result={"error": {"code": exc.code, "message": exc.message, "details": exc.details}},
            )
            return
        except Exception:
            log.exception("job %s crashed", job_id)
            self._update(
                job_id,
                status="failed",
                message="internal error (see server log)",
                finished_at=utcnow(),
            )
            return
        if report.completed:  # already committed with the job's own last write
            self._changed(job_id)
            return
        with storage.transaction(self._sessions) as session:
            storage.mark_job_done(session, job_id, result)
        self._changed(job_id)

    def _cancelled(self, job_id: str) -> None:
        if self._shutting_down:
            self._interrupted(job_id)
            return
        log.info("job %s cancelled", job_id)
        self._update(job_id, status="cancelled", message="cancelled", finished_at=utcnow())

    def _interrupted(self, job_id: str) -> None:
        log.warning("job %s interrupted by the server shutting down", job_id)
        self._update(job_id, status="failed", message=INTERRUPTED_MESSAGE, finished_at=utcnow())
