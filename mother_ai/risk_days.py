"""The live daily-loss record: one ``risk_days`` row per mode and UTC day, read and written under a row lock
so every process sees one start-of-day equity and one breach (the rules are ``mother_ai.daily_loss``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db.models import RiskDay
from db.storage import transaction
from mother_ai.daily_loss import DailyLossState, day_of, latch_breach, rebase, resume_day, state_of
from mother_ai.orders import Portfolio


class DailyLossGuard:
    """Start-of-day equity, the latched breach and the manual resume, per mode and UTC day."""

    def __init__(self, sessions: sessionmaker[Session], limit: float) -> None:
        self.sessions = sessions
        self.limit = float(limit)

    def evaluate(self, portfolio: Portfolio, now: datetime) -> DailyLossState:
        """Today's state; the first call of a UTC day (or of a new paper epoch) records its start."""
        equity = portfolio.equity
        return self._with_row(portfolio, now, lambda row: latch_breach(row, equity, self.limit, now))

    def resume(self, portfolio: Portfolio, now: datetime) -> DailyLossState:
        """Lift today's breach; the limit re-arms, measured from the equity now."""
        return self._with_row(portfolio, now, lambda row: resume_day(row, portfolio.equity, now))

    def peek(self, mode: str, now: datetime, equity: Decimal) -> DailyLossState | None:
        """Today's state without recording anything; None before the day's first decision."""
        with self.sessions() as session:
            row = session.get(RiskDay, (mode, day_of(now)))
            return None if row is None else state_of(row, equity, self.limit)

    def _with_row(
        self, portfolio: Portfolio, now: datetime, work: Callable[[RiskDay], None]
    ) -> DailyLossState:
        for attempt in (1, 2):
            try:
                with transaction(self.sessions) as session:
                    row = session.get(RiskDay, (portfolio.mode, day_of(now)), with_for_update=True)
                    if row is None:
                        row = RiskDay(mode=portfolio.mode, day=day_of(now), resumed_at=None)
                        session.add(row)
                        rebase(row, portfolio.epoch, portfolio.equity)
                    elif row.epoch != portfolio.epoch:
                        # A paper reset: yesterday's money is gone.
                        rebase(row, portfolio.epoch, portfolio.equity)
                    work(row)
                    row.updated_at = now
                    session.flush()
                    return state_of(row, portfolio.equity, self.limit)
            except IntegrityError:
                # Another process inserted today's row first (PostgreSQL); read theirs.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")
