"""Background jobs through the database: any API process submits a job, any process claims and runs it,
and progress, cancellation and recovery work from every process.

A job is a row (queued, running, done, failed, cancelled) naming its kind and parameters; the work is a
handler registered by kind (``register``, in create_app) that rebuilds everything it needs from those
parameters, so the process that runs a job need not be the one that accepted it. Each process runs one
dispatcher thread that claims queued jobs while it has free slots (``SELECT ... FOR UPDATE SKIP LOCKED``
on PostgreSQL; on SQLite the claiming transaction holds the write lock) and hands them to a small pool.

The handler receives a ``Report``: ``report(progress, message)`` writes progress (throttled, so a chatty
job cannot flood the database) and is the job's checkpoint. A cancel (from any process) sets the row's
``cancel_requested``; the owner sees it on its next heartbeat and the next checkpoint raises
``JobCancelled``: the job ends as ``cancelled`` and whatever it would have written at the end is never
written. The owner heartbeats its running jobs; a job whose owner stopped heartbeating (a killed
process, a lost host) is queued again for any process, at most ``max_attempts`` times in all. A
server shutdown stops its running jobs at their next checkpoint and queues them again, so they resume
in another process or at the next start. ``exclusive_key`` allows one live job per key across every
process (a unique index over queued and running rows): one training per symbol.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db import storage
from db.models import Job, utc_at
from utils.errors import AppError
from utils.events import EventLog

log = logging.getLogger(__name__)

_MIN_WRITE_INTERVAL_S = 0.25
SHUTDOWN_WAIT_S = 8.0  # a SIGTERM ends the server within about 10 s even during a training
INTERRUPTED_MESSAGE = "interrupted by a server shutdown; queued to run again"
ACTIVE = ("queued", "running")
ENDED = ("done", "failed", "cancelled")


class JobCancelled(Exception):
    """Raised at a job's next checkpoint after it was cancelled."""


class JobBusy(Exception):
    """A live job already holds the submitted job's ``exclusive_key``."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id


class Report:
    """The progress callback a job receives; also its cancellation checkpoint, and the way a job finishes
    in the same transaction as its last write (``complete_in``)."""

    def __init__(
        self,
        job_id: str,
        write: Callable[[float, str], None],
        cancel: threading.Event,
        shutting_down: Callable[[], bool],
        now: Callable[[], datetime],  # the runner's clock, for the job's end when it completes here
    ) -> None:
        self.job_id = job_id
        self._write = write
        self._now = now
        self._cancel = cancel
        self._shutting_down = shutting_down
        self.completed = False

    def complete_in(self, session: Session, result: dict[str, Any]) -> None:
        """Mark the job done inside the caller's transaction, so its outcome and its record commit
        together (a training's model, its activation and its job: a crash leaves all or none)."""
        storage.mark_job_done(session, self.job_id, result, finished_at=self._now())
        self.completed = True

    def __call__(self, progress: float, message: str) -> None:
        if self._cancel.is_set():
            raise JobCancelled()
        self._write(progress, message)

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def interrupted(self) -> bool:
        """Stopped by a server shutdown rather than a cancel: the job runs again elsewhere, so work
        it can resume from (an optimisation's study) is kept."""
        return self._shutting_down()


JobFn = Callable[[Report], dict[str, Any]]
JobHandler = Callable[[dict[str, Any], Report], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class JobTimings:
    """How often a process looks for work and heartbeats, and when a silent owner is given up on."""

    poll_s: float = 1.0  # looking for jobs submitted by other processes (our own wake the dispatcher)
    heartbeat_s: float = 2.0  # also how soon a cancel from another process reaches the job
    stale_s: float = 30.0  # no heartbeat for this long: the owner is gone, the job is queued again
    max_attempts: int = 3  # runs cut short by a dead owner, before the job is failed instead


def process_name() -> str:
    """A name for this process that no other process (here or on another host) has had: host, pid and
    a random part, so a new process reusing a dead one's pid is still someone else."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _owner_dead_here(owner: str | None) -> bool:
    """True when `owner` is certainly gone: a process of this host whose pid no longer runs. Owners on
    other hosts, and owners with our own pid (another runner of this process, or a previous process whose
    pid we were given, as in a container), are judged by their heartbeat."""
    if owner is None:
        return True  # rows from before jobs had owners
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname()[:40] or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


class JobRunner:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        owner: str | None = None,
        clock: Callable[[], int] | None = None,
        max_workers: int = 2,
        events: EventLog | None = None,
        timings: JobTimings | None = None,
    ) -> None:
        self._sessions = sessions
        self.owner = owner or process_name()
        self._clock = clock or (lambda: int(time.time() * 1000))
        self._max_workers = max_workers
        self._events = events  # each change of a job's row becomes a ``job`` event (the row as it is then)
        self._timings = timings or JobTimings()
        self._handlers: dict[str, JobHandler] = {}
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="job")
        self._cancels: dict[str, threading.Event] = {}  # jobs this process runs now
        self._ended = threading.Condition()  # notified when a job of this process ends
        self._wake = threading.Event()  # a job was submitted here, or a slot freed
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._shutting_down = False  # set once: a job stopped from now on was interrupted, not cancelled
        self._thread: threading.Thread | None = None
        self._seen_changes: dict[str, int] = {}  # job id -> updated_at of the last event published here
        self._watch_since = 0

    # --- set-up ---------------------------------------------------------------------------------

    def register(self, kind: str, handler: JobHandler) -> None:
        """Run jobs of `kind` with `handler(params, report)`; only registered kinds are claimed here."""
        self._handlers[kind] = handler

    def start(self) -> None:
        """Start claiming jobs (create_app's lifespan; a runner never started only submits)."""
        if self._thread is not None:
            return
        self._watch_since = self._clock()
        self._thread = threading.Thread(target=self._dispatch, name="job-dispatcher", daemon=True)
        self._thread.start()

    def recover(self) -> list[str]:
        """At start-up: queue again the running jobs of processes of this host that are gone (a crash or
        a kill), at once rather than after their heartbeat goes stale. Returns their ids."""
        with self._sessions() as session:
            rows = session.execute(select(Job.id, Job.owner).where(Job.status == "running")).all()
        return [
            job_id for job_id, owner in rows if _owner_dead_here(owner) and self._requeue_dead(job_id, owner)
        ]

    # --- submitting and controlling -------------------------------------------------------------

    def submit(self, kind: str, params: dict[str, Any], *, exclusive_key: str | None = None) -> Job:
        """Queue a job; any process with a handler for `kind` may run it. JobBusy when a queued or
        running job already holds `exclusive_key`."""
        if kind not in self._handlers:
            raise ValueError(f"no handler for job kind {kind!r}")
        job_id = uuid.uuid4().hex
        stamp = self._stamp()
        try:
            job = storage.create_job(
                self._sessions,
                job_id,
                kind,
                params,
                exclusive_key=exclusive_key,
                updated=stamp,
                now_ms=stamp[0],
            )
        except IntegrityError:
            holder = self._holder(exclusive_key)
            if holder is None:  # it ended between our insert and this read: the key is free now
                return self.submit(kind, params, exclusive_key=exclusive_key)
            raise JobBusy(holder) from None
        self._changed(job.id)
        self._wake.set()
        return job

    def run_here(
        self, kind: str, params: dict[str, Any], fn: JobFn, *, exclusive_key: str | None = None
    ) -> dict[str, Any]:
        """Run `fn` as a job in the caller's thread (the scheduler's retraining, which must finish before
        its decision): recorded, heartbeated and exclusive like any job. Raises what `fn` raises
        (JobCancelled when cancelled) after recording the outcome; JobBusy as ``submit``."""
        job_id = uuid.uuid4().hex
        stamp = self._stamp()
        try:
            storage.create_job(
                self._sessions,
                job_id,
                kind,
                params,
                exclusive_key=exclusive_key,
                updated=stamp,
                running_as=self.owner,
                now_ms=stamp[0],
            )
        except IntegrityError:
            raise JobBusy(self._holder(exclusive_key) or "?") from None
        cancel = threading.Event()
        with self._lock:
            self._cancels[job_id] = cancel
        try:
            return self._execute(job_id, fn, cancel, reraise=True)
        finally:
            self._forget(job_id)

    def cancel(self, job_id: str) -> Job | None:
        """Ask a queued or running job to stop, whichever process runs it: a queued one ends at once, a
        running one at its next checkpoint. None when the job has already ended (or never existed)."""
        with storage.transaction(self._sessions) as session:
            job = session.get(Job, job_id, with_for_update=True)
            if job is None or job.status not in ACTIVE:
                return None
            now = self._clock()
            job.cancel_requested = True
            if job.status == "queued":
                job.status, job.message, job.finished_at = "cancelled", "cancelled", utc_at(now)
            job.updated_at, job.updated_by = now, self.owner
        with self._lock:
            event = self._cancels.get(job_id)
        if event is not None:
            event.set()
        self._changed(job_id)
        return storage.get_job(self._sessions, job_id)

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job ends, whichever process runs it (tests and tools; requests never call
        this). TimeoutError when it is still live after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = storage.get_job(self._sessions, job_id)
            if job is None:
                raise KeyError(job_id)
            if job.status in ENDED:
                return job
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"job {job_id} is still {job.status}")
            with self._ended:
                # Our own jobs notify; others' are seen at the next look.
                self._ended.wait(
                    min(self._timings.poll_s, left) if left is not None else self._timings.poll_s
                )

    def running_here(self) -> set[str]:
        with self._lock:
            return set(self._cancels)

    def shutdown(self, timeout: float = SHUTDOWN_WAIT_S) -> None:
        """Stop for a server shutdown: nothing more is claimed; running jobs are asked to stop at their
        next checkpoint and are queued again for another process or the next start. Waits at most
        `timeout` seconds, so a SIGTERM during a training ends the server promptly."""
        with self._lock:
            self._shutting_down = True
            events = list(self._cancels.values())
        self._stop.set()
        self._wake.set()
        for event in events:
            event.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        deadline = time.monotonic() + timeout
        with self._ended:
            while self.running_here() and time.monotonic() < deadline:
                self._ended.wait(0.05)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- the dispatcher -------------------------------------------------------------------------

    def _dispatch(self) -> None:
        last_beat = 0.0
        while not self._stop.is_set():
            try:
                while len(self.running_here()) < self._max_workers and not self._stop.is_set():
                    claimed = self._claim()
                    if claimed is None:
                        break
                    self._start_job(*claimed)
                if time.monotonic() - last_beat >= self._timings.heartbeat_s:
                    last_beat = time.monotonic()
                    self._heartbeat()
                    self._requeue_stale()
                self._watch_others()
            except Exception:  # a database hiccup must not kill the dispatcher: try again next round
                log.exception("job dispatcher round failed")
            self._wake.wait(min(self._timings.poll_s, self._timings.heartbeat_s))
            self._wake.clear()

    def _claim(self) -> tuple[str, JobHandler, dict[str, Any]] | None:
        kinds = list(self._handlers)
        queued = (Job.status == "queued", Job.kind.in_(kinds))
        with self._sessions() as session:  # a plain read first: an idle process never takes a write lock
            if session.scalar(select(Job.id).where(*queued).limit(1)) is None:
                return None
        with storage.transaction(self._sessions) as session:
            row = session.scalars(
                select(Job)
                .where(*queued)
                .order_by(Job.created_at, Job.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if row is None:
                return None
            now = self._clock()
            row.status, row.owner, row.heartbeat_at = "running", self.owner, now
            row.started_at, row.message, row.progress = utc_at(now), "running", 0.0
            row.attempts = (row.attempts or 0) + 1
            row.updated_at, row.updated_by = now, self.owner
            claimed = (row.id, self._handlers[row.kind], dict(row.params or {}))
        self._changed(claimed[0])
        return claimed

    def _start_job(self, job_id: str, handler: JobHandler, params: dict[str, Any]) -> None:
        cancel = threading.Event()
        with self._lock:
            self._cancels[job_id] = cancel

        def run() -> None:
            try:
                self._execute(job_id, lambda report: handler(params, report), cancel, reraise=False)
            finally:
                self._forget(job_id)

        self._pool.submit(run)

    def _heartbeat(self) -> None:
        """Tell the others our jobs live, and learn which of them were cancelled elsewhere."""
        mine = self.running_here()
        if not mine:
            return
        with storage.transaction(self._sessions) as session:
            session.execute(
                update(Job)
                .where(Job.owner == self.owner, Job.status == "running")
                .values(heartbeat_at=self._clock())
            )
            cancelled = session.scalars(
                select(Job.id).where(Job.id.in_(mine), Job.cancel_requested.is_(True))
            ).all()
        with self._lock:
            for job_id in cancelled:
                if job_id in self._cancels:
                    self._cancels[job_id].set()

    def _requeue_stale(self) -> None:
        cutoff = self._clock() - int(self._timings.stale_s * 1000)
        with self._sessions() as session:
            rows = session.execute(
                select(Job.id, Job.owner, Job.heartbeat_at).where(
                    Job.status == "running", Job.owner != self.owner
                )
            ).all()
        for job_id, owner, beat in rows:
            if (beat is None or beat < cutoff) or _owner_dead_here(owner):
                self._requeue_dead(job_id, owner)

    def _requeue_dead(self, job_id: str, owner: str | None) -> bool:
        """Queue again (or fail, past max_attempts; or end as cancelled, if asked) a running job whose
        owner is gone. Only if it is still that owner's: of several processes seeing it, one acts."""
        with storage.transaction(self._sessions) as session:
            job = session.get(Job, job_id, with_for_update=True)
            if job is None or job.status != "running" or job.owner != owner:
                return False
            attempts = job.attempts or 1
            now = self._clock()
            if job.cancel_requested:
                job.status, job.message, job.finished_at = "cancelled", "cancelled", utc_at(now)
            elif attempts >= self._timings.max_attempts:
                job.status, job.finished_at = "failed", utc_at(now)
                job.message = f"its server process stopped while running it, {attempts} times; not retried"
            else:
                job.status, job.started_at, job.progress = "queued", None, 0.0
                job.message = f"its server process stopped; queued to run again (attempt {attempts + 1})"
            job.owner = None
            job.updated_at, job.updated_by = now, self.owner
            status = job.status
        log.warning("job %s: owner %s is gone; now %s", job_id, owner, status)
        self._changed(job_id)
        self._wake.set()
        return True

    def _watch_others(self) -> None:
        """Publish job events for changes other processes made, so a live stream from any process shows
        every job (our own changes are published as we make them)."""
        if self._events is None:
            return
        since = self._watch_since - 5_000  # clocks of several hosts disagree a little
        with self._sessions() as session:
            rows = session.scalars(
                select(Job)
                .where(Job.updated_at > since, Job.updated_by != self.owner)
                .order_by(Job.updated_at)
            ).all()
        for job in rows:
            stamp = job.updated_at or 0
            if self._seen_changes.get(job.id) == stamp:
                continue
            self._seen_changes[job.id] = stamp
            self._watch_since = max(self._watch_since, stamp)
            self._events.publish("job", job.id, job)
        if len(self._seen_changes) > 10_000:  # only recent changes matter for deduplication
            self._seen_changes = {k: v for k, v in self._seen_changes.items() if v > since}

    # --- running one job ------------------------------------------------------------------------

    def _execute(self, job_id: str, fn: JobFn, cancel: threading.Event, *, reraise: bool) -> dict[str, Any]:
        last_write = 0.0

        def write(progress: float, message: str) -> None:
            nonlocal last_write
            now = time.monotonic()
            if now - last_write >= _MIN_WRITE_INTERVAL_S:
                last_write = now
                self._update(job_id, progress=max(0.0, min(1.0, progress)), message=message[:500])

        report = Report(job_id, write, cancel, lambda: self._shutting_down, self._now)
        try:
            result = fn(report)
        except JobCancelled:
            self._stopped(job_id)
            if reraise:
                raise
            return {}
        except AppError as exc:
            self._update(
                job_id,
                status="failed",
                message=exc.message,
                finished=True,
                result={"error": {"code": exc.code, "message": exc.message, "details": exc.details}},
            )
            if reraise:
                raise
            return {}
        except Exception:
            log.exception("job %s crashed", job_id)
            self._update(job_id, status="failed", message="internal error (see server log)", finished=True)
            if reraise:
                raise
            return {}
        if report.completed:  # already committed with the job's own last write
            self._update(job_id)
            return result
        with storage.transaction(self._sessions) as session:
            storage.mark_job_done(session, job_id, result, finished_at=self._now())
        self._update(job_id)
        return result

    def _stopped(self, job_id: str) -> None:
        job = storage.get_job(self._sessions, job_id)
        if self._shutting_down and not (job is not None and job.cancel_requested):
            log.warning("job %s interrupted by the server shutting down; queued to run again", job_id)
            self._update(
                job_id,
                status="queued",
                message=INTERRUPTED_MESSAGE,
                owner=None,
                started_at=None,
                progress=0.0,
            )
            return
        log.info("job %s cancelled", job_id)
        self._update(job_id, status="cancelled", message="cancelled", finished=True)

    # --- rows and events ------------------------------------------------------------------------

    def _stamp(self) -> tuple[int, str]:
        return self._clock(), self.owner

    def _now(self) -> datetime:
        """The clock's reading as a row's datetime (created, started, finished)."""
        return utc_at(self._clock())

    def _update(self, job_id: str, *, finished: bool = False, **fields: Any) -> None:
        """Write `fields` with the change's stamp (and, `finished`, the job's end at the same reading)."""
        stamp, by = self._stamp()
        if finished:
            fields["finished_at"] = utc_at(stamp)
        storage.update_job(self._sessions, job_id, updated_at=stamp, updated_by=by, **fields)
        self._changed(job_id)

    def _changed(self, job_id: str) -> None:
        if self._events is None:
            return
        job = storage.get_job(self._sessions, job_id)
        if job is not None:
            self._events.publish("job", job_id, job)

    def _holder(self, exclusive_key: str | None) -> str | None:
        with self._sessions() as session:
            return session.scalar(
                select(Job.id).where(Job.exclusive_key == exclusive_key, Job.status.in_(ACTIVE)).limit(1)
            )

    def _forget(self, job_id: str) -> None:
        with self._lock:
            self._cancels.pop(job_id, None)
        with self._ended:
            self._ended.notify_all()
        self._wake.set()  # a slot is free


def keys_held(sessions: sessionmaker[Session], prefix: str, statuses: tuple[str, ...] = ACTIVE) -> set[str]:
    """The exclusive keys starting with `prefix` that a job in `statuses` holds, in any process."""
    with sessions() as session:
        keys = session.scalars(
            select(Job.exclusive_key).where(Job.exclusive_key.startswith(prefix), Job.status.in_(statuses))
        ).all()
    return {key for key in keys if key is not None}
