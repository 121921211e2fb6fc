"""The daily loss limit as pure rules: a UTC day's starting equity, the latched breach and the manual resume.

The equity at the first decision of a UTC day is that day's start (and baseline); when equity falls by
RISK_DAILY_LOSS_LIMIT of the baseline the breach latches and blocks entries until the next UTC day or a
manual resume, which re-arms the limit from the equity at resume. A paper reset (a new account epoch)
starts the day afresh. The live loop keeps the day in the ``risk_days`` table (``mother_ai.risk_days``);
the replay keeps it in a ``DailyLossBook`` on its own clock; both apply these functions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from mother_ai.orders import jsonable_dict, plain

log = logging.getLogger(__name__)


class DayLike(Protocol):
    """One mode's UTC day: a ``RiskDay`` row or the replay's ``DayRecord``."""

    mode: str
    day: str
    epoch: int
    start_equity: Decimal
    baseline_equity: Decimal
    breached_at: datetime | None
    resumed_at: datetime | None


@dataclass(slots=True)
class DayRecord:
    mode: str
    day: str
    epoch: int
    start_equity: Decimal
    baseline_equity: Decimal
    breached_at: datetime | None = None
    resumed_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DailyLossState:
    mode: str
    day: str  # YYYY-MM-DD (UTC)
    limit: float
    start_equity: Decimal
    baseline_equity: Decimal
    equity: Decimal
    loss_fraction: float  # of the baseline; negative when up on the day
    breached: bool
    breached_at: datetime | None
    resumed_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return jsonable_dict(self, plain)


def day_of(now: datetime) -> str:
    return now.astimezone(UTC).date().isoformat()


def loss_fraction(baseline: Decimal, equity: Decimal) -> float:
    return float((baseline - equity) / baseline) if baseline > 0 else 0.0


def rebase(row: DayLike, epoch: int, equity: Decimal) -> None:
    """Start the day (or a new paper epoch) from `equity`."""
    row.epoch = epoch
    row.start_equity = row.baseline_equity = equity
    row.breached_at = None


def latch_breach(row: DayLike, equity: Decimal, limit: float, now: datetime) -> None:
    """Latch the breach the first time the loss reaches `limit`."""
    fraction = loss_fraction(row.baseline_equity, equity)
    if row.breached_at is None and fraction >= limit:
        row.breached_at = now
        log.warning(
            "daily loss limit reached (%.2f%% of %s): no new entries until the next UTC day "
            "or a manual resume",
            fraction * 100,
            row.baseline_equity,
        )


def resume_day(row: DayLike, equity: Decimal, now: datetime) -> None:
    """Lift today's breach; the limit re-arms, measured from `equity`."""
    row.baseline_equity = equity
    row.breached_at = None
    row.resumed_at = now


def state_of(row: DayLike, equity: Decimal, limit: float) -> DailyLossState:
    return DailyLossState(
        mode=row.mode,
        day=row.day,
        limit=limit,
        start_equity=row.start_equity,
        baseline_equity=row.baseline_equity,
        equity=equity,
        loss_fraction=loss_fraction(row.baseline_equity, equity),
        breached=row.breached_at is not None,
        breached_at=row.breached_at,
        resumed_at=row.resumed_at,
    )


class DailyLossBook:
    """The replay's daily-loss record: one ``DayRecord`` per UTC day of the replay clock."""

    def __init__(self, mode: str, limit: float) -> None:
        self.mode = mode
        self.limit = float(limit)
        self.day: DayRecord | None = None
        self.breaches: list[str] = []  # days on which the limit latched

    def evaluate(self, epoch: int, equity: Decimal, now: datetime) -> DailyLossState:
        today = day_of(now)
        if self.day is None or self.day.day != today:
            self.day = DayRecord(self.mode, today, epoch, equity, equity)
        elif self.day.epoch != epoch:
            rebase(self.day, epoch, equity)
        was = self.day.breached_at
        latch_breach(self.day, equity, self.limit, now)
        if was is None and self.day.breached_at is not None:
            self.breaches.append(today)
        self.day.updated_at = now
        return state_of(self.day, equity, self.limit)
