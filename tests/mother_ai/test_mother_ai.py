"""mother_ai/mother_ai.py: weights, edges and the action across symbols, every risk check, the kill
switch, determinism, provenance and records, the no-trained-agents 409, and concurrent executes.

Every test runs on a real SQLite file migrated to head, with real `Prediction` objects, a real
`PaperExecutor` and candles written into a real candle store (so paper prices and resolutions come
from them); only the agents are a stand-in that returns fixed predictions (tests/support/world.py)."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from agents.service import AgentService
from db.models import DecisionRecord, PredictionRecord, TradingBalance
from mother_ai.fills import cost_model_for
from mother_ai.mother_ai import (
    NULL_WEIGHT,
    PRIOR_WEIGHT,
    SHRINK_K,
    MotherAI,
    client_order_id_for,
    weight_for,
)
from mother_ai.performance_tracker import AgentStats, PerformanceTracker
from mother_ai.policy import limits_for
from mother_ai.trade_executer import PaperExecutor
from tests.support.http import ctx_of
from tests.support.world import (
    BARS,
    HOUR,
    ROUND_TRIP,
    T0,
    D,
    World,
    build_world,
    prediction,
    view,
)
from utils.errors import Conflict, DataUnavailable

# --- the world (tests/support/world.py) -----------------------------------------------------------


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield build_world(tmp_path)


def checks_of(outcome: Any) -> dict[str, bool]:
    return {c.name: c.passed for c in outcome.decision.risk_checks}


def combined(weight: float, prob_up: float, expected: float) -> tuple[float, float]:
    """(confidence, edge) of one voter's view, computed here from the documented formula."""
    p = 0.5 + weight * (prob_up - 0.5) / (NULL_WEIGHT + weight)
    r = weight * expected / (NULL_WEIGHT + weight)
    return abs(2 * p - 1), r - ROUND_TRIP


# --- weights --------------------------------------------------------------------------------------


def stats(n: int, calibration: float | None) -> AgentStats:
    return replace(AgentStats.empty("BTCUSDT"), resolved=n, calibration_n=n, calibration=calibration)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (None, PRIOR_WEIGHT),  # a brand-new agent: the prior, small and positive
        (stats(0, None), PRIOR_WEIGHT),
        (stats(SHRINK_K, 1.0), 0.5 * 1.0 + 0.5 * PRIOR_WEIGHT),  # half data, half prior
        (stats(SHRINK_K, 0.5), 0.5 * 0.5 + 0.5 * PRIOR_WEIGHT),
        (stats(SHRINK_K, -0.8), 0.5 * 0.0 + 0.5 * PRIOR_WEIGHT),  # worse than chance: skill 0
        (stats(SHRINK_K, 3.0), 0.5 * 1.0 + 0.5 * PRIOR_WEIGHT),  # skill is capped at 1
        (stats(2, 1.0), 2 / 22 * 1.0 + 20 / 22 * PRIOR_WEIGHT),  # few resolutions: near the prior
        (stats(380, 1.0), 380 / 400 * 1.0 + 20 / 400 * PRIOR_WEIGHT),  # many: near the skill
    ],
)
def test_weight_table(record: AgentStats | None, expected: float) -> None:
    weight = weight_for(record)
    assert weight.value == pytest.approx(expected)
    assert weight.prior == PRIOR_WEIGHT and weight.k == SHRINK_K
    assert f"= {expected:.4f}" in weight.formula


def test_weights_move_with_resolved_predictions(tmp_path: Path) -> None:
    # BTC rises 1% an hour, ETH falls 1% an hour; both agents always say "up" with p = 0.7.
    btc = [30_000.0 * 1.01**i for i in range(BARS)]
    eth = [2_000.0 * 0.99**i for i in range(BARS)]
    w = build_world(tmp_path, {"BTCUSDT": btc, "ETHUSDT": eth})
    w.agents.predictions = {
        "BTCUSDT": prediction("BTCUSDT", 0.7, 0.01),
        "ETHUSDT": prediction("ETHUSDT", 0.7, 0.01),
    }
    first = w.mother.decide()
    assert {v.agent: v.weight.value for v in first.decision.votes} == {
        "BTCUSDT": pytest.approx(PRIOR_WEIGHT),
        "ETHUSDT": pytest.approx(PRIOR_WEIGHT),
    }
    # Twelve distinct past predictions each (4-bar horizon, all complete), each recorded twice
    # (two decisions voted with it): they must count once.
    for i in range(12):
        as_of = T0 + (20 + i) * HOUR
        pair = [(s, prediction(s, 0.7, 0.01, as_of=as_of)) for s in ("BTCUSDT", "ETHUSDT")]
        w.tracker.record_predictions(pair, decision_id=f"d{i}a")
        w.tracker.record_predictions(pair, decision_id=f"d{i}b")
    report = w.tracker.resolve()
    assert report.resolved == 48 and report.missing == 0

    after = {v.agent: v.weight for v in w.mother.decide().decision.votes}
    n = 12  # calibration: λ = Σ 0.2·(±0.5) / Σ 0.04 = ±2.5 -> clipped to 1 (BTC) and 0 (ETH)
    assert after["BTCUSDT"].resolved == n and after["ETHUSDT"].resolved == n
    assert after["BTCUSDT"].value == pytest.approx(n / (n + SHRINK_K) * 1.0 + SHRINK_K / (n + SHRINK_K) * 0.2)
    assert after["ETHUSDT"].value == pytest.approx(SHRINK_K / (n + SHRINK_K) * 0.2)
    assert after["BTCUSDT"].value > PRIOR_WEIGHT > after["ETHUSDT"].value > 0


# --- edges and the action -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("btc", "eth", "action", "symbol"),
    [
        ((0.8, 0.03), (0.7, 0.02), "buy", "BTCUSDT"),  # the best edge wins
        ((0.7, 0.02), (0.8, 0.03), "buy", "ETHUSDT"),
        ((0.8, 0.03), (0.8, 0.03), "buy", "BTCUSDT"),  # a tie goes to the first symbol by name
        ((0.8, 0.006), (0.45, -0.01), "buy", "BTCUSDT"),  # 2/3 of 0.6% = 0.4% > the 0.2% round trip
        ((0.8, 0.0029), (0.8, 0.0029), "hold", None),  # 2/3 of 0.29% = 0.193% < 0.2%: fees eat it
        ((0.3, -0.02), (0.4, -0.01), "hold", None),  # negative views, nothing held: nothing to sell
    ],
)
def test_edge_and_action_across_symbols(
    world: World, btc: tuple[float, float], eth: tuple[float, float], action: str, symbol: str | None
) -> None:
    world.agents.predictions = {
        "BTCUSDT": prediction("BTCUSDT", *btc),
        "ETHUSDT": prediction("ETHUSDT", *eth),
    }
    decision = world.mother.decide().decision
    edges = {e.symbol: e for e in decision.edges}
    for name, (p, r) in (("BTCUSDT", btc), ("ETHUSDT", eth)):
        confidence, edge = combined(PRIOR_WEIGHT, p, r)
        assert edges[name].edge == pytest.approx(edge)
        assert edges[name].confidence == pytest.approx(confidence)
        assert edges[name].round_trip_cost == pytest.approx(ROUND_TRIP)
    assert (decision.action, decision.symbol) == (action, symbol)


def test_fees_turn_a_small_edge_into_a_hold(world: World) -> None:
    # 2/3 of 0.25% is 0.167%: a positive expected return, but less than the 0.2% round trip.
    world.agents.predictions = {
        "BTCUSDT": prediction("BTCUSDT", 0.9, 0.0025),
        "ETHUSDT": prediction("ETHUSDT", 0.9, 0.0025),
    }
    decision = world.mother.decide().decision
    assert decision.action == "hold"
    assert all(0 < e.expected_return < ROUND_TRIP and e.edge < 0 for e in decision.edges)
    assert "round-trip cost" in decision.reason and decision.candidates == []


def test_a_held_symbol_with_a_negative_view_is_sold_whole(world: World) -> None:
    world.buy("ETHUSDT", "1000")
    world.agents.predictions = {
        "BTCUSDT": prediction("BTCUSDT", 0.8, 0.03),  # a good buy...
        "ETHUSDT": prediction("ETHUSDT", 0.2, -0.03),  # ...but exits come first
    }
    outcome = world.mother.decide(execute=True)
    decision = outcome.decision
    assert (decision.action, decision.symbol) == ("sell", "ETHUSDT")
    held = D("0.5")  # 1000 USDT at 2000 (no slippage; the fee is paid in USDT): sold whole
    assert decision.quantity == held
    assert outcome.order is not None and outcome.order.side == "SELL"
    assert outcome.order.executed_quantity == held and decision.executed


# --- risk checks ----------------------------------------------------------------------------------


def strong(world: World, *symbols: str) -> None:
    world.agents.predictions = {s: prediction(s, 0.8, 0.03) for s in symbols}
    world.agents.views_ = [view(s) for s in symbols]


def test_sizing_by_confidence_within_the_position_limit(world: World) -> None:
    strong(world, "BTCUSDT")
    decision = world.mother.decide().decision
    confidence, _ = combined(PRIOR_WEIGHT, 0.8, 0.03)
    assert decision.action == "buy"
    assert confidence == pytest.approx(0.4)
    assert decision.size_quote == D("1000")  # equity 10000 x 0.25 x confidence 0.4
    assert all(c.passed for c in decision.risk_checks)


def test_min_confidence(world: World) -> None:
    world.agents.predictions = {"BTCUSDT": prediction("BTCUSDT", 0.55, 0.05)}
    world.agents.views_ = [view("BTCUSDT")]
    outcome = world.mother.decide()
    assert outcome.decision.action == "hold"
    check = next(c for c in outcome.decision.risk_checks if c.name == "min_confidence")
    assert not check.passed and check.limit == 0.1
    assert check.value == pytest.approx(combined(PRIOR_WEIGHT, 0.55, 0.05)[0])
    assert "min_confidence" in outcome.decision.reason


def test_max_position_fraction_caps_and_then_refuses(tmp_path: Path) -> None:
    w = build_world(tmp_path, risk_max_position_fraction=0.1)
    strong(w, "BTCUSDT")
    w.buy("BTCUSDT", "900")  # 9% of equity already
    first = w.mother.decide().decision
    assert first.action == "buy" and first.size_quote is not None
    assert D(800) < first.size_quote + D(900) <= D(1000)  # capped at the room left under 10%
    w.buy("BTCUSDT", "150")  # now above 10%
    second = w.mother.decide()
    assert second.decision.action == "hold"
    assert checks_of(second)["max_position_fraction"] is False


def test_max_total_exposure(tmp_path: Path) -> None:
    w = build_world(tmp_path, risk_max_total_exposure=0.3)
    w.buy("ETHUSDT", "3000")
    strong(w, "BTCUSDT", "ETHUSDT")
    w.agents.predictions["ETHUSDT"] = prediction("ETHUSDT", 0.5, 0.0)  # no view on ETH: keep it
    outcome = w.mother.decide()
    assert outcome.decision.action == "hold"
    checks = checks_of(outcome)
    assert checks["max_total_exposure"] is False and checks["max_position_fraction"] is True


def test_max_open_positions_allows_adding_to_a_held_symbol(tmp_path: Path) -> None:
    w = build_world(tmp_path, risk_max_open_positions=1)
    w.buy("ETHUSDT", "500")
    strong(w, "BTCUSDT")
    refused = w.mother.decide()
    assert refused.decision.action == "hold" and checks_of(refused)["max_open_positions"] is False
    strong(w, "ETHUSDT")
    adding = w.mother.decide().decision
    assert (adding.action, adding.symbol) == ("buy", "ETHUSDT")


def test_the_next_symbol_is_tried_when_the_best_fails_a_check(tmp_path: Path) -> None:
    w = build_world(tmp_path, risk_max_position_fraction=0.1)
    w.buy("BTCUSDT", "1000")  # BTC is at its limit
    strong(w, "BTCUSDT", "ETHUSDT")
    w.agents.predictions["ETHUSDT"] = prediction("ETHUSDT", 0.75, 0.02)  # a smaller edge
    decision = w.mother.decide().decision
    assert (decision.action, decision.symbol) == ("buy", "ETHUSDT")
    assert [(c.symbol, c.passed) for c in decision.candidates] == [("BTCUSDT", False), ("ETHUSDT", True)]


def test_daily_loss_limit_halts_entries_until_the_next_utc_day_or_a_resume(world: World) -> None:
    strong(world, "BTCUSDT", "ETHUSDT")
    world.agents.predictions["ETHUSDT"] = prediction("ETHUSDT", 0.5, 0.0)
    world.buy("ETHUSDT", "2500")
    start = world.mother.decide().decision  # the day's first decision records its start equity
    assert start.action == "buy"
    assert start.daily_loss["start_equity"] == start.portfolio["equity"]
    world.set_price("ETHUSDT", 1_700.0)  # ETH -15%: about -3.75% of equity
    blocked = world.mother.decide()
    assert blocked.decision.action == "hold"
    check = next(c for c in blocked.decision.risk_checks if c.name == "daily_loss_limit")
    assert not check.passed and check.value == pytest.approx(0.0375, abs=0.001) and check.limit == 0.03
    world.set_price("ETHUSDT", 2_000.0)  # recovering does not lift a breach: it latches
    assert checks_of(world.mother.decide())["daily_loss_limit"] is False

    # Exits stay allowed while entries are blocked.
    world.agents.predictions["ETHUSDT"] = prediction("ETHUSDT", 0.2, -0.03)
    assert world.mother.decide().decision.action == "sell"
    world.agents.predictions["ETHUSDT"] = prediction("ETHUSDT", 0.5, 0.0)

    # A manual resume lifts the breach the same day and re-arms the limit from the equity then.
    state = world.mother.resume_entries()
    assert not state.breached and state.resumed_at is not None
    resumed = world.mother.decide().decision
    assert resumed.action == "buy"
    assert resumed.daily_loss["baseline_equity"] == state.to_dict()["equity"]
    world.set_price("ETHUSDT", 1_700.0)
    assert checks_of(world.mother.decide())["daily_loss_limit"] is False

    # The next UTC day starts afresh from that day's equity.
    day = 86_400_000
    world.clock.now = (world.clock.now // day + 1) * day + 60_000
    fresh = world.mother.decide().decision
    assert fresh.action == "buy" and not fresh.daily_loss["breached"]
    assert (
        fresh.daily_loss["day"] == datetime.fromtimestamp(world.clock.now / 1000, tz=UTC).date().isoformat()
    )
    assert fresh.daily_loss["start_equity"] == fresh.portfolio["equity"]


def test_kill_switch_blocks_execution_and_the_decision_says_so(world: World) -> None:
    strong(world, "BTCUSDT")
    world.kill_switch.halt("test")
    outcome = world.mother.decide(execute=True)
    decision = outcome.decision
    assert decision.action == "buy" and decision.halted and not decision.executed
    assert outcome.order is None and decision.order_status is None
    assert checks_of(outcome)["kill_switch"] is False
    assert "halted" in decision.reason
    assert world.orders() == []
    world.kill_switch.resume()
    assert world.mother.decide(execute=True).decision.executed


# --- provenance, records, determinism -------------------------------------------------------------


def test_ignored_voters_are_listed_with_their_reasons(world: World) -> None:
    world.agents.views_ = [
        view("BTCUSDT"),
        view("ETHUSDT", stale="model is 200 h old (max 168 h)"),
        view("SOLUSDT", active=False),
        view("XRPUSDT", version=None),
        view("ADAUSDT"),
    ]
    world.agents.predictions = {
        "BTCUSDT": prediction("BTCUSDT", 0.6, 0.004),
        "ADAUSDT": DataUnavailable("No 1h candles for ADAUSDT are stored and Binance is unreachable."),
    }
    decision = world.mother.decide().decision
    assert [v.agent for v in decision.votes] == ["BTCUSDT"]
    ignored = {i.agent: (i.code, i.reason) for i in decision.ignored}
    assert ignored["ETHUSDT"] == ("stale", "Stale model: model is 200 h old (max 168 h).")
    assert ignored["SOLUSDT"][0] == "inactive"
    assert ignored["XRPUSDT"] == ("untrained", "No trained model yet: train the agent to let it vote.")
    assert ignored["ADAUSDT"][0] == "prediction_failed" and "Binance is unreachable" in ignored["ADAUSDT"][1]
    vote = decision.votes[0]
    assert (vote.model_version, vote.as_of, vote.prob_up) == ("v1", T0 + (BARS - 1) * HOUR, 0.6)
    assert "k/(n+k)" in vote.weight.formula


def test_predictions_from_stale_data_do_not_vote(world: World) -> None:
    world.agents.views_ = [view("BTCUSDT"), view("ETHUSDT")]
    world.agents.predictions = {
        "BTCUSDT": prediction("BTCUSDT", 0.6, 0.004),
        "ETHUSDT": dataclasses.replace(prediction("ETHUSDT", 0.7, 0.01), data_stale=True),
    }
    decision = world.mother.decide().decision
    assert [v.agent for v in decision.votes] == ["BTCUSDT"]
    assert {i.agent: i.code for i in decision.ignored}["ETHUSDT"] == "stale_data"


def test_listed_strategies_without_a_store_add_no_voter(tmp_path: Path) -> None:
    # The world has no strategy store: asking for strategies changes nothing about the agents' votes.
    w = build_world(tmp_path, mother_ai_include_strategies="all")
    strong(w, "BTCUSDT")
    decision = w.mother.decide().decision
    assert [v.agent for v in decision.votes] == ["BTCUSDT"] and decision.ignored == []


def test_same_inputs_give_the_same_decision(world: World) -> None:
    strong(world, "BTCUSDT", "ETHUSDT")
    payloads = [world.mother.decide().decision.to_dict() for _ in range(3)]
    for payload in payloads:
        assert payload.pop("id") and payload.pop("created_at")
    assert payloads[0] == payloads[1] == payloads[2]
    assert json.dumps(payloads[0])  # JSON-ready as stored


def test_execute_records_the_decision_its_votes_and_the_order(world: World) -> None:
    strong(world, "BTCUSDT", "ETHUSDT")
    outcome = world.mother.decide(["ethusdt", "BTCUSDT"], execute=True)
    decision, order = outcome.decision, outcome.order
    assert decision.symbols == ["BTCUSDT", "ETHUSDT"]
    assert order is not None and order.filled and decision.executed
    assert order.decision_id == decision.id
    assert decision.client_order_id == order.client_order_id == client_order_id_for(decision.id)
    assert decision.size_quote is not None and order.quote_quantity <= decision.size_quote
    with world.sessions() as session:
        row = session.get(DecisionRecord, decision.id)
        assert row is not None and row.executed and row.order_id == order.id
        assert row.order_status == "FILLED" and row.payload == decision.to_dict()
        votes = session.scalars(select(PredictionRecord).where(PredictionRecord.decision_id == decision.id))
        assert sorted(v.agent for v in votes) == ["BTCUSDT", "ETHUSDT"]
    lines = (world.settings.trade_log_dir / "decisions.jsonl").read_text().splitlines()
    logged = json.loads(lines[-1])
    assert logged["kind"] == "decision" and logged["data"]["id"] == decision.id
    assert logged["data"]["order"]["client_order_id"] == order.client_order_id
    listed, total = world.mother.list_decisions(limit=10)
    assert total == 1 and listed[0] == decision
    assert world.mother.get_decision(decision.id) == decision


def test_retrying_with_the_same_client_order_id_returns_the_first_decision(world: World) -> None:
    strong(world, "BTCUSDT")
    first = world.mother.decide(execute=True, client_order_id="retry-1")
    again = world.mother.decide(execute=True, client_order_id="retry-1")
    assert again.replayed and again.decision == first.decision
    assert again.order is not None and first.order is not None and again.order.id == first.order.id
    assert len(world.orders()) == 1


def test_no_trained_agents_is_a_409_that_says_what_to_train(client: TestClient) -> None:
    ctx = ctx_of(client)
    service = AgentService(ctx.sessions, ctx.market, ctx.jobs, ctx.settings.models_dir, ctx.clock)
    service.ensure_defaults(168.0)
    tracker = PerformanceTracker(ctx.sessions, ctx.market, round_trip_cost=0.003, clock=ctx.clock)
    executor = PaperExecutor(ctx.settings.paper, ctx.sessions, ctx.market)
    mother = MotherAI(
        ctx.sessions,
        ctx.market,
        service,
        executor,
        tracker,
        limits=limits_for(ctx.settings.risk),
        costs=cost_model_for(ctx.settings.paper),
        clock=ctx.clock,
    )
    with pytest.raises(Conflict) as caught:
        mother.decide()
    error = caught.value
    # The domain names what is wrong; which endpoints fix it is the API's hint (tests/routes).
    assert error.code == "no_trained_agents" and "/api/" not in error.message
    assert "Train BTCUSDT, ETHUSDT first." in error.message
    assert error.details == {"untrained": ["BTCUSDT", "ETHUSDT"], "missing": []}
    with pytest.raises(Conflict) as unknown:
        mother.decide(["SOLUSDT"])
    assert "No agent exists for SOLUSDT" in unknown.value.message
    assert unknown.value.details == {"untrained": [], "missing": ["SOLUSDT"]}


# --- concurrency ----------------------------------------------------------------------------------


def test_fifty_concurrent_executes_give_consistent_orders_and_balances(world: World) -> None:
    strong(world, "BTCUSDT", "ETHUSDT")
    barrier = threading.Barrier(50)

    def decide(_: int) -> Any:
        barrier.wait()
        return world.mother.decide(execute=True)

    with ThreadPoolExecutor(50) as pool:
        outcomes = list(pool.map(decide, range(50)))

    orders = world.orders()
    by_decision = {o.decision.id: o for o in outcomes}
    assert len(by_decision) == 50
    # Every response's order exists exactly once; no order without a response.
    responded = [o.order.id for o in outcomes if o.order is not None]
    assert sorted(responded) == [o.id for o in orders] and len(set(responded)) == len(responded)
    for order in orders:
        outcome = by_decision[order.decision_id]
        assert outcome.decision.order_id == order.id
        assert outcome.decision.client_order_id == order.client_order_id
    with world.sessions() as session:
        assert session.scalar(select(func.count()).select_from(DecisionRecord)) == 50
        balances = {b.asset: b.amount for b in session.scalars(select(TradingBalance))}
    filled = [o for o in orders if o.status == "FILLED"]
    assert filled, "strong views must trade"
    spent = sum((o.quote_quantity + o.fee for o in filled if o.side == "BUY"), D(0))
    received = sum((o.quote_quantity - o.fee for o in filled if o.side == "SELL"), D(0))
    assert balances["USDT"] == D(10_000) - spent + received
    for asset, symbol in (("BTC", "BTCUSDT"), ("ETH", "ETHUSDT")):
        bought = sum((o.executed_quantity for o in filled if o.symbol == symbol and o.side == "BUY"), D(0))
        assert balances.get(asset, D(0)) == bought
    # Each decision sized against the fills before it, so the limits held under concurrency.
    portfolio = world.executor.portfolio()
    for position in portfolio.positions:
        assert position.market_value <= D("0.25") * D(10_000)
    exposure = sum((p.market_value for p in portfolio.positions), D(0))
    assert exposure <= D("0.75") * D(10_000)
