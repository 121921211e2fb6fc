"""Locks and leases shared by every process on one database: what keeps N API processes correct.

- ``database_lock(engine, name)``: a critical section across processes, held until the block ends. On
  PostgreSQL a session advisory lock on a connection of its own (``pg_advisory_lock``); on SQLite an
  exclusive ``flock`` on a file beside the database (a write transaction cannot span the several commits
  such a section makes). Threads of one process should queue on their own lock first (``WriteLocks``).
- ``hold_lease(sessions, name, holder, now_ms, ttl_ms)``: a role one process holds at a time (the
  scheduler), renewed by its holder and taken over by another once it expired, so the role survives
  its holder's death.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db.models import Lease
from utils.files import file_lock

__all__ = ["Leadership", "LockBusy", "database_lock", "hold_lease", "lock_key", "release_lease"]


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for `name` (PostgreSQL's advisory locks take a bigint)."""
    return int.from_bytes(hashlib.sha256(f"ai-trading:{name}".encode()).digest()[:8], "big", signed=True)


class LockBusy(Exception):
    """``database_lock(..., wait=False)`` found the lock held by someone else."""


@contextmanager
def database_lock(engine: Engine, name: str, *, wait: bool = True) -> Iterator[None]:
    """Hold the lock `name` across every process on this database until the block ends; with
    ``wait=False`` raise LockBusy at once instead of waiting for its holder."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            if wait:
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": lock_key(name)})
            elif not connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": lock_key(name)}):
                raise LockBusy(name)
            connection.commit()
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": lock_key(name)})
                connection.commit()
        return
    path = _sqlite_lock_file(engine, name)
    if path is None:  # an in-memory database: one process by definition
        yield
        return
    with ExitStack() as stack:
        try:
            stack.enter_context(file_lock(path, wait=wait))
        except BlockingIOError:
            raise LockBusy(name) from None
        yield  # the kernel releases the flock if the process dies


def _sqlite_lock_file(engine: Engine, name: str) -> Path | None:
    database = engine.url.database
    if not database or database == ":memory:":
        return None
    return Path(database).with_name(f"{Path(database).name}.{name}.lock")


def hold_lease(sessions: sessionmaker[Session], name: str, holder: str, now_ms: int, ttl_ms: int) -> bool:
    """Take or renew the lease `name` for `holder` until `now_ms + ttl_ms`; False while another holder's
    lease has not expired."""
    with sessions() as session, session.begin():
        if session.get_bind().dialect.name == "sqlite":
            session.execute(text("BEGIN IMMEDIATE"))
        lease = session.get(Lease, name, with_for_update=True)
        if lease is None:
            session.add(Lease(name=name, holder=holder, expires_at=now_ms + ttl_ms))
            try:
                session.flush()
            except IntegrityError:  # another process created it first: it holds the lease
                return False
            return True
        if lease.holder != holder and lease.expires_at > now_ms:
            return False
        lease.holder, lease.expires_at = holder, now_ms + ttl_ms
        return True


def release_lease(sessions: sessionmaker[Session], name: str, holder: str) -> None:
    """Give the lease up (a clean shutdown), so another process need not wait for it to expire."""
    with sessions() as session, session.begin():
        lease = session.get(Lease, name, with_for_update=True)
        if lease is not None and lease.holder == holder:
            session.delete(lease)


class Leadership:
    """This process's claim on one lease: ``held()`` takes or renews it (a database write), ``is_mine``
    says what the last ``held()`` found, ``release()`` gives it up."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        name: str,
        holder: str,
        clock: Callable[[], int],
        ttl_ms: int,
    ) -> None:
        self.sessions, self.name, self.holder, self.clock, self.ttl_ms = sessions, name, holder, clock, ttl_ms
        self.is_mine = False

    def held(self) -> bool:
        self.is_mine = hold_lease(self.sessions, self.name, self.holder, self.clock(), self.ttl_ms)
        return self.is_mine

    def release(self) -> None:
        if self.is_mine:
            release_lease(self.sessions, self.name, self.holder)
            self.is_mine = False
