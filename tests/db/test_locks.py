"""db/locks.py on SQLite and on a real PostgreSQL: a lock one process holds makes another process wait (or
fail fast), and a lease passes to another holder only once it expired or was released."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db import storage
from db.locks import Leadership, LockBusy, database_lock, hold_lease, release_lease
from tests.support.clock import Clock

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import sys
from db import storage
from db.locks import LockBusy, database_lock
engine = storage.make_engine(sys.argv[1])
try:
    with database_lock(engine, "decide", wait=False):
        pass
except LockBusy:
    sys.exit(3)
"""


@pytest.fixture
def sessions(database_url: str) -> sessionmaker[Session]:
    engine = storage.make_engine(database_url)
    storage.upgrade_to_head(engine)
    return storage.make_session_factory(engine)


def other_process_takes(database_url: str) -> bool:
    """Whether a second process gets the lock without waiting."""
    child = subprocess.run([sys.executable, "-c", CHILD, database_url], cwd=PROJECT_ROOT, timeout=60)
    assert child.returncode in (0, 3), child
    return child.returncode == 0


def test_a_held_lock_is_busy_for_another_process_until_released(database_url: str) -> None:
    engine = storage.make_engine(database_url)
    with database_lock(engine, "decide"):
        assert not other_process_takes(database_url)
        with database_lock(engine, "migrations", wait=False):  # another name is another lock
            pass
    assert other_process_takes(database_url)


def test_a_second_holder_in_this_process_fails_fast_without_waiting(database_url: str) -> None:
    engine = storage.make_engine(database_url)
    with (
        database_lock(engine, "decide"),
        pytest.raises(LockBusy),
        database_lock(engine, "decide", wait=False),
    ):
        pass


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # (holder, now_ms) in order -> whether each got the lease (ttl 1000 ms)
        ([("a", 0), ("b", 500), ("a", 900), ("b", 1500)], [True, False, True, False]),
        ([("a", 0), ("b", 1000)], [True, True]),  # expired exactly at its end
        ([("a", 0), ("a", 999), ("b", 1998)], [True, True, False]),  # renewed until 1999
        ([("a", 0), ("b", 2000), ("a", 2100)], [True, True, False]),  # taken over: a lost it
    ],
)
def test_lease_holding_follows_expiry(
    sessions: sessionmaker[Session], steps: list[tuple[str, int]], expected: list[bool]
) -> None:
    assert [hold_lease(sessions, "scheduler", holder, now, 1000) for holder, now in steps] == expected


def test_a_released_lease_passes_at_once_and_leadership_tracks_it(sessions: sessionmaker[Session]) -> None:
    clock = Clock(10_000)
    first = Leadership(sessions, "scheduler", "host:1", clock, 60_000)
    second = Leadership(sessions, "scheduler", "host:2", clock, 60_000)
    assert (first.held(), second.held()) == (True, False)
    assert (first.is_mine, second.is_mine) == (True, False)
    first.release()
    assert second.held() and not first.is_mine
    release_lease(sessions, "scheduler", "host:1")  # not its lease any more: nothing happens
    assert not first.held()
