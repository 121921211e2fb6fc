"""mother_ai/recovery.py on a real database and log folder: the logs that show orders and decisions are
brought back into agreement with the rows (torn last line cut, missing lines appended, nothing twice)."""

from __future__ import annotations

import json
import logging
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from db.models import DecisionRecord
from mother_ai.recovery import PeriodicReconciler, reconcile_logs, reconcile_trading
from mother_ai.trade_executer import OrderRequest
from tests.support.clock import SteppedWaits
from tests.support.world import build_world, prediction
from utils.recovery import Repair


def logged(path: Path) -> list[tuple[int, str]]:
    return [
        (line["data"]["id"], line["data"]["status"])
        for line in map(json.loads, path.read_text().splitlines())
    ]


def test_a_torn_line_is_cut_and_the_orders_missing_from_the_log_are_appended(tmp_path: Path) -> None:
    world = build_world(tmp_path)
    first = world.executor.submit(OrderRequest("BTCUSDT", "BUY", quote_amount=Decimal(100)))
    trades = world.trade_log.path_for("trade")
    whole = trades.read_bytes()
    assert logged(trades) == [(first.id, "FILLED")]
    second = world.executor.submit(OrderRequest("BTCUSDT", "BUY", quote_amount=Decimal(50)))
    # As if the second line's write was cut off by a kill: half of it on disk, no newline.
    appended = trades.read_bytes()[len(whole) :]
    trades.write_bytes(whole + appended[: len(appended) // 2])

    repairs = reconcile_logs(world.sessions, world.trade_log)

    assert [str(r) for r in repairs] == [
        "log_line trades.jsonl: cut: the last line was cut off mid-write",
        "log_line trades.jsonl: appended 1 trade(s) missing from the log",
    ]
    assert logged(trades) == [(first.id, "FILLED"), (second.id, "FILLED")]
    assert reconcile_logs(world.sessions, world.trade_log) == [], "a second pass finds nothing to do"


def test_orders_older_than_the_rotated_logs_are_not_written_again(tmp_path: Path) -> None:
    world = build_world(tmp_path)
    orders = [
        world.executor.submit(OrderRequest("BTCUSDT", "BUY", quote_amount=Decimal(10))) for _ in range(3)
    ]
    trades = world.trade_log.path_for("trade")
    lines = trades.read_text().splitlines(keepends=True)
    trades.write_text("".join(lines[1:]))  # the oldest line went with a rotation that was dropped
    assert reconcile_logs(world.sessions, world.trade_log) == []
    assert logged(trades) == [(o.id, "FILLED") for o in orders[1:]]


def test_a_decision_still_placing_its_order_is_not_finalised_under_it(tmp_path: Path) -> None:
    """A decision is PENDING while its process places the order. Start-up repair in another process
    (or this one's periodic reconciler) must wait for that decide rather than finalise it as never
    placed. The paper executor is held inside its submit, as a slow placement would hold it."""
    world = build_world(tmp_path)
    world.agents.predictions = {
        "BTCUSDT": prediction("BTCUSDT", 0.8, 0.03),
        "ETHUSDT": prediction("ETHUSDT", 0.5, 0.0),
    }
    placing, release = threading.Event(), threading.Event()
    submit = world.executor.submit

    def held_submit(*args: Any, **kwargs: Any) -> Any:
        placing.set()
        release.wait(60)
        return submit(*args, **kwargs)

    world.executor.submit = held_submit  # type: ignore[method-assign]
    outcomes: list[Any] = []
    deciding = threading.Thread(target=lambda: outcomes.append(world.mother.decide(execute=True)))
    deciding.start()
    assert placing.wait(60), "the decide reached its order"
    with world.sessions() as session:
        pending = session.query(DecisionRecord).filter_by(order_status="PENDING").one()
    repairs: list[Any] = []
    # This process's periodic reconciler: the deciding section's own locks (across processes the same
    # section takes the database lock, tests/db/test_locks.py).
    repairing = threading.Thread(
        target=lambda: repairs.extend(
            reconcile_trading(world.sessions, world.executor, world.trade_log, locks=world.mother.locks)
        )
    )
    repairing.start()
    repairing.join(1.0)
    assert repairing.is_alive(), "the repair waits for the decide in flight"
    release.set()
    deciding.join(60)
    repairing.join(60)
    assert outcomes and outcomes[0].order is not None and outcomes[0].order.filled
    assert [r for r in repairs if r.kind == "decision"] == []
    with world.sessions() as session:
        row = session.get(DecisionRecord, pending.id)
        assert row is not None and row.order_status == "FILLED"


def test_the_periodic_reconciler_runs_at_start_without_holding_it_up_then_every_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The live orders' reconciler (main.py): its first round starts at once but start-up goes on while
    Binance is slow to answer it; a round that fails is logged and the next comes on time; stop() ends
    the pause between rounds rather than waiting it out."""
    slow_binance = threading.Event()
    rounds: list[int] = []  # the thread each round ran on
    settled = Repair("order", "live late-1", "settled from Binance: FILLED")

    def work() -> list[Repair]:
        rounds.append(threading.get_ident())
        if len(rounds) == 1:
            assert slow_binance.wait(10), "the test answers for Binance"
            return [settled]
        if len(rounds) == 2:
            raise ConnectionError("Binance is away")
        return []

    waits = SteppedWaits()
    reconciler = PeriodicReconciler(work, 42.0, wait=waits)

    def reconciler_records() -> list[logging.LogRecord]:
        # Its own logger's only: a background thread left by an earlier test may log a warning too.
        return [r for r in caplog.records if r.name == "mother_ai.recovery"]

    with caplog.at_level(logging.WARNING, logger="mother_ai.recovery"):
        reconciler.start()
        # start() has returned while the first round still waits for Binance (a first round run inside
        # start() would hold it until the 10 s above fail it).
        assert waits.seconds == [] and len(rounds) <= 1
        slow_binance.set()
        assert waits.wait_for_pause() == 1
        assert [r.getMessage() for r in reconciler_records()] == [f"order reconciliation: {settled}"]
        waits.next_round()
        assert waits.wait_for_pause() == 2, "a failed round is followed by the next pause, not the end"
        failed = reconciler_records()[-1]
        # Its traceback: in exc_info, or folded into the message once the app's secret-redacting log
        # filter (utils/logger.py, installed by any create_app earlier in this process) has seen it.
        text = failed.getMessage() + (
            logging.Formatter().formatException(failed.exc_info) if failed.exc_info else ""
        )
        assert text.startswith("order reconciliation failed; trying again next round")
        assert "ConnectionError: Binance is away" in text
        waits.next_round()
        assert waits.wait_for_pause() == 3
        reconciler.stop(timeout=10)
    assert len(rounds) == 3 and len(set(rounds)) == 1, "three rounds, all on the reconciler's own thread"
    assert rounds[0] != threading.get_ident()
    assert not any(t.ident == rounds[0] and t.is_alive() for t in threading.enumerate()), "stopped"
    assert waits.seconds == [42.0, 42.0, 42.0], "each pause is the configured interval"
    waits.next_round()  # nothing is left to take it
    assert len(rounds) == 3 and waits.seconds == [42.0, 42.0, 42.0]
