"""The Mother AI's world for its unit tests: a real SQLite file migrated to head, a real candle store and
`MarketData`, a real `PaperExecutor`, tracker and trade log, and agents that are a stand-in returning
fixed, real `Prediction` objects (tests/mother_ai/test_mother_ai.py, test_scheduler.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from agents.generic_agent import Action, AgentConfig, Prediction
from agents.service import AgentView
from db import storage
from db.models import TradeOrder
from mother_ai.fills import cost_model_for
from mother_ai.mother_ai import MotherAI
from mother_ai.performance_tracker import PerformanceTracker
from mother_ai.policy import limits_for
from mother_ai.trade_executer import KillSwitch, OrderRequest, PaperExecutor
from mother_ai.trade_log import TradeLog
from tests.support.candles import store_rows
from tests.support.clock import Clock
from tests.support.exchange import symbol_rows
from tests.support.settings import make_settings
from utils.market_data.candles import CandleStore
from utils.market_data.market import SAMPLE_FILTERS, MarketData
from utils.settings import Settings

HOUR = 3_600_000
T0 = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1000)
BARS = 48  # candles per symbol: T0 .. T0 + 47 h
FEE = 0.001
ROUND_TRIP = 2 * FEE  # slippage is 0 in these tests
D = Decimal


@dataclass
class FakeAgents:
    """Stands in for AgentService: real AgentView and Prediction objects, fixed answers."""

    views_: list[AgentView] = field(default_factory=list)
    predictions: dict[str, Prediction | Exception] = field(default_factory=dict)
    calls: int = 0

    def views(self) -> list[AgentView]:
        return list(self.views_)

    def predict(self, symbol: str) -> Prediction:
        self.calls += 1
        answer = self.predictions[symbol]
        if isinstance(answer, Exception):
            raise answer
        return answer


def view(
    symbol: str, *, version: str | None = "v1", active: bool = True, stale: str | None = None
) -> AgentView:
    return AgentView(
        config=AgentConfig(symbol=symbol),
        active=active,
        active_version=version,
        trained_at=None,
        metrics=None,
        stale=stale is not None,
        stale_reason=stale,
    )


def prediction(
    symbol: str, prob_up: float, expected_return: float, *, as_of: int | None = None, horizon: int = 4
) -> Prediction:
    action: Action = "buy" if prob_up > 0.55 else "sell" if prob_up < 0.45 else "hold"
    return Prediction(
        symbol=symbol,
        interval="1h",
        horizon=horizon,
        action=action,
        prob_up=prob_up,
        confidence=abs(2 * prob_up - 1),
        expected_return=expected_return,
        model_version="v1",
        as_of=T0 + (BARS - 1) * HOUR if as_of is None else as_of,
        stale=False,
        stale_reason=None,
    )


def candle_rows(closes: list[float], start: int = T0) -> np.ndarray:
    """Hourly store rows from `start` with these closes, highs/lows 0.1% beyond, volume 10."""
    close = np.asarray(closes, dtype=np.float64)
    times = start + np.arange(len(close), dtype=np.int64) * HOUR
    return store_rows(times, close, high=close * 1.001, low=close * 0.999, volume=10.0)


@dataclass
class World:
    settings: Settings
    sessions: sessionmaker[Session]
    store: CandleStore
    market: MarketData
    clock: Clock
    agents: FakeAgents
    executor: PaperExecutor
    kill_switch: KillSwitch
    tracker: PerformanceTracker
    trade_log: TradeLog
    mother: MotherAI

    def set_price(self, symbol: str, price: float) -> None:
        """The paper executor prices offline from the last stored close: replace it."""
        last = T0 + (BARS - 1) * HOUR
        self.store.merge("file", symbol, "1h", candle_rows([price], start=last))

    def buy(self, symbol: str, quote: str) -> None:
        order = self.executor.submit(OrderRequest(symbol, "BUY", quote_amount=D(quote)))
        assert order.filled, order.reject_reason

    def orders(self) -> list[TradeOrder]:
        with self.sessions() as session:
            return list(session.scalars(select(TradeOrder).order_by(TradeOrder.id)))


def build_world(tmp_path: Path, closes: dict[str, list[float]] | None = None, **overrides: Any) -> World:
    values: dict[str, Any] = {"paper_slippage_bps": 0.0, "paper_fee_rate": FEE}
    values.update(overrides)
    settings = make_settings(tmp_path, **values)
    engine = storage.make_engine(settings.database_url)
    storage.upgrade_to_head(engine)
    sessions = storage.make_session_factory(engine)
    store = CandleStore(settings.data_dir / "store")
    series = closes or {"BTCUSDT": [30_000.0] * BARS, "ETHUSDT": [2_000.0] * BARS}
    for symbol, values_ in series.items():
        store.merge("file", symbol, "1h", candle_rows(values_))
    clock = Clock(T0 + BARS * HOUR + 60_000)  # one minute after the last candle closed
    market = MarketData(store, None, sessions, clock, settings.data_dir)
    storage.upsert_symbols(sessions, symbol_rows(SAMPLE_FILTERS))
    kill_switch = KillSwitch(sessions, clock=clock)
    trade_log = TradeLog.from_settings(settings.storage, settings.secret_values(), clock=clock)
    executor = PaperExecutor(
        settings.paper, sessions, market, trade_log=trade_log, kill_switch=kill_switch, clock=clock
    )
    tracker = PerformanceTracker(sessions, market, round_trip_cost=ROUND_TRIP, clock=clock)
    agents = FakeAgents([view("BTCUSDT"), view("ETHUSDT")])
    mother = MotherAI(
        sessions,
        market,
        agents,
        executor,
        tracker,
        limits=limits_for(settings.risk),
        costs=cost_model_for(settings.paper),
        clock=clock,
        kill_switch=kill_switch,
        trade_log=trade_log,
    )
    return World(
        settings, sessions, store, market, clock, agents, executor, kill_switch, tracker, trade_log, mother
    )
