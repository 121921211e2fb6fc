"""Performance tracking: stores every prediction, resolves it against the candles that followed, and
keeps each agent's out-of-sample record and the portfolio's equity curve.

Resolution
- A prediction made from the candle opening at ``as_of`` (the last closed candle its agent saw) over
  ``horizon`` bars resolves to ``realised_return = close[target] / close[as_of] - 1`` with
  ``target = as_of + horizon bars``: the same forward return the agents were trained on
  (``ml_engine.labels``). Both candles must exist with exactly those open times, and the target
  candle must have closed by ``now``; otherwise the prediction stays unresolved (a gap is never
  bridged by a neighbouring candle). Candles come from ``MarketData.candles`` on the prediction's
  own interval, i.e. the same series its agent predicted from (synced first when online).
- ``up = realised_return > 0`` (an unchanged close counts as not up, like a flat label).
- ``hit``: whether prob_up was on the right side of 0.5. It is judged from ``prob_up`` whatever
  the agent's action, so a "hold" at 0.53 still counts as leaning up; a prediction at exactly 0.5
  has no direction: ``hit`` is None and it is left out of the hit rate.
- ``brier = (prob_up - up)^2``: 0 is perfect, 0.25 is a coin flip.
- ``follow_pnl``: the return of doing what the agent said, as a fraction of the amount traded:
  a "buy" is ``realised_return - round_trip_cost`` (fees and slippage in and out); spot trading is
  long-only, so following a "sell" or a "hold" means staying in cash: 0.

Statistics (per agent)
One prediction is recorded per decision it voted in, so 50 decisions on one closed candle store
it 50 times. Every statistic counts a prediction once, keyed by (agent, model_version, as_of,
horizon), over the agent's ``SKILL_WINDOW`` most recent resolved predictions (markets change;
old skill should fade). ``calibration`` is the Brier-optimal shrink factor of the agent's
probabilities (``mother_ai.weighting`` has the formula and how it becomes a weight).

Portfolio
``snapshot(portfolio)`` stores the equity, realised and unrealised pnl at a moment; the equity
curve and maximum drawdown are built from the snapshots of the account's current epoch (a paper
reset starts a new curve) plus the live portfolio as the last point.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from backtester.metrics import drawdown_series, max_drawdown
from db.models import EquitySnapshot, PredictionRecord
from db.storage import transaction
from mother_ai.orders import Portfolio, plain
from mother_ai.votes import PredictionLike
from mother_ai.weighting import SKILL_WINDOW, calibration_of
from utils.errors import AppError
from utils.intervals import interval_ms, is_closed, next_open_time
from utils.market_data.market import MarketData

log = logging.getLogger(__name__)

MAX_BARS_PER_LOAD = 5000  # candles loaded at once while resolving one series


# --- results --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentStats:
    """One agent's resolved record; counts are of distinct predictions (see the module docstring)."""

    agent: str
    resolved: int
    unresolved: int  # not resolved yet: horizon still open, or its candles missing
    directional: int  # resolved with prob_up != 0.5: the hit rate's denominator
    hits: int
    hit_rate: float | None
    brier: float | None
    brier_skill: float | None  # 1 - brier / 0.25: > 0 beats a coin flip
    calibration: float | None  # sum(d*(y-0.5)) / sum(d^2), d = prob_up - 0.5; None without data
    calibration_n: int  # predictions with d != 0 behind `calibration`
    follow_trades: int  # resolved "buy" predictions
    follow_pnl: float  # sum of follow returns (fractions of the amount traded)
    follow_pnl_mean: float | None  # per followed buy
    last_resolved_as_of: int | None

    @classmethod
    def empty(cls, agent: str, unresolved: int = 0) -> AgentStats:
        return cls(agent, 0, unresolved, 0, 0, None, None, None, None, 0, 0, 0.0, None, None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ResolveReport:
    resolved: int  # prediction rows resolved now
    pending: int  # rows whose target candle has not closed yet
    missing: int  # rows whose base or target candle is not stored (gap or no data)
    errors: list[str] = field(default_factory=list)  # series that could not be loaded

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class EquityPoint:
    time: datetime
    equity: Decimal
    realised: Decimal
    unrealised: Decimal

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time.isoformat(),
            "equity": plain(self.equity),
            "realised": plain(self.realised),
            "unrealised": plain(self.unrealised),
        }


@dataclass(frozen=True, slots=True)
class PortfolioStats:
    mode: str
    epoch: int
    quote_asset: str
    equity: Decimal
    realised_pnl: Decimal
    unrealised_pnl: Decimal
    initial_balance: Decimal | None
    peak_equity: Decimal
    max_drawdown: float  # largest fall from a running peak, as a fraction of that peak
    current_drawdown: float
    snapshots: int
    equity_curve: list[EquityPoint]  # the most recent points, oldest first, ending with "now"

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "epoch": self.epoch,
            "quote_asset": self.quote_asset,
            "equity": plain(self.equity),
            "realised_pnl": plain(self.realised_pnl),
            "unrealised_pnl": plain(self.unrealised_pnl),
            "initial_balance": None if self.initial_balance is None else plain(self.initial_balance),
            "peak_equity": plain(self.peak_equity),
            "max_drawdown": self.max_drawdown,
            "current_drawdown": self.current_drawdown,
            "snapshots": self.snapshots,
            "equity_curve": [point.to_dict() for point in self.equity_curve],
            # From the running peak within the curve shown (max_drawdown covers every snapshot).
            "drawdown": drawdown_series([float(p.equity) for p in self.equity_curve]).tolist(),
        }


# --- pure scoring ---------------------------------------------------------------------------------


def score(prob_up: float, action: str, realised_return: float, round_trip_cost: float) -> dict[str, Any]:
    """hit, brier and follow_pnl of one prediction (definitions in the module docstring)."""
    up = realised_return > 0
    hit = None if prob_up == 0.5 else (prob_up > 0.5) == up
    brier = (prob_up - (1.0 if up else 0.0)) ** 2
    follow = realised_return - round_trip_cost if action == "buy" else 0.0
    return {"hit": hit, "brier": brier, "follow_pnl": follow}


def target_open_time(as_of: int, interval: str, horizon: int) -> int:
    """Open time of the candle `horizon` bars after the one opening at `as_of`."""
    if interval != "1M":
        return as_of + horizon * interval_ms(interval)
    target = as_of
    for _ in range(horizon):
        target = next_open_time(target, interval)
    return target


# --- the tracker ----------------------------------------------------------------------------------


class PerformanceTracker:
    """Records predictions and equity snapshots, resolves predictions, and reports statistics."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        market: MarketData,
        *,
        round_trip_cost: float,
        clock: Callable[[], int],
    ) -> None:
        self.sessions = sessions
        self.market = market
        self.round_trip_cost = float(round_trip_cost)
        self.clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock() / 1000, tz=UTC)

    # --- predictions ----------------------------------------------------------------------------

    def record_predictions(
        self,
        predictions: Sequence[tuple[str, PredictionLike]],
        decision_id: str | None = None,
        session: Session | None = None,
    ) -> None:
        """Store (agent, prediction) pairs, linked to `decision_id`; in `session` when given (so a
        decision and its votes commit together), else in a transaction of their own."""
        now = self._now()
        rows = [
            PredictionRecord(
                agent=agent,
                symbol=p.symbol,
                interval=p.interval,
                horizon=p.horizon,
                model_version=p.model_version,
                as_of=int(p.as_of),
                prob_up=float(p.prob_up),
                action=p.action,
                confidence=float(p.confidence),
                expected_return=float(p.expected_return),
                created_at=now,
                decision_id=decision_id,
                resolved=False,
            )
            for agent, p in predictions
        ]
        if session is not None:
            session.add_all(rows)
            return
        with transaction(self.sessions) as own:
            own.add_all(rows)

    def resolve(self, now_ms: int | None = None) -> ResolveReport:
        """Resolve every unresolved prediction whose target candle has closed and is stored."""
        now = self.clock() if now_ms is None else now_ms
        with self.sessions() as session:
            rows = session.execute(
                select(
                    PredictionRecord.id,
                    PredictionRecord.symbol,
                    PredictionRecord.interval,
                    PredictionRecord.horizon,
                    PredictionRecord.as_of,
                    PredictionRecord.prob_up,
                    PredictionRecord.action,
                ).where(PredictionRecord.resolved.is_(False))
            ).all()
        series: dict[tuple[str, str], list[Any]] = defaultdict(list)
        pending = 0
        for row in rows:
            target = target_open_time(row.as_of, row.interval, row.horizon)
            if not is_closed(target, row.interval, now):  # the target candle has not closed yet
                pending += 1
                continue
            series[(row.symbol, row.interval)].append((row, target))

        updates: list[dict[str, Any]] = []
        missing = 0
        errors: list[str] = []
        resolved_at = datetime.fromtimestamp(now / 1000, tz=UTC)
        for (symbol, interval), items in sorted(series.items()):
            try:
                closes = self._closes(symbol, interval, items, now)
            except AppError as exc:
                errors.append(f"{symbol} {interval}: {exc.message}")
                missing += len(items)
                continue
            for row, target in items:
                base, final = closes.get(row.as_of), closes.get(target)
                if base is None or final is None or base <= 0:
                    missing += 1
                    continue
                realised = final / base - 1.0
                updates.append(
                    {
                        "id": row.id,
                        "resolved": True,
                        "resolved_at": resolved_at,
                        "realised_return": realised,
                        **score(row.prob_up, row.action, realised, self.round_trip_cost),
                    }
                )
        if updates:
            with transaction(self.sessions) as session:
                # Bulk UPDATE by primary key; resolving the same row twice writes the same values.
                session.execute(update(PredictionRecord), updates)
        if updates or errors:
            log.info(
                "resolved %d prediction(s); %d pending, %d missing candles", len(updates), pending, missing
            )
        return ResolveReport(len(updates), pending, missing, errors)

    def _closes(self, symbol: str, interval: str, items: list[Any], now: int) -> dict[int, float]:
        """Closes by open time covering every base and target candle in `items`, loaded in windows
        of at most MAX_BARS_PER_LOAD candles so one old prediction cannot force a huge load."""
        step = interval_ms(interval)
        wanted = sorted({t for row, target in items for t in (int(row.as_of), target)})
        closes: dict[int, float] = {}
        start = 0
        while start < len(wanted):
            stop = start
            while stop + 1 < len(wanted) and (wanted[stop + 1] - wanted[start]) // step < MAX_BARS_PER_LOAD:
                stop += 1
            lo, hi = wanted[start], min(wanted[stop], now)
            limit = max(1, (hi - lo) // step + 1) if interval != "1M" else MAX_BARS_PER_LOAD
            answer = self.market.candles(symbol, interval, limit=limit, start_ms=lo, end_ms=hi)
            window, start = wanted[start : stop + 1], stop + 1
            if answer.stale and answer.source != "cache":
                # Binance unreachable and only file/sample candles at hand: those are not the
                # market the prediction was about; resolve later instead.
                continue
            times = answer.candles.open_time
            values = answer.candles.close
            for t in window:
                index = int(np.searchsorted(times, t))
                if index < len(times) and int(times[index]) == t and math.isfinite(float(values[index])):
                    closes[t] = float(values[index])
        return closes

    def agent_stats(self, agents: Sequence[str] | None = None) -> dict[str, AgentStats]:
        """Statistics per agent (only agents with recorded predictions appear)."""
        key_columns = (
            PredictionRecord.agent,
            PredictionRecord.model_version,
            PredictionRecord.as_of,
            PredictionRecord.horizon,
        )
        resolved_q = (
            select(
                *key_columns,
                PredictionRecord.prob_up,
                PredictionRecord.action,
                PredictionRecord.realised_return,
                PredictionRecord.hit,
                PredictionRecord.brier,
                PredictionRecord.follow_pnl,
            )
            .where(PredictionRecord.resolved.is_(True))
            .distinct()
            .order_by(PredictionRecord.agent, PredictionRecord.as_of.desc(), PredictionRecord.model_version)
        )
        if agents is not None:
            resolved_q = resolved_q.where(PredictionRecord.agent.in_(list(agents)))
        with self.sessions() as session:
            resolved_rows = session.execute(resolved_q).all()
            pending_sub = (
                select(*key_columns).where(PredictionRecord.resolved.is_(False)).distinct().subquery()
            )
            pending_q = select(pending_sub.c.agent, func.count()).group_by(pending_sub.c.agent)
            if agents is not None:
                pending_q = pending_q.where(pending_sub.c.agent.in_(list(agents)))
            unresolved = {agent: int(count) for agent, count in session.execute(pending_q).all()}

        by_agent: dict[str, list[Any]] = defaultdict(list)
        seen: set[tuple[str, str, int, int]] = set()
        for row in resolved_rows:
            key = (row.agent, row.model_version, int(row.as_of), int(row.horizon))
            if key in seen or len(by_agent[row.agent]) >= SKILL_WINDOW:
                continue
            seen.add(key)
            by_agent[row.agent].append(row)
        result = {agent: _stats(agent, rows, unresolved.get(agent, 0)) for agent, rows in by_agent.items()}
        for agent, count in unresolved.items():
            result.setdefault(agent, AgentStats.empty(agent, count))
        return dict(sorted(result.items()))

    def predictions(
        self, *, decision_id: str | None = None, agent: str | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[list[PredictionRecord], int]:
        """Stored predictions, newest first, and how many match."""
        conditions = []
        if decision_id is not None:
            conditions.append(PredictionRecord.decision_id == decision_id)
        if agent is not None:
            conditions.append(PredictionRecord.agent == agent)
        with self.sessions() as session:
            rows = session.scalars(
                select(PredictionRecord)
                .where(*conditions)
                .order_by(PredictionRecord.id.desc())
                .limit(limit)
                .offset(offset)
            ).all()
            total = session.scalar(select(func.count()).select_from(PredictionRecord).where(*conditions))
            return list(rows), int(total or 0)

    # --- the portfolio --------------------------------------------------------------------------

    def snapshot(self, portfolio: Portfolio, when: datetime | None = None) -> None:
        """Store one point of the equity curve."""
        with transaction(self.sessions) as session:
            session.add(
                EquitySnapshot(
                    mode=portfolio.mode,
                    epoch=portfolio.epoch,
                    time=when or self._now(),
                    equity=portfolio.equity,
                    realised=portfolio.realised_pnl,
                    unrealised=portfolio.unrealised_pnl,
                )
            )

    def portfolio_stats(self, portfolio: Portfolio, curve_limit: int = 500) -> PortfolioStats:
        """Equity curve and drawdowns of the portfolio's current epoch, `portfolio` being "now"."""
        with self.sessions() as session:
            rows = session.execute(
                select(
                    EquitySnapshot.time,
                    EquitySnapshot.equity,
                    EquitySnapshot.realised,
                    EquitySnapshot.unrealised,
                )
                .where(EquitySnapshot.mode == portfolio.mode, EquitySnapshot.epoch == portfolio.epoch)
                .order_by(EquitySnapshot.time, EquitySnapshot.id)
            ).all()
        points = [EquityPoint(r.time, r.equity, r.realised, r.unrealised) for r in rows]
        points.append(
            EquityPoint(portfolio.as_of, portfolio.equity, portfolio.realised_pnl, portfolio.unrealised_pnl)
        )
        worst, current = max_drawdown([float(p.equity) for p in points])
        return PortfolioStats(
            mode=portfolio.mode,
            epoch=portfolio.epoch,
            quote_asset=portfolio.quote_asset,
            equity=portfolio.equity,
            realised_pnl=portfolio.realised_pnl,
            unrealised_pnl=portfolio.unrealised_pnl,
            initial_balance=portfolio.initial_balance,
            peak_equity=max(p.equity for p in points),
            max_drawdown=worst,
            current_drawdown=current,
            snapshots=len(rows),
            equity_curve=points[-max(1, curve_limit) :],
        )


def _stats(agent: str, rows: list[Any], unresolved: int) -> AgentStats:
    directional = [r for r in rows if r.hit is not None]
    hits = sum(1 for r in directional if r.hit)
    briers = [float(r.brier) for r in rows if r.brier is not None]
    brier = sum(briers) / len(briers) if briers else None
    skill = calibration_of((float(r.prob_up), r.realised_return) for r in rows)
    follows = [float(r.follow_pnl) for r in rows if r.action == "buy" and r.follow_pnl is not None]
    return AgentStats(
        agent=agent,
        resolved=len(rows),
        unresolved=unresolved,
        directional=len(directional),
        hits=hits,
        hit_rate=hits / len(directional) if directional else None,
        brier=brier,
        brier_skill=None if brier is None else 1.0 - brier / 0.25,
        calibration=skill.calibration,
        calibration_n=skill.calibration_n,
        follow_trades=len(follows),
        follow_pnl=sum(follows),
        follow_pnl_mean=sum(follows) / len(follows) if follows else None,
        last_resolved_as_of=int(rows[0].as_of) if rows else None,
    )
