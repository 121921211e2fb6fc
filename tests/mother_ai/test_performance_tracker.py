"""mother_ai/performance_tracker.py: resolution against the exact horizon candle (never across a
gap, never before the target candle closed), hit/Brier/follow-pnl values, per-agent statistics
counted once per distinct prediction, and the portfolio's equity curve and drawdown. Values are
recomputed here from the definitions, on a real SQLite file and a real candle store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from agents.generic_agent import Action, Prediction
from backtester.metrics import max_drawdown
from db import storage
from db.models import PredictionRecord
from mother_ai.performance_tracker import PerformanceTracker, score, target_open_time
from mother_ai.trade_executer import OrderRequest, PaperExecutor
from tests.support.candles import store_rows
from tests.support.clock import Clock
from tests.support.exchange import symbol_rows
from tests.support.portfolio import cash_portfolio
from tests.support.settings import make_settings
from utils.market_data.candles import CandleStore
from utils.market_data.market import SAMPLE_FILTERS, MarketData

HOUR = 3_600_000
T0 = int(datetime(2025, 3, 1, tzinfo=UTC).timestamp() * 1000)
COST = 0.003
D = Decimal
# Closes of BTCUSDT 1h, hour by hour from T0: a rising line with a dip every third hour, so some
# 4-hour returns are down (into a dip) and most are up. Hour 14 is missing (a gap); 15 exists.
CLOSES = {i: 100.0 + 2.0 * i - (10.0 if i % 3 == 0 else 0.0) for i in range(30) if i != 14}


@dataclass
class Env:
    sessions: sessionmaker[Session]
    store: CandleStore
    market: MarketData
    clock: Clock
    tracker: PerformanceTracker
    tmp_path: Path


@pytest.fixture
def env(tmp_path: Path) -> Env:
    engine = storage.make_engine(f"sqlite:///{tmp_path / 'track.db'}")
    storage.upgrade_to_head(engine)
    sessions = storage.make_session_factory(engine)
    store = CandleStore(tmp_path / "store")
    store.merge("file", "BTCUSDT", "1h", store_rows([T0 + i * HOUR for i in CLOSES], list(CLOSES.values())))
    clock = Clock(T0 + 30 * HOUR)
    market = MarketData(store, None, sessions, clock, tmp_path / "data")
    tracker = PerformanceTracker(sessions, market, round_trip_cost=COST, clock=clock)
    return Env(sessions, store, market, clock, tracker, tmp_path)


def pred(
    hour: int, prob_up: float, *, action: Action = "buy", horizon: int = 4, version: str = "v1"
) -> Prediction:
    return Prediction(
        symbol="BTCUSDT",
        interval="1h",
        horizon=horizon,
        action=action,
        prob_up=prob_up,
        confidence=abs(2 * prob_up - 1),
        expected_return=0.01,
        model_version=version,
        as_of=T0 + hour * HOUR,
        stale=False,
        stale_reason=None,
    )


def rows(env: Env) -> list[PredictionRecord]:
    with env.sessions() as session:
        return list(session.scalars(select(PredictionRecord).order_by(PredictionRecord.id)))


# --- resolution -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hour", "prob_up", "action"),
    [
        (2, 0.7, "buy"),  # closes 104 -> 102 (into a dip): down, a miss, a losing follow
        (3, 0.7, "buy"),  # 96 -> 114: up, a hit
        (5, 0.3, "sell"),  # 110 -> 108: down, a hit; following a sell is staying in cash: 0
        (4, 0.52, "hold"),  # 108 -> 116: a hold leaning up is still judged by its side of 0.5
        (6, 0.5, "hold"),  # exactly a coin flip: no direction, no hit
    ],
)
def test_a_prediction_resolves_on_its_exact_horizon_candle(
    env: Env, hour: int, prob_up: float, action: Action
) -> None:
    env.tracker.record_predictions([("BTCUSDT", pred(hour, prob_up, action=action))], decision_id="d1")
    report = env.tracker.resolve()
    assert (report.resolved, report.pending, report.missing) == (1, 0, 0)
    (row,) = rows(env)
    realised = CLOSES[hour + 4] / CLOSES[hour] - 1
    up = realised > 0
    assert row.resolved and row.decision_id == "d1"
    assert row.realised_return == pytest.approx(realised)
    assert row.brier == pytest.approx((prob_up - (1.0 if up else 0.0)) ** 2)
    assert row.hit == (None if prob_up == 0.5 else (prob_up > 0.5) == up)
    assert row.follow_pnl == pytest.approx(realised - COST if action == "buy" else 0.0)
    assert row.resolved_at == datetime.fromtimestamp(env.clock.now / 1000, tz=UTC)


def test_score_definitions() -> None:
    assert score(0.8, "buy", 0.02, COST) == {"hit": True, "brier": pytest.approx(0.04), "follow_pnl": 0.017}
    assert score(0.8, "buy", 0.0, COST)["hit"] is False  # an unchanged close is not up
    assert score(0.5, "hold", -0.01, COST) == {"hit": None, "brier": 0.25, "follow_pnl": 0.0}
    assert score(0.2, "sell", -0.01, COST) == {"hit": True, "brier": pytest.approx(0.04), "follow_pnl": 0.0}


def test_unresolved_until_the_target_candle_has_closed(env: Env) -> None:
    env.tracker.record_predictions([("BTCUSDT", pred(20, 0.6))])
    target = T0 + 24 * HOUR
    env.clock.now = target + HOUR - 1  # the target candle is stored, but still forming at this time
    assert env.tracker.resolve().pending == 1
    assert not rows(env)[0].resolved
    env.clock.now = target + HOUR
    assert env.tracker.resolve().resolved == 1


def test_a_gap_at_the_target_leaves_it_unresolved(env: Env) -> None:
    # Hour 10 + 4 = hour 14 is missing: hour 15 is never used instead.
    env.tracker.record_predictions([("BTCUSDT", pred(10, 0.6))])
    report = env.tracker.resolve()
    assert (report.resolved, report.missing) == (0, 1)
    assert not rows(env)[0].resolved
    # Once the candle arrives, it resolves.
    close = 160.0
    env.store.merge("file", "BTCUSDT", "1h", np.array([[T0 + 14 * HOUR, close, close, close, close, 1.0]]))
    assert env.tracker.resolve().resolved == 1
    assert rows(env)[0].realised_return == pytest.approx(close / CLOSES[10] - 1)


def test_missing_series_is_reported_not_raised(env: Env) -> None:
    missing = Prediction("ETHUSDT", "1h", 4, "buy", 0.6, 0.2, 0.01, "v1", T0, False, None)
    env.tracker.record_predictions([("ETHUSDT", missing)])
    report = env.tracker.resolve()
    assert report.missing == 1 and report.errors and "ETHUSDT" in report.errors[0]


def test_target_open_time() -> None:
    assert target_open_time(T0, "1h", 4) == T0 + 4 * HOUR
    jan = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1000)
    assert target_open_time(jan, "1M", 2) == int(datetime(2025, 3, 1, tzinfo=UTC).timestamp() * 1000)


# --- statistics -----------------------------------------------------------------------------------


def test_agent_statistics_count_each_prediction_once(env: Env) -> None:
    made: list[tuple[int, float, Action]] = [
        (1, 0.7, "buy"),
        (2, 0.6, "buy"),
        (5, 0.3, "sell"),
        (7, 0.5, "hold"),
        (8, 0.45, "hold"),
    ]
    for decision in ("a", "b", "c"):  # three decisions voted with the same predictions
        env.tracker.record_predictions(
            [("BTCUSDT", pred(h, p, action=a)) for h, p, a in made], decision_id=decision
        )
    env.tracker.record_predictions([("BTCUSDT", pred(26, 0.6))])  # its target has not closed: pending
    env.tracker.resolve()
    stats = env.tracker.agent_stats()["BTCUSDT"]

    realised = {h: CLOSES[h + 4] / CLOSES[h] - 1 for h, _, _ in made}
    ups = {h: 1.0 if r > 0 else 0.0 for h, r in realised.items()}
    directional = [(h, p) for h, p, _ in made if p != 0.5]
    hits = sum(1 for h, p in directional if (p > 0.5) == (ups[h] == 1.0))
    calibration = sum((p - 0.5) * (ups[h] - 0.5) for h, p in directional) / sum(
        (p - 0.5) ** 2 for _, p in directional
    )
    brier = sum((p - ups[h]) ** 2 for h, p, _ in made) / len(made)
    follow = [realised[h] - COST for h, _, a in made if a == "buy"]

    assert (stats.resolved, stats.unresolved, stats.directional, stats.hits) == (5, 1, 4, hits)
    assert stats.hit_rate == pytest.approx(hits / 4)
    assert stats.brier == pytest.approx(brier)
    assert stats.brier_skill == pytest.approx(1 - brier / 0.25)
    assert stats.calibration == pytest.approx(calibration) and stats.calibration_n == 4
    assert stats.follow_trades == 2
    assert stats.follow_pnl == pytest.approx(sum(follow))
    assert stats.follow_pnl_mean == pytest.approx(sum(follow) / 2)
    assert stats.last_resolved_as_of == T0 + 8 * HOUR
    assert env.tracker.agent_stats(["ETHUSDT"]) == {}


def test_a_retrained_model_on_the_same_candle_is_another_prediction(env: Env) -> None:
    env.tracker.record_predictions([("BTCUSDT", pred(1, 0.7)), ("BTCUSDT", pred(1, 0.6, version="v2"))])
    env.tracker.resolve()
    assert env.tracker.agent_stats()["BTCUSDT"].resolved == 2


# --- the portfolio --------------------------------------------------------------------------------


def test_equity_curve_and_drawdown_from_snapshots(env: Env) -> None:
    start = datetime(2025, 3, 1, tzinfo=UTC)
    for i, equity in enumerate(["10000", "11000", "9900", "10500"]):
        env.tracker.snapshot(cash_portfolio(equity), start + timedelta(hours=i))
    env.tracker.snapshot(
        cash_portfolio("1", epoch=0), start
    )  # another epoch (before a reset): not this curve
    stats = env.tracker.portfolio_stats(cash_portfolio("10450"), curve_limit=3)
    assert stats.snapshots == 4
    assert stats.max_drawdown == pytest.approx((11000 - 9900) / 11000)
    assert stats.current_drawdown == pytest.approx((11000 - 10450) / 11000)
    assert stats.peak_equity == D(11000)
    assert [p.equity for p in stats.equity_curve] == [D("9900"), D("10500"), D("10450")]
    assert stats.to_dict()["equity_curve"][-1]["equity"] == "10450"
    assert max_drawdown([]) == (0.0, 0.0)


def test_pnl_comes_from_the_executors_portfolio(env: Env) -> None:
    settings = make_settings(env.tmp_path, paper_slippage_bps=0.0, paper_fee_rate=0.001)
    storage.upsert_symbols(env.sessions, symbol_rows(SAMPLE_FILTERS))
    executor = PaperExecutor(settings.paper, env.sessions, env.market)
    executor.submit(OrderRequest("BTCUSDT", "BUY", quote_amount=D("1000")))
    last = T0 + 29 * HOUR
    env.store.merge("file", "BTCUSDT", "1h", np.array([[last, 170.0, 170.0, 170.0, 170.0, 1.0]]))
    live = executor.portfolio()
    env.tracker.snapshot(live)
    stats = env.tracker.portfolio_stats(live)
    assert live.unrealised_pnl > 0
    assert (stats.equity, stats.realised_pnl, stats.unrealised_pnl) == (
        live.equity,
        live.realised_pnl,
        live.unrealised_pnl,
    )
