"""Background jobs in the app's process: submit work, watch its progress in the database.

A job is a row (queued, running, done, failed) plus a function run on a small thread pool.
The function receives a `report(progress, message)` callback; progress writes are throttled
so a chatty job cannot flood the database. Jobs left unfinished by a previous process are
marked failed at start-up (see `db.storage.fail_interrupted_jobs`).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from db import storage
from db.models import Job, utcnow
from utils.errors import AppError

log = logging.getLogger(__name__)

Report = Callable[[float, str], None]
JobFn = Callable[[Report], dict[str, Any]]
_MIN_WRITE_INTERVAL_S = 0.25


class JobRunner:
    def __init__(self, sessions: sessionmaker[Session], max_workers: int = 2) -> None:
        self._sessions = sessions
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="job")
        self._futures: dict[str, Future[None]] = {}
        self._lock = threading.Lock()

    def submit(self, kind: str, params: dict[str, Any], fn: JobFn) -> Job:
        job = storage.create_job(self._sessions, uuid.uuid4().hex, kind, params)
        future = self._pool.submit(self._run, job.id, fn)
        with self._lock:
            self._futures[job.id] = future
        future.add_done_callback(lambda _f, job_id=job.id: self._forget(job_id))
        return job

    def wait(self, job_id: str, timeout: float | None = None) -> None:
        """Block until the job finishes (for tests and shutdown; requests never call this)."""
        with self._lock:
            future = self._futures.get(job_id)
        if future is not None:
            future.result(timeout=timeout)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _forget(self, job_id: str) -> None:
        with self._lock:
            self._futures.pop(job_id, None)

    def _run(self, job_id: str, fn: JobFn) -> None:
        storage.update_job(self._sessions, job_id, status="running", started_at=utcnow(), message="running")
        last_write = 0.0

        def report(progress: float, message: str) -> None:
            nonlocal last_write
            now = time.monotonic()
            if now - last_write >= _MIN_WRITE_INTERVAL_S:
                last_write = now
                storage.update_job(
                    self._sessions, job_id, progress=max(0.0, min(1.0, progress)), message=message[:500]
                )

        try:
            result = fn(report)
        except AppError as exc:
            storage.update_job(
                self._sessions,
                job_id,
                status="failed",
                message=exc.message,
                finished_at=utcnow(),
                result={"error": {"code": exc.code, "message": exc.message, "details": exc.details}},
            )
            return
        except Exception:
            log.exception("job %s crashed", job_id)
            storage.update_job(
                self._sessions,
                job_id,
                status="failed",
                message="internal error (see server log)",
                finished_at=utcnow(),
            )
            return
        storage.update_job(
            self._sessions,
            job_id,
            status="done",
            progress=1.0,
            message="done",
            result=result,
            finished_at=utcnow(),
        )
