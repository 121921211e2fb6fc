"""mother_ai/risk_days.py on SQLite and on a real PostgreSQL, from eight engines at once (each its own
connection pool, as eight API processes have): one start-of-day equity per UTC day whoever decides first,
one breach that every process sees, and a resume that re-arms the limit for all of them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import TypeVar

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db import storage
from db.models import RiskDay
from mother_ai.risk_days import DailyLossGuard
from tests.support.portfolio import cash_portfolio

PROCESSES = 8
LIMIT = 0.05  # RISK_DAILY_LOSS_LIMIT: 5% of the day's baseline
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
T = TypeVar("T")


@pytest.fixture
def guards(database_url: str) -> Iterator[list[DailyLossGuard]]:
    """One guard per "process", each on an engine of its own, over one migrated database."""
    engines = [storage.make_engine(database_url) for _ in range(PROCESSES)]
    storage.upgrade_to_head(engines[0])
    for engine in engines:
        # A connection in each pool before the test, as a running process has: opening one takes long
        # enough to spread calls that would otherwise meet in the database.
        with engine.connect():
            pass
    yield [DailyLossGuard(storage.make_session_factory(engine), LIMIT) for engine in engines]
    for engine in engines:
        engine.dispose()


def at_once(calls: list[Callable[[], T]]) -> list[T]:
    """Each call on a thread of its own, released together; their results in order (any error raised)."""
    start = threading.Barrier(len(calls))
    results: list[T | None] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = calls[index]()
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads), "a call is still waiting on the database"
    if errors:
        raise errors[0]
    return [r for r in results if r is not None]


def rows(guard: DailyLossGuard) -> list[RiskDay]:
    sessions: sessionmaker[Session] = guard.sessions
    with sessions() as session:
        return list(session.scalars(select(RiskDay).order_by(RiskDay.day)))


def test_the_first_decisions_of_a_day_in_eight_processes_record_one_start(
    guards: list[DailyLossGuard],
) -> None:
    # Each process sees a slightly different equity (prices move between their reads).
    equities = [str(10_000 + i) for i in range(PROCESSES)]
    states = at_once(
        [partial(g.evaluate, cash_portfolio(e), NOON) for g, e in zip(guards, equities, strict=True)]
    )
    (row,) = rows(guards[0])
    assert (row.mode, row.day) == ("paper", "2026-03-02")
    assert str(row.start_equity) in equities and row.baseline_equity == row.start_equity
    assert {s.start_equity for s in states} == {row.start_equity}, "every process measures from one start"
    assert not any(s.breached for s in states)


def test_a_breach_latches_once_for_every_process_until_a_resume_re_arms_it(
    guards: list[DailyLossGuard],
) -> None:
    first = guards[0].evaluate(cash_portfolio("10000"), NOON)
    assert first.start_equity == Decimal(10_000) and not first.breached

    # Down 6% at about the same moment in every process: one breach, at one time, seen by all.
    breached = at_once(
        [
            partial(g.evaluate, cash_portfolio(str(9_400 + i)), NOON + timedelta(seconds=i + 1))
            for i, g in enumerate(guards)
        ]
    )
    (row,) = rows(guards[0])
    latched = row.breached_at
    assert latched is not None and latched.tzinfo is UTC, "aware, in UTC, on SQLite as on PostgreSQL"
    assert NOON < latched <= NOON + timedelta(seconds=PROCESSES)
    assert all(s.breached for s in breached)
    assert {s.breached_at for s in breached} == {latched}, "one latch, not one per process"

    # Latched: a recovery later in the day does not lift it, in any process.
    recovered = at_once(
        [partial(g.evaluate, cash_portfolio("9990"), NOON + timedelta(hours=1)) for g in guards]
    )
    assert all(s.breached and s.breached_at == latched for s in recovered)

    # A manual resume in one process re-arms the limit from the equity then, for all of them.
    resumed = guards[3].resume(cash_portfolio("9900"), NOON + timedelta(hours=2))
    assert not resumed.breached and resumed.baseline_equity == Decimal(9_900)
    after = at_once([partial(g.evaluate, cash_portfolio("9850"), NOON + timedelta(hours=3)) for g in guards])
    assert all(not s.breached for s in after), "0.5% below the resume's equity"
    assert {(s.start_equity, s.baseline_equity) for s in after} == {(Decimal(10_000), Decimal(9_900))}
    again = at_once([partial(g.evaluate, cash_portfolio("9400"), NOON + timedelta(hours=4)) for g in guards])
    assert all(s.breached for s in again), "re-armed: 5% below 9900 breaches again"

    # The next UTC day starts afresh from its first decision's equity.
    tomorrow = at_once(
        [partial(g.evaluate, cash_portfolio("9400"), NOON + timedelta(days=1)) for g in guards]
    )
    assert all(not s.breached and s.start_equity == Decimal(9_400) for s in tomorrow)
    assert [(r.day, r.breached_at is not None) for r in rows(guards[0])] == [
        ("2026-03-02", True),
        ("2026-03-03", False),
    ]
