"""The kill switch: ``halt(reason)`` / ``resume()`` / ``is_halted()``, stored in the database, so a halt
survives restarts and covers every executor and process."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from db.models import TradingControl, utc_at
from db.storage import WriteLocks
from mother_ai.accounts import run_write
from mother_ai.orders import HaltState
from utils.binance_api import wall_clock_ms
from utils.errors import Conflict
from utils.events import EventLog
from utils.exchange import Clock

log = logging.getLogger(__name__)

CONTROL_ROW = 1


class KillSwitch:
    """Stops every executor from accepting new orders; the state lives in `trading_controls`."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        locks: WriteLocks | None = None,
        events: EventLog | None = None,
        *,
        clock: Clock = wall_clock_ms,
    ) -> None:
        self.sessions = sessions
        self.locks = locks or WriteLocks()
        self.events = events  # each halt and resume becomes a ``kill_switch`` event
        self.clock = clock  # when the state changed, as the app's other records tell time

    def halt(self, reason: str = "") -> HaltState:
        reason = (reason or "").strip()[:500] or "halted manually"
        state = run_write(
            self.sessions, self.locks.orders, lambda s: _set_control(s, True, reason, utc_at(self.clock()))
        )
        return self._changed(state)

    def resume(self) -> HaltState:
        state = run_write(
            self.sessions, self.locks.orders, lambda s: _set_control(s, False, "", utc_at(self.clock()))
        )
        return self._changed(state)

    def _changed(self, state: HaltState) -> HaltState:
        if self.events is not None:
            self.events.publish("kill_switch", "halted" if state.halted else "running", state)
        return state

    def state(self) -> HaltState:
        with self.sessions() as session:
            row = session.get(TradingControl, CONTROL_ROW)
            return halt_state(row)

    def is_halted(self) -> bool:
        return self.state().halted

    def check(self) -> None:
        """Conflict (code trading_halted) while halted."""
        _raise_if_halted(self.state())


def _set_control(session: Session, halted: bool, reason: str, now: datetime) -> HaltState:
    row = session.get(TradingControl, CONTROL_ROW, with_for_update=True)
    if row is None:
        row = TradingControl(id=CONTROL_ROW)
        session.add(row)
    row.halted, row.reason, row.changed_at = halted, reason, now
    session.flush()
    log.warning("trading %s%s", "HALTED: " if halted else "resumed", reason)
    return halt_state(row)


def halt_state(row: TradingControl | None) -> HaltState:
    if row is None:
        return HaltState(False, "", None)
    return HaltState(bool(row.halted), row.reason, row.changed_at)


def ensure_not_halted(session: Session) -> None:
    _raise_if_halted(halt_state(session.get(TradingControl, CONTROL_ROW)))


def _raise_if_halted(state: HaltState) -> None:
    if state.halted:
        raise Conflict(
            f"Trading is halted ({state.reason}); no new orders are accepted until it is resumed.",
            code="trading_halted",
            details={
                "reason": state.reason,
                "since": state.changed_at.isoformat() if state.changed_at else None,
            },
        )
