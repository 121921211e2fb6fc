"""Start-up (and periodic) reconciliation of trading records: decisions left PENDING, live orders left
PENDING or UNKNOWN, and the JSON-lines logs that show decisions and orders.

The rule is ``utils.recovery``'s: rows are the record. A decision is stored PENDING before its order is
placed and finalised after; an order commits before it is appended to ``trades.jsonl``. A process killed
between two of those writes leaves a PENDING decision beside a filled order, a decision whose order never
committed, or an order missing from the log. Here each comes back into agreement:

- a PENDING decision whose order is final takes the order's outcome; one with no order at all records that
  nothing was placed (orders are inserted before Binance is ever called, so no order row means no order);
- live orders still PENDING or UNKNOWN are looked up on Binance by client order id
  (``BinanceExecutor.reconcile``), so their quantity is not blocked forever;
- orders and decisions missing from their log (by id and status) are appended; a torn last line (a write
  cut off mid-line) is cut away first.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.models import DecisionRecord, TradeOrder, utc_at
from db.storage import WriteLocks, transaction
from mother_ai.accounts import find_order, order_result
from mother_ai.decision import Decision
from mother_ai.live_executor import BinanceExecutor
from mother_ai.orders import PENDING, UNKNOWN, plain
from mother_ai.trade_log import TradeLog
from utils.recovery import Repair

__all__ = [
    "IN_FLIGHT_GRACE_MS",
    "PeriodicReconciler",
    "in_flight_cutoff",
    "reconcile_decisions",
    "reconcile_logs",
    "reconcile_trading",
]

log = logging.getLogger(__name__)
UNSETTLED = (PENDING, UNKNOWN)
NOT_PLACED = "The server stopped before the order was placed; nothing was traded."
# Live orders touched this recently may still be in the hands of whoever is placing them, in this process
# or another: the periodic reconciler leaves them alone until then.
IN_FLIGHT_GRACE_MS = 60_000


def in_flight_cutoff(now_ms: int) -> datetime:
    """The periodic reconciler's `settled_before` at `now_ms` (the app's clock): live orders last touched
    before it are looked up on Binance."""
    return utc_at(now_ms - IN_FLIGHT_GRACE_MS)


def reconcile_decisions(sessions: sessionmaker[Session], trade_log: TradeLog | None) -> list[Repair]:
    """Finalise every decision left PENDING whose order is settled (or was never stored)."""
    repairs: list[Repair] = []
    with sessions() as session:
        pending = session.scalars(
            select(DecisionRecord).where(DecisionRecord.order_status == PENDING).order_by(DecisionRecord.id)
        ).all()
    for record in pending:
        finalised = _finalise(sessions, record.id)
        if finalised is None:
            continue
        decision, action = finalised
        repairs.append(Repair("decision", decision.id, action))
        if trade_log is not None:
            try:
                trade_log.append_event("decision", decision.to_dict())
            except OSError:
                log.exception("could not append decision %s to the decision log", decision.id)
    return repairs


def _finalise(sessions: sessionmaker[Session], decision_id: str) -> tuple[Decision, str] | None:
    with transaction(sessions) as session:
        record = session.get(DecisionRecord, decision_id, with_for_update=True)
        if record is None or record.order_status != PENDING:
            return None  # settled meanwhile
        decision = Decision.from_dict(record.payload)
        row = find_order(session, record.mode, record.client_order_id) if record.client_order_id else None
        if row is not None and row.status in UNSETTLED:
            return None  # the live reconciliation settles the order first
        if row is None:
            decision = replace(
                decision,
                order_status=None,
                order_error=NOT_PLACED,
                reason=f"{decision.reason} {NOT_PLACED}",
            )
            action = "order never placed (the server stopped first): no longer pending"
        else:
            order = order_result(row)
            decision = replace(
                decision,
                executed=order.filled,
                order_id=order.id,
                order_status=order.status,
                order=order.to_dict(),
                reason=(
                    f"{decision.reason} Executed as {order.mode} order {order.client_order_id}: "
                    f"{order.status}, "
                    f"{plain(order.executed_quantity)} {order.symbol} (recorded at the next start)."
                ),
            )
            action = f"finalised from order {order.id} ({order.status})"
        record.executed = decision.executed
        record.order_id = decision.order_id
        record.order_status = decision.order_status
        record.reason = decision.reason
        record.payload = decision.to_dict()
        return decision, action


def reconcile_logs(sessions: sessionmaker[Session], trade_log: TradeLog) -> list[Repair]:
    """Append the settled orders and decisions missing from ``trades.jsonl`` and ``decisions.jsonl``."""
    repairs: list[Repair] = []
    repairs += _reconcile_log(
        trade_log,
        "trade",
        lambda data: (data.get("mode"), data.get("id"), data.get("status")),
        _settled_orders(sessions),
    )
    repairs += _reconcile_log(
        trade_log,
        "decision",
        lambda data: data.get("id"),
        _settled_decisions(sessions),
    )
    return repairs


def _settled_orders(sessions: sessionmaker[Session]) -> Callable[[Any], Iterator[tuple[Any, dict[str, Any]]]]:
    def rows(since: Any) -> Iterator[tuple[Any, dict[str, Any]]]:
        query = select(TradeOrder).where(TradeOrder.status.not_in(UNSETTLED)).order_by(TradeOrder.id)
        if isinstance(since, int):  # the oldest order id still in the logs
            query = query.where(TradeOrder.id >= since)
        with sessions() as session:
            for row in session.scalars(query):
                data = order_result(row).to_dict()
                yield (data["mode"], data["id"], data["status"]), data

    return rows


def _settled_decisions(
    sessions: sessionmaker[Session],
) -> Callable[[Any], Iterator[tuple[Any, dict[str, Any]]]]:
    def rows(since: Any) -> Iterator[tuple[Any, dict[str, Any]]]:
        query = select(DecisionRecord).order_by(DecisionRecord.created_at, DecisionRecord.id)
        if isinstance(since, str):  # the oldest logged decision's created_at, ISO-8601 with its zone
            query = query.where(DecisionRecord.created_at >= datetime.fromisoformat(since))
        with sessions() as session:
            for row in session.scalars(query):
                if row.order_status == PENDING:
                    continue
                yield row.id, row.payload

    return rows


def _reconcile_log(
    trade_log: TradeLog,
    kind: str,
    key_of: Callable[[dict[str, Any]], Any],
    rows: Callable[[Any], Iterable[tuple[Any, dict[str, Any]]]],
) -> list[Repair]:
    path = trade_log.path_for(kind)
    repairs: list[Repair] = []
    if _cut_torn_line(path):
        repairs.append(Repair("log_line", path.name, "cut: the last line was cut off mid-write"))
    logged: set[Any] = set()
    oldest: Any = None
    files = [path, *sorted(path.parent.glob(f"{path.name}.*"))] if path.parent.is_dir() else []
    for file in files:
        for data in _lines(file):
            logged.add(key_of(data))
            marker = data.get("id") if kind == "trade" else data.get("created_at")
            if marker is not None and (oldest is None or marker < oldest):
                oldest = marker
    # Rows older than anything still in the logs were logged and rotated away: not missing.
    missing = 0
    for key, data in rows(oldest):
        if key in logged:
            continue
        trade_log.append_event(kind, data)
        missing += 1
    if missing:
        repairs.append(Repair("log_line", path.name, f"appended {missing} {kind}(s) missing from the log"))
    return repairs


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    with handle:
        for line in handle:
            try:
                record = msgspec.json.decode(line)  # at every start, over every rotated file: a fast parser
            except msgspec.DecodeError:
                continue
            data = record.get("data") if isinstance(record, dict) else None
            if isinstance(data, dict):
                yield data


def _cut_torn_line(path: Path) -> bool:
    """Drop an unfinished last line (no newline: the writer died mid-line); True if one was cut."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if size == 0:
        return False
    with path.open("rb+") as handle:
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return False
        # Find the end of the last whole line, reading backwards in blocks.
        position = size
        while position > 0:
            start = max(0, position - 65536)
            handle.seek(start)
            block = handle.read(position - start)
            newline = block.rfind(b"\n")
            if newline >= 0:
                handle.truncate(start + newline + 1)
                break
            position = start
        else:
            handle.truncate(0)
        handle.flush()
        os.fsync(handle.fileno())
    return True


def reconcile_trading(
    sessions: sessionmaker[Session],
    executor: object | None,
    trade_log: TradeLog | None,
    *,
    settled_before: datetime | None = None,
    with_exchange: bool = True,
    locks: WriteLocks | None = None,
) -> list[Repair]:
    """Everything above in order: live orders with Binance (when `executor` is live and
    `with_exchange`), then pending decisions, then the logs.

    The decisions and logs are repaired inside the decide-and-execute critical section (`locks`, the
    deciding processes' own): a decision is PENDING while its process places the order, so one read
    outside the section could belong to a decide still running here or in another process, and be
    finalised as never placed under it. The exchange is asked outside it (network I/O)."""
    repairs: list[Repair] = []
    if with_exchange and isinstance(executor, BinanceExecutor):
        repairs += executor.reconcile(settled_before)
    with (locks or WriteLocks()).deciding():
        repairs += reconcile_decisions(sessions, trade_log)
        if trade_log is not None:
            repairs += reconcile_logs(sessions, trade_log)
    return repairs


Wait = Callable[[threading.Event, float], bool]  # (stop, seconds) -> stop was set: the pause between rounds


def _wait(stop: threading.Event, seconds: float) -> bool:
    return stop.wait(seconds)


class PeriodicReconciler:
    """Runs `work` now and then every `interval_s` seconds on a thread, until stopped: the live orders'
    reconciliation with Binance, which must not hold up start-up when Binance is slow or away. A round
    that raises is logged and the next one comes as usual. `wait` is the pause between rounds (tests
    step rounds through it instead of sleeping); it returns early, True, once stop() is called."""

    def __init__(self, work: Callable[[], list[Repair]], interval_s: float, *, wait: Wait = _wait) -> None:
        self._work = work
        self._interval_s = interval_s
        self._wait = wait
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="order-reconciler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                for repair in self._work():
                    log.warning("order reconciliation: %s", repair)
            except Exception:
                log.exception("order reconciliation failed; trying again next round")
            if self._wait(self._stop, self._interval_s):
                return
