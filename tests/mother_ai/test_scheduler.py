"""mother_ai/scheduler.py: when runs are due, that closes run once, that runs never overlap, that
failures are survived, the thin thread around it, and the job built for the Mother AI. Time is an
injected clock; nothing sleeps (threads are coordinated with Events)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from db import storage
from db.locks import Leadership
from mother_ai.scheduler import DecisionScheduler, TickResult
from tests.support.clock import Clock
from tests.support.settings import make_settings
from tests.support.world import T0, build_world, prediction
from utils.errors import Conflict

HOUR = 3_600_000
MINUTE = 60_000
T10 = int(datetime(2025, 5, 1, 10, tzinfo=UTC).timestamp() * 1000)  # 10:00 UTC


class Job:
    """Counts runs; can block until released, or fail."""

    def __init__(self, block: bool = False, fail: Exception | None = None) -> None:
        self.runs = 0
        self.block = block
        self.fail = fail
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> dict[str, int]:
        self.runs += 1
        self.started.set()
        if self.block:
            assert self.release.wait(10), "the test never released the job"
        if self.fail is not None:
            raise self.fail
        return {"run": self.runs}


def scheduler(
    job: Job, start: int, grace_ms: int = 0, interval: str = "1h"
) -> tuple[DecisionScheduler, Clock]:
    clock = Clock(start)
    return DecisionScheduler(job, interval, clock=clock, grace_ms=grace_ms), clock


@pytest.mark.parametrize(
    ("grace_ms", "ticks"),
    [
        # Created at 10:30: the 10:00 close already passed and is not run.
        (
            0,
            [
                (10 * 60 + 31, "not_due"),
                (10 * 60 + 59, "not_due"),
                (11 * 60, "ran"),
                (11 * 60 + 1, "not_due"),
            ],
        ),
        # Several closes passed at once (e.g. the machine slept): one run, for the latest close.
        (0, [(11 * 60, "ran"), (15 * 60 + 10, "ran"), (15 * 60 + 50, "not_due"), (16 * 60, "ran")]),
        # With a grace period the run waits until the close is that old.
        (5_000, [(11 * 60, "not_due"), (11 * 60 + 1, "ran")]),
    ],
)
def test_due_times(grace_ms: int, ticks: list[tuple[int, str]]) -> None:
    job = Job()
    sched, clock = scheduler(job, T10 + 30 * MINUTE, grace_ms)
    midnight = T10 - 10 * HOUR
    for minute, status in ticks:
        clock.now = midnight + minute * MINUTE
        result = sched.run_if_due()
        assert result.status == status, (minute, result)
    assert job.runs == sum(1 for _, status in ticks if status == "ran")


def test_grace_period_boundary_and_next_due() -> None:
    job = Job()
    sched, clock = scheduler(job, T10 + 30 * MINUTE, grace_ms=5_000)
    assert sched.next_due_ms() == T10 + HOUR + 5_000
    clock.now = T10 + HOUR + 4_999
    assert sched.tick().status == "not_due"
    clock.now = T10 + HOUR + 5_000
    ran = sched.tick()
    assert ran == TickResult("ran", T10 + HOUR, "", {"run": 1})
    assert sched.next_due_ms() == T10 + 2 * HOUR + 5_000


def test_other_intervals() -> None:
    job = Job()
    sched, clock = scheduler(job, T10 + 2 * MINUTE, interval="15m")
    clock.now = T10 + 15 * MINUTE
    assert sched.tick().status == "ran"
    clock.now = T10 + 29 * MINUTE
    assert sched.tick().status == "not_due"


def test_a_run_still_going_when_the_next_is_due_is_skipped() -> None:
    job = Job(block=True)
    sched, clock = scheduler(job, T10 + 30 * MINUTE)
    clock.now = T10 + HOUR
    results: list[TickResult] = []
    first = threading.Thread(target=lambda: results.append(sched.run_if_due(T10 + HOUR)))
    first.start()
    assert job.started.wait(10)
    # The 12:00 close falls due while the 11:00 run is still going: skipped at once, not queued.
    skipped = sched.run_if_due(T10 + 2 * HOUR)
    assert skipped.status == "skipped" and "still going" in skipped.message
    job.release.set()
    first.join(10)
    assert [r.status for r in results] == ["ran"] and job.runs == 1
    # The skipped close is not run later; the next one is.
    clock.now = T10 + 2 * HOUR + 30 * MINUTE
    assert sched.tick().status == "not_due"
    clock.now = T10 + 3 * HOUR
    assert sched.tick().status == "ran" and job.runs == 2


def test_closes_passing_during_a_long_run_are_skipped_when_it_ends() -> None:
    clock = Clock(T10 + 30 * MINUTE)

    def slow_job() -> None:
        clock.now = T10 + 3 * HOUR + 5 * MINUTE  # the run took two hours

    sched = DecisionScheduler(slow_job, "1h", clock=clock, grace_ms=0)
    clock.now = T10 + HOUR
    assert sched.tick().status == "ran"
    assert sched.tick().status == "not_due"  # 12:00 and 13:00 passed during the run: skipped
    assert sched.next_due_ms() == T10 + 4 * HOUR


def test_a_failing_run_is_reported_and_the_next_close_runs() -> None:
    job = Job(fail=Conflict("No agent has a trained model yet.", code="no_trained_agents"))
    sched, clock = scheduler(job, T10)
    clock.now = T10 + HOUR
    failed = sched.tick()
    assert failed.status == "failed" and "trained model" in failed.message
    job.fail = RuntimeError("boom")
    clock.now = T10 + 2 * HOUR
    assert sched.tick().status == "failed"
    job.fail = None
    clock.now = T10 + 3 * HOUR
    assert sched.tick().status == "ran" and job.runs == 3


def test_the_thread_runs_due_closes_and_stops_promptly() -> None:
    job = Job()
    sched, clock = scheduler(job, T10 + 30 * MINUTE)
    clock.now = T10 + HOUR  # already due when the thread starts
    sched.start()
    try:
        assert sched.running
        assert job.started.wait(10)
    finally:
        sched.stop(timeout=10)
    assert not sched.running and job.runs == 1


def test_the_mother_ai_job_resolves_then_decides(tmp_path: Path) -> None:
    world = build_world(tmp_path, scheduler_symbols="ETHUSDT", scheduler_execute=True)
    world.agents.predictions = {
        "BTCUSDT": prediction("BTCUSDT", 0.8, 0.03),
        "ETHUSDT": prediction("ETHUSDT", 0.8, 0.03),
    }
    past = prediction("ETHUSDT", 0.7, 0.01, as_of=T0 + 20 * HOUR)  # complete: its target is stored
    world.tracker.record_predictions([("ETHUSDT", past)])
    sched = DecisionScheduler.for_mother_ai(
        world.mother, world.settings.scheduler, clock=world.clock, grace_ms=0
    )
    world.clock.now += HOUR
    result = sched.tick()
    assert result.status == "ran", result.message
    summary: dict[str, Any] = result.result
    assert summary["resolved"]["resolved"] == 1
    assert (summary["action"], summary["symbol"], summary["executed"]) == ("buy", "ETHUSDT", True)
    assert world.mother.get_decision(summary["decision_id"]).symbols == ["ETHUSDT"]


@pytest.mark.parametrize("execute", [False, True])
def test_scheduled_decisions_place_orders_only_with_scheduler_execute(tmp_path: Path, execute: bool) -> None:
    """SCHEDULER_EXECUTE=false: the scheduled run decides (and records the decision) but never orders;
    true: the same run, on the same world, places the order it decided on."""
    world = build_world(tmp_path, scheduler_symbols="ETHUSDT", scheduler_execute=execute)
    assert world.settings.scheduler.execute is execute
    world.agents.predictions = {"ETHUSDT": prediction("ETHUSDT", 0.8, 0.03)}
    initial = world.executor.portfolio()
    sched = DecisionScheduler.for_mother_ai(
        world.mother, world.settings.scheduler, clock=world.clock, grace_ms=0
    )
    world.clock.now += HOUR
    result = sched.tick()
    assert result.status == "ran", result.message
    summary: dict[str, Any] = result.result
    decision = world.mother.get_decision(summary["decision_id"])
    # The decision is made either way: a buy of ETHUSDT within the limits.
    assert (decision.action, decision.symbol, summary["action"]) == ("buy", "ETHUSDT", "buy")
    assert decision.size_quote is not None and decision.size_quote > 0
    assert decision.execute_requested is execute and summary["executed"] is execute
    orders = world.orders()
    trades_log = world.trade_log.path_for("trade")
    portfolio = world.executor.portfolio()
    if not execute:
        assert orders == [], "SCHEDULER_EXECUTE=false placed an order"
        assert (decision.executed, decision.client_order_id, decision.order_id) == (False, None, None)
        assert not trades_log.exists(), "no fill may reach the trade log"
        assert portfolio.balances == initial.balances and portfolio.equity == initial.equity
        assert [p for p in portfolio.positions if p.quantity > 0] == []
        return
    (order,) = orders
    assert (order.mode, order.symbol, order.side, order.status) == ("paper", "ETHUSDT", "BUY", "FILLED")
    assert order.decision_id == decision.id and order.client_order_id == decision.client_order_id
    assert decision.executed and decision.order_id == order.id
    assert order.quote_quantity == decision.size_quote
    assert len(trades_log.read_text().splitlines()) == 1
    (position,) = [p for p in portfolio.positions if p.quantity > 0]
    # Paper fees are charged in the quote asset: the position holds all that was bought.
    assert position.symbol == "ETHUSDT" and position.quantity == order.executed_quantity > 0
    assert portfolio.balances["USDT"] == initial.balances["USDT"] - order.quote_quantity - order.fee


def test_scheduler_settings(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert (settings.scheduler_enabled, settings.scheduler_execute) == (False, False)
    assert (settings.scheduler_symbols, settings.scheduler_interval) == (["BTCUSDT", "ETHUSDT"], "1h")
    assert make_settings(tmp_path, scheduler_symbols="solusdt, BTCUSDT,").scheduler_symbols == [
        "SOLUSDT",
        "BTCUSDT",
    ]
    with pytest.raises(ValidationError, match="scheduler_interval"):
        make_settings(tmp_path, scheduler_interval="2m")
    with pytest.raises(ValidationError, match="scheduler_symbols"):
        make_settings(tmp_path, scheduler_symbols="BTC/USDT")


def test_only_the_lease_holder_runs_and_another_takes_over_after_it_died(tmp_path: Path) -> None:
    engine = storage.make_engine(f"sqlite:///{tmp_path / 'leases.db'}")
    storage.upgrade_to_head(engine)
    sessions = storage.make_session_factory(engine)
    clock = Clock(T0 + 30 * MINUTE)
    jobs = [Job(), Job()]
    schedulers = [
        DecisionScheduler(
            job,
            "1h",
            clock=clock,
            grace_ms=0,
            leadership=Leadership(sessions, "scheduler", name, clock, 3 * HOUR),
        )
        for job, name in zip(jobs, ("process-a", "process-b"), strict=True)
    ]
    statuses = []
    for hour in range(1, 7):  # a's process dies after the 2nd close: it never renews again
        clock.now = T0 + hour * HOUR
        alive = schedulers if hour <= 2 else schedulers[1:]
        statuses.append([s.run_if_due().status for s in alive])
    assert statuses == [
        ["ran", "standby"],
        ["ran", "standby"],
        ["standby"],  # a's lease (renewed at 2 h) runs until 5 h
        ["standby"],
        ["ran"],  # expired: b took over
        ["ran"],
    ]
    assert (jobs[0].runs, jobs[1].runs) == (2, 2)
    assert (schedulers[0].leader, schedulers[1].leader) == (True, True)  # a does not know it is dead
