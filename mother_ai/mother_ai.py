"""The live Mother AI: collects the voters' predictions, weighs them by tracked skill, lets the policy pick
one action across symbols within the risk limits, executes it if asked, and records every decision.

This module is the shell around the pure decision core: the database (decisions, predictions, the daily
loss day), the clock, the exchange (through the executor), the lock, and the logs. The rules live in
``mother_ai.votes`` (what a voter says), ``mother_ai.weighting`` (skill weights), ``mother_ai.policy``
(combination, edges, sizing, risk checks), ``mother_ai.daily_loss``, ``mother_ai.explain`` (the reason
text) and ``mother_ai.fills`` (fills and the one cost model); ``mother_ai.replay`` runs the same core over
history.

Voters
    Every active agent with a trained, non-stale model votes with its latest ``Prediction``;
    inactive, untrained and stale agents, and agents whose prediction failed, are listed in the
    decision as ignored, with the reason. If none of the agents asked about has a trained model,
    ``decide`` raises Conflict ``no_trained_agents`` naming the agents to train. Saved strategies
    listed in MOTHER_AI_INCLUDE_STRATEGIES vote too (``mother_ai.strategy_voter``).

Kill switch: while halted the decision is still made and recorded, but nothing is submitted.

Determinism: no randomness besides the decision id; voters, symbols and candidates are sorted; the
time comes from the injected clock. The same inputs give the same payload but for id, time and a
generated client order id.

Concurrency: ``decide(execute=True)`` calls are serialised from reading the portfolio to recording the
order, within the process and across every process on the database (``WriteLocks.deciding``: an
advisory lock on PostgreSQL, a lock file beside SQLite's), so each sizes against the portfolio after the
previous fill and the limits hold under concurrency; the executor itself guarantees one fill per
client order id and never spends more than the balance. A decision is stored before its order is
submitted, under UNIQUE (mode, client_order_id): retrying with the same client order id returns
the first decision and its order.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db.models import DecisionRecord
from db.storage import WriteLocks, transaction
from mother_ai.daily_loss import DailyLossState
from mother_ai.decision import Decision, DecisionOutcome, client_order_id_for, portfolio_summary
from mother_ai.explain import reason_text
from mother_ai.fills import CostModel, cost_model_for
from mother_ai.kill_switch import KillSwitch
from mother_ai.live_votes import AgentSource, collect_votes
from mother_ai.orders import CLIENT_ORDER_ID_PATTERN, Executor, OrderRequest, OrderResult, Portfolio, plain
from mother_ai.performance_tracker import AgentStats, PerformanceTracker
from mother_ai.policy import (
    Candidate,
    RiskCheck,
    RiskLimits,
    SymbolEdge,
    book_of,
    combine,
    decide_action,
    kill_switch_check,
    limits_for,
)
from mother_ai.risk_days import DailyLossGuard
from mother_ai.trade_executer import get_order, make_executor
from mother_ai.trade_log import TradeLog
from mother_ai.votes import IgnoredVoter, PredictionLike, Vote, VoterKind, Weight, vote_from
from mother_ai.weighting import NULL_WEIGHT, PRIOR_WEIGHT, SHRINK_K, weight_for, weighting_summary
from strategy_engine.store import StrategyStore
from utils.crash import crash_point
from utils.errors import AppError, InvalidInput, NotFound
from utils.events import EventLog
from utils.market_data.market import MarketData
from utils.settings import Settings
from utils.symbols import is_symbol

__all__ = [
    "NULL_WEIGHT",
    "PRIOR_WEIGHT",
    "SHRINK_K",
    "Candidate",
    "DailyLossState",
    "Decision",
    "DecisionOutcome",
    "IgnoredVoter",
    "MotherAI",
    "RiskCheck",
    "SymbolEdge",
    "Vote",
    "Weight",
    "client_order_id_for",
    "combine",
    "make_mother_ai",
    "weight_for",
]

log = logging.getLogger(__name__)


# --- the Mother AI --------------------------------------------------------------------------------


class MotherAI:
    """Decides (and optionally trades) across agents; see the module docstring for the rules."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        market: MarketData,
        agents: AgentSource,
        executor: Executor,
        tracker: PerformanceTracker,
        *,
        limits: RiskLimits,
        costs: CostModel,
        clock: Callable[[], int],
        include_strategies: tuple[int, ...] | Literal["all"] = (),
        kill_switch: KillSwitch | None = None,
        trade_log: TradeLog | None = None,
        strategies: StrategyStore | None = None,
        locks: WriteLocks | None = None,
        events: EventLog | None = None,
    ) -> None:
        self.events = events  # decisions, orders and portfolio changes as events, for live streams
        self.strategies = strategies
        self.include_strategies = include_strategies
        self.sessions = sessions
        self.market = market
        self.agents = agents
        self.executor = executor
        self.tracker = tracker
        self.clock = clock
        self.kill_switch = kill_switch or KillSwitch(sessions, clock=clock)
        self.trade_log = trade_log
        self.locks = locks or WriteLocks()
        self.daily_loss = DailyLossGuard(sessions, limits.daily_loss_limit)
        self.costs = costs
        self.limits = limits

    # --- deciding -------------------------------------------------------------------------------

    def decide(
        self,
        symbols: Sequence[str] | None = None,
        execute: bool = False,
        client_order_id: str | None = None,
    ) -> DecisionOutcome:
        """Decide across `symbols` (default: every agent's symbol); with `execute`, place the order.

        `client_order_id` only matters with `execute`: the order gets it (else ``mai<decision id>``),
        and a retry with an id already used returns the first decision and order (`replayed`).
        Raises Conflict ``no_trained_agents`` when none of the agents asked about has a model."""
        wanted = _normalise_symbols(symbols)
        if client_order_id is not None and not (
            isinstance(client_order_id, str) and CLIENT_ORDER_ID_PATTERN.fullmatch(client_order_id)
        ):
            raise InvalidInput(
                f"client_order_id must match {CLIENT_ORDER_ID_PATTERN.pattern}.",
                details={"field": "client_order_id"},
            )
        if execute and client_order_id is not None:
            replay = self._replay(client_order_id)
            if replay is not None:
                return replay
        raw_votes, ignored, asked = self._collect(wanted)
        stats = self.tracker.agent_stats(sorted({agent for agent, _ in raw_votes}))
        votes = [vote_from(agent, p, weight_for(stats.get(agent)), _kind(agent)) for agent, p in raw_votes]
        if not execute:
            return self._decide(asked, votes, ignored, raw_votes, False, None)
        with self.locks.deciding():
            if client_order_id is not None:
                replay = self._replay(client_order_id)
                if replay is not None:
                    return replay
            return self._decide(asked, votes, ignored, raw_votes, True, client_order_id)

    def _collect(
        self, wanted: list[str] | None
    ) -> tuple[list[tuple[str, PredictionLike]], list[IgnoredVoter], list[str]]:
        return collect_votes(
            self.agents,
            self.strategies,
            self.include_strategies,
            self.market,
            self.executor.mode,
            self.clock,
            wanted,
        )

    def _decide(
        self,
        asked: list[str],
        votes: list[Vote],
        ignored: list[IgnoredVoter],
        raw_votes: list[tuple[str, PredictionLike]],
        execute: bool,
        client_order_id: str | None,
    ) -> DecisionOutcome:
        now_ms = self.clock()
        now = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
        decision_id = uuid.uuid4().hex
        portfolio = self.executor.portfolio()
        halted = self.kill_switch.is_halted()
        daily = self.daily_loss.evaluate(portfolio, now)
        voted = sorted({v.symbol for v in votes})
        symbols = sorted(set(voted) | {p.symbol for p in portfolio.positions})
        book = book_of(portfolio, {s: self.market.symbol_filters(s) for s in symbols})
        policy = decide_action(votes, book, self.limits, self.costs, daily)
        chosen, candidates = policy.chosen, policy.candidates
        risk_checks = [*policy.shown_checks(), kill_switch_check(halted)]
        action = policy.action
        will_submit = execute and chosen is not None and not halted
        cid = (client_order_id or client_order_id_for(decision_id)) if execute else None
        decision = Decision(
            id=decision_id,
            created_at=now,
            mode=self.executor.mode,
            symbols=asked,
            action=action,
            symbol=chosen.symbol if chosen else None,
            size_quote=Decimal(chosen.size_quote) if chosen and chosen.size_quote else None,
            size_fraction=chosen.size_fraction if chosen else None,
            quantity=Decimal(chosen.quantity) if chosen and chosen.quantity else None,
            execute_requested=execute,
            executed=False,
            client_order_id=cid,
            order_id=None,
            order_status="PENDING" if will_submit else None,
            halted=halted,
            votes=votes,
            ignored=ignored,
            edges=policy.edges,
            candidates=candidates,
            risk_checks=risk_checks,
            portfolio=portfolio_summary(
                portfolio.mode,
                portfolio.epoch,
                book,
                (portfolio.realised_pnl, portfolio.unrealised_pnl),
                portfolio.stale,
            ),
            daily_loss=daily.to_dict(),
            costs=self.costs.to_dict(),
            weighting=weighting_summary(),
            reason="",
        )
        decision = replace(decision, reason=reason_text(decision, chosen, candidates, execute, self.costs))
        try:
            self._insert(decision, raw_votes)
        except IntegrityError:
            # Another process stored a decision with this client order id first: answer with it.
            assert cid is not None
            replay = self._replay(cid)
            if replay is None:
                raise
            return replay
        order: OrderResult | None = None
        if will_submit:
            crash_point("decision_recorded")
            assert chosen is not None and cid is not None
            decision, order = self._submit(decision, chosen, cid)
            self._finalise(decision)
        self.tracker.snapshot(portfolio, now)
        self._log(decision)
        self._publish(decision, order)
        return DecisionOutcome(decision, order)

    def _publish(self, decision: Decision, order: OrderResult | None) -> None:
        if self.events is None:
            return
        self.events.publish("decision", decision.id, decision)
        if order is None or order.replayed:
            return
        self.events.publish("order", str(order.id), order)
        if order.filled:
            try:
                portfolio = self.executor.portfolio()
            except AppError as exc:  # live: Binance did not answer; the next fill or reset publishes it
                log.warning("no portfolio event after order %s: %s", order.id, exc.message)
                return
            self.events.publish("portfolio", portfolio.mode, portfolio)

    def reset_portfolio(self) -> Portfolio:
        """Paper: a fresh account at the initial balance (live refuses); published as an event."""
        portfolio = self.executor.reset()
        if self.events is not None:
            self.events.publish("portfolio", portfolio.mode, portfolio)
        return portfolio

    def _submit(self, decision: Decision, chosen: Candidate, cid: str) -> tuple[Decision, OrderResult | None]:
        # The candle the decision saw for this symbol: its voters' latest closed candle.
        seen = [v.as_of for v in decision.votes if v.symbol == chosen.symbol]
        candle = max(seen) if seen else None
        request = (
            OrderRequest(
                chosen.symbol,
                "BUY",
                quote_amount=Decimal(chosen.size_quote or "0"),
                client_order_id=cid,
                decision_id=decision.id,
                candle_open_time=candle,
            )
            if chosen.side == "buy"
            else OrderRequest(
                chosen.symbol,
                "SELL",
                quantity=Decimal(chosen.quantity or "0"),
                client_order_id=cid,
                decision_id=decision.id,
                candle_open_time=candle,
            )
        )
        try:
            order = self.executor.submit(request)
        except AppError as exc:
            log.warning("decision %s: the order was not placed: %s", decision.id, exc.message)
            note = f" The order was not placed: {exc.message}"
            return replace(
                decision, order_status=None, order_error=exc.message, reason=decision.reason + note
            ), None
        except Exception as exc:
            # Not an answer we understand: record that, so the stored decision is not left
            # "PENDING", and let the caller see the failure.
            failed = replace(
                decision,
                order_status=None,
                order_error=f"{type(exc).__name__}: the order may not have been placed; check the trades.",
            )
            self._finalise(failed)
            self._log(failed)
            raise
        if order.replayed and order.decision_id != decision.id:
            note = (
                f" Client order id {cid} already belonged to order {order.id}"
                f" (decision {order.decision_id}); nothing new was placed."
            )
            return replace(
                decision,
                order_status=None,
                order_error="client_order_id already used",
                reason=decision.reason + note,
            ), order
        filled = order.filled
        note = (
            f" Executed as {order.mode} order {order.client_order_id}: {order.status}, "
            f"{plain(order.executed_quantity)} {order.symbol} at "
            f"{plain(order.price) if order.price else '-'}, fee {plain(order.fee)}."
            if filled
            else f" The {order.mode} order {order.client_order_id} was {order.status}"
            + (f": {order.reject_reason}" if order.reject_reason else "")
            + "."
        )
        return replace(
            decision,
            executed=filled,
            order_id=order.id,
            order_status=order.status,
            order=order.to_dict(),
            reason=decision.reason + note,
        ), order

    # --- records --------------------------------------------------------------------------------

    def _insert(self, decision: Decision, raw_votes: list[tuple[str, PredictionLike]]) -> None:
        with transaction(self.sessions) as session:
            session.add(_record(decision))
            self.tracker.record_predictions(raw_votes, decision.id, session=session)

    def _finalise(self, decision: Decision) -> None:
        with transaction(self.sessions) as session:
            session.execute(
                update(DecisionRecord)
                .where(DecisionRecord.id == decision.id)
                .values(
                    executed=decision.executed,
                    order_id=decision.order_id,
                    order_status=decision.order_status,
                    reason=decision.reason,
                    payload=decision.to_dict(),
                )
            )

    def _log(self, decision: Decision) -> None:
        log.info(
            "decision %s: %s %s%s (%d vote(s), %d ignored)",
            decision.id,
            decision.action,
            decision.symbol or "",
            " executed" if decision.executed else "",
            len(decision.votes),
            len(decision.ignored),
        )
        if self.trade_log is not None:
            try:
                self.trade_log.append_event("decision", decision.to_dict())
            except OSError:
                # The database row is the record; a full disk must not undo a decision.
                log.exception("could not append decision %s to the decision log", decision.id)

    def _replay(self, client_order_id: str) -> DecisionOutcome | None:
        with self.sessions() as session:
            row = session.scalar(
                select(DecisionRecord).where(
                    DecisionRecord.mode == self.executor.mode,
                    DecisionRecord.client_order_id == client_order_id,
                )
            )
        if row is None:
            return None
        order = get_order(self.sessions, self.executor.mode, client_order_id)
        return DecisionOutcome(Decision.from_dict(row.payload), order, replayed=True)

    def get_decision(self, decision_id: str) -> Decision:
        with self.sessions() as session:
            row = session.get(DecisionRecord, decision_id)
        if row is None:
            raise NotFound(f"No decision {decision_id!r}.", code="decision_not_found")
        return Decision.from_dict(row.payload)

    def list_decisions(
        self,
        limit: int = 50,
        offset: int = 0,
        *,
        symbol: str | None = None,
        action: str | None = None,
        newest_first: bool = True,
    ) -> tuple[list[Decision], int]:
        """Decisions of every mode (newest first unless told otherwise), optionally only those that
        chose `symbol` or `action`, and how many match."""
        conditions = []
        if symbol is not None:
            conditions.append(DecisionRecord.symbol == symbol)
        if action is not None:
            conditions.append(DecisionRecord.action == action)
        # Ties (one clock tick) break by id in the same direction, so "oldest" is exactly "newest" reversed.
        created = (
            (DecisionRecord.created_at.desc(), DecisionRecord.id.desc())
            if newest_first
            else (DecisionRecord.created_at.asc(), DecisionRecord.id.asc())
        )
        with self.sessions() as session:
            rows = session.scalars(
                select(DecisionRecord).where(*conditions).order_by(*created).limit(limit).offset(offset)
            ).all()
            total = session.scalar(select(func.count()).select_from(DecisionRecord).where(*conditions)) or 0
        return [Decision.from_dict(row.payload) for row in rows], int(total)

    # --- performance and controls ---------------------------------------------------------------

    def resolve(self) -> dict[str, Any]:
        """Resolve every prediction whose horizon has closed (see PerformanceTracker.resolve)."""
        return self.tracker.resolve().to_dict()

    def performance(self, curve_limit: int = 500) -> dict[str, Any]:
        """Per-agent record and current weight, the portfolio's pnl and equity curve, today's loss."""
        views = {v.config.symbol: v for v in self.agents.views()}
        stats = self.tracker.agent_stats()
        agents = []
        for name in sorted(set(views) | set(stats)):
            view = views.get(name)
            record = stats.get(name) or AgentStats.empty(name)
            agents.append(
                {
                    **record.to_dict(),
                    "active": view.active if view is not None else None,
                    "active_version": view.active_version if view is not None else None,
                    "stale": view.stale if view is not None else None,
                    "weight": weight_for(stats.get(name)).to_dict(),
                }
            )
        portfolio = self.executor.portfolio()
        now = datetime.fromtimestamp(self.clock() / 1000, tz=UTC)
        daily = self.daily_loss.peek(portfolio.mode, now, portfolio.equity)
        return {
            "agents": agents,
            "portfolio": self.tracker.portfolio_stats(portfolio, curve_limit).to_dict(),
            "daily_loss": daily.to_dict() if daily is not None else None,
            "weighting": weighting_summary(),
        }

    def resume_entries(self) -> DailyLossState:
        """Manual resume after a daily-loss breach: entries allowed again today, limit re-armed."""
        portfolio = self.executor.portfolio()
        now = datetime.fromtimestamp(self.clock() / 1000, tz=UTC)
        state = self.daily_loss.resume(portfolio, now)
        log.warning("daily loss limit manually resumed; re-armed from equity %s", portfolio.equity)
        return state


def make_mother_ai(
    settings: Settings,
    sessions: sessionmaker[Session],
    market: MarketData,
    agents: AgentSource,
    *,
    clock: Callable[[], int],
    trade_log: TradeLog | None = None,
    kill_switch: KillSwitch | None = None,
    executor: Executor | None = None,
    strategies: StrategyStore | None = None,
    locks: WriteLocks | None = None,
    events: EventLog | None = None,
) -> MotherAI:
    """The Mother AI with the executor for TRADING_MODE (make_executor) and a tracker on `market`;
    the one place that picks the groups of settings the mode's decisions are judged by."""
    locks = locks or WriteLocks()
    kill_switch = kill_switch or KillSwitch(sessions, locks, events, clock=clock)
    executor = executor or make_executor(
        settings, sessions, market, trade_log=trade_log, kill_switch=kill_switch, locks=locks, clock=clock
    )
    live = executor.mode == "live"
    costs = cost_model_for(settings.trading if live else settings.paper)
    limits = limits_for(settings.risk, settings.trading.max_order_notional if live else None)
    tracker = PerformanceTracker(sessions, market, round_trip_cost=costs.round_trip, clock=clock)
    return MotherAI(
        sessions,
        market,
        agents,
        executor,
        tracker,
        limits=limits,
        costs=costs,
        clock=clock,
        include_strategies=settings.trading.include_strategies,
        kill_switch=kill_switch,
        trade_log=trade_log,
        strategies=strategies,
        locks=locks,
        events=events,
    )


# --- helpers --------------------------------------------------------------------------------------


def _normalise_symbols(symbols: Sequence[str] | None) -> list[str] | None:
    if symbols is None:
        return None
    if isinstance(symbols, str):
        symbols = [symbols]
    cleaned: list[str] = []
    for symbol in symbols:
        value = symbol.strip().upper() if isinstance(symbol, str) else ""
        if not is_symbol(value):
            raise InvalidInput(
                f"symbols: {str(symbol)[:30]!r} is not a symbol (5-20 capital letters or digits).",
                details={"field": "symbols"},
            )
        cleaned.append(value)
    if not cleaned:
        raise InvalidInput(
            "symbols must not be empty; omit it to use every agent.", details={"field": "symbols"}
        )
    return sorted(set(cleaned))


def _kind(voter: str) -> VoterKind:
    return "strategy" if voter.startswith("strategy:") else "agent"


def _record(decision: Decision) -> DecisionRecord:
    return DecisionRecord(
        id=decision.id,
        created_at=decision.created_at,
        mode=decision.mode,
        symbols=list(decision.symbols),
        action=decision.action,
        symbol=decision.symbol,
        size_quote=decision.size_quote,
        size_fraction=decision.size_fraction,
        executed=decision.executed,
        client_order_id=decision.client_order_id,
        order_id=decision.order_id,
        order_status=decision.order_status,
        reason=decision.reason,
        payload=decision.to_dict(),
    )
