"""The Mother AI: collects agents' predictions, weighs them by tracked skill, picks one action across
symbols within the risk limits, executes it if asked, and records every decision with its provenance.

Voters
    Every active agent with a trained, non-stale model votes with its latest ``Prediction``;
    inactive, untrained and stale agents, and agents whose prediction failed, are listed in the
    decision as ignored, with the reason. If none of the agents asked about has a trained model,
    ``decide`` raises Conflict ``no_trained_agents`` naming the agents to train. Saved strategies
    do not vote yet: their signals are entry/exit booleans with no probability or expected return,
    so there is nothing to weigh or to score; MOTHER_AI_INCLUDE_STRATEGIES only records that.

Weights (per voter; statistics from ``mother_ai.performance_tracker``)
    w = n/(n+K) · skill + K/(n+K) · PRIOR            K = 20, PRIOR = 0.2
    skill = clip(λ, 0, 1),   λ = Σ d·(y − ½) / Σ d²,   d = prob_up − ½,   y = 1 if the realised
    return over the horizon was > 0 else 0, over the agent's distinct resolved predictions with
    d ≠ 0 (the last SKILL_WINDOW); n is how many there are.
    λ is the calibration slope: the factor that, shrinking the agent's distance from a coin flip
    (p' = ½ + λ·d), minimises the Brier score of its past predictions. 1 means its probabilities
    were right as stated, 0.5 that it was twice as confident as it should have been, ≤ 0 that it
    did no better than a coin flip. (The Brier skill score itself is about 0.01 even for a
    calibrated market forecaster, so as a weight it would rank proven agents below new ones.)
    A new agent (n = 0) gets w = PRIOR: small but positive, so it can trade modestly while its
    predictions are recorded and resolved; with each resolution its weight moves toward its skill.

Combined view per symbol s (voters i of s; a "no edge" null voter with weight W0 = 0.1 always takes part)
    p_s = ½ + Σ w_i·(p_i − ½) / (W0 + Σ w_i)        r_s = Σ w_i·r_i / (W0 + Σ w_i)
    confidence_s = |2·p_s − 1|                        edge_s = r_s − round_trip_cost
    round_trip_cost = 2·(PAPER_FEE_RATE + PAPER_SLIPPAGE_BPS/10⁴): a fee and slippage on the way in
    and again on the way out. So a lone new agent's view counts at 2/3, a calibrated proven one at
    about 0.9, and one without skill not at all.

Action (one per decision; ties broken by symbol name)
    1. Exit: a held symbol whose r_s < −(fee + slippage) (holding is expected to lose more than
       leaving costs) is sold whole, spot long-only; the lowest r_s first. Exits skip the entry
       risk checks: they only reduce risk.
    2. Entry: symbols with edge_s > 0, best first; buy the first that passes every risk check.
    3. Otherwise hold.
    A held symbol without a vote (its agent stale, failing or not asked about) is left alone.

Sizing and risk checks (entries)
    size = equity · RISK_MAX_POSITION_FRACTION · confidence_s, capped by the room left under the
    position limit, the total-exposure limit and the cash (fee included), rounded down to 8
    decimals. Checks, each recorded with its numbers: symbol tradable, min confidence, daily loss
    limit, max open positions (adding to a held symbol opens none), max position fraction, max
    total exposure, cash, and the symbol's minimum notional. Positions worth less than their
    minimum notional are dust: not open and not sellable.
    Daily loss: the equity at the first decision of a UTC day (``risk_days``) is that day's start;
    when equity falls by RISK_DAILY_LOSS_LIMIT of it the breach latches and blocks entries until
    the next UTC day or ``resume_entries()``, which re-arms the limit from the equity at resume.
    Kill switch: while halted the decision is still made and recorded, but nothing is submitted.

Determinism: no randomness besides the decision id; voters, symbols and candidates are sorted; the
time comes from the injected clock. The same inputs give the same payload but for id, time and a
generated client order id.

Concurrency: ``decide(execute=True)`` calls of one process are serialised (a lock per database)
from reading the portfolio to recording the order, so each sizes against the portfolio after the
previous fill and the limits hold under concurrency; the executor itself guarantees one fill per
client order id and never spends more than the balance. A decision is stored before its order is
submitted, under UNIQUE (mode, client_order_id): retrying with the same client order id returns
the first decision and its order. Run one deciding process per database.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any, Literal, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from agents.generic_agent import Prediction
from backtester.market_data import MarketData
from db.models import DecisionRecord, RiskDay
from db.storage import process_lock, transaction
from mother_ai.performance_tracker import AgentStats, PerformanceTracker
from mother_ai.trade_executer import (
    CLIENT_ORDER_ID_PATTERN,
    Executor,
    KillSwitch,
    OrderRequest,
    OrderResult,
    Portfolio,
    PositionView,
    get_order,
    jsonable,
    make_executor,
    plain,
)
from mother_ai.trade_log import TradeLog
from utils.errors import AppError, Conflict, InvalidInput, NotFound
from utils.exchange import SymbolFilters
from utils.settings import Settings
from utils.symbols import is_symbol

log = logging.getLogger(__name__)

Action = Literal["buy", "sell", "hold"]

PRIOR_WEIGHT = 0.2
SHRINK_K = 20
NULL_WEIGHT = 0.1
AMOUNT_STEP = Decimal("0.00000001")
TRAIN_ENDPOINT = "POST /api/agents/{symbol}/train"


# --- what the Mother AI needs from the agents ------------------------------------------------------


class AgentConfigLike(Protocol):
    @property
    def symbol(self) -> str: ...


class AgentViewLike(Protocol):
    """What `agents.service.AgentView` offers."""

    @property
    def config(self) -> AgentConfigLike: ...
    @property
    def active(self) -> bool: ...
    @property
    def active_version(self) -> str | None: ...
    @property
    def stale(self) -> bool: ...
    @property
    def stale_reason(self) -> str | None: ...


class AgentSource(Protocol):
    """The predictions provider: `agents.service.AgentService`, or anything shaped like it."""

    def views(self) -> Sequence[AgentViewLike]: ...

    def predict(self, symbol: str) -> Prediction: ...


# --- the decision ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Weight:
    value: float
    prior: float
    k: int
    resolved: int  # n: distinct resolved predictions with prob_up != 0.5 in the window
    calibration: float | None  # λ before clipping; None without resolved predictions
    skill: float  # clip(λ, 0, 1); 0 when unknown (its share is then 0 anyway)
    formula: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Vote:
    agent: str
    symbol: str
    interval: str
    horizon: int
    model_version: str
    action: str
    prob_up: float
    confidence: float
    expected_return: float
    as_of: int
    weight: Weight

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vote:
        return cls(**{**data, "weight": Weight(**data["weight"])})


@dataclass(frozen=True, slots=True)
class IgnoredVoter:
    agent: str
    code: str  # no_agent, inactive, untrained, stale, prediction_failed, strategies_unavailable
    reason: str


@dataclass(frozen=True, slots=True)
class SymbolEdge:
    """The combined view of one symbol (formulas in the module docstring); money as exact strings."""

    symbol: str
    voters: int
    total_weight: float
    prob_up: float
    confidence: float
    expected_return: float
    round_trip_cost: float
    edge: float
    held_quantity: str
    held_value: str
    held_fraction: float


@dataclass(frozen=True, slots=True)
class RiskCheck:
    name: str
    passed: bool
    value: float | int | str | None
    limit: float | int | str | None
    detail: str


@dataclass(frozen=True, slots=True)
class Candidate:
    symbol: str
    side: Literal["buy", "sell"]
    score: float  # buys: edge; sells: expected loss avoided (-r_s - exit cost)
    size_quote: str | None
    size_fraction: float | None
    quantity: str | None  # sells: the base quantity to sell
    checks: list[RiskCheck]
    passed: bool

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        return cls(**{**data, "checks": [RiskCheck(**c) for c in data["checks"]]})


@dataclass(frozen=True, slots=True)
class Decision:
    """One decision with its full provenance; `to_dict()` is what is stored and logged."""

    id: str
    created_at: datetime
    mode: str
    symbols: list[str]
    action: Action
    symbol: str | None
    size_quote: Decimal | None  # buys: quote to spend; sells: estimated value sold
    size_fraction: float | None  # of equity
    quantity: Decimal | None  # sells: base quantity
    execute_requested: bool
    executed: bool  # an order was placed and (at least partly) filled
    client_order_id: str | None
    order_id: int | None
    order_status: str | None
    halted: bool
    votes: list[Vote]
    ignored: list[IgnoredVoter]
    edges: list[SymbolEdge]
    candidates: list[Candidate]
    risk_checks: list[RiskCheck]
    portfolio: dict[str, Any]
    daily_loss: dict[str, Any]
    costs: dict[str, Any]
    weighting: dict[str, Any]
    reason: str
    order: dict[str, Any] | None = None
    order_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        values = dict(data)
        values["created_at"] = datetime.fromisoformat(data["created_at"])
        for name in ("size_quote", "quantity"):
            values[name] = None if data.get(name) is None else Decimal(data[name])
        values["votes"] = [Vote.from_dict(v) for v in data["votes"]]
        values["ignored"] = [IgnoredVoter(**i) for i in data["ignored"]]
        values["edges"] = [SymbolEdge(**e) for e in data["edges"]]
        values["candidates"] = [Candidate.from_dict(c) for c in data["candidates"]]
        values["risk_checks"] = [RiskCheck(**c) for c in data["risk_checks"]]
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass(frozen=True, slots=True)
class DecisionOutcome:
    decision: Decision
    order: OrderResult | None
    replayed: bool = False  # True: a retry with a known client order id, answered from the record

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision.to_dict(),
            "order": self.order.to_dict() if self.order is not None else None,
            "replayed": self.replayed,
        }


@dataclass(frozen=True, slots=True)
class DailyLossState:
    mode: str
    day: str  # YYYY-MM-DD (UTC)
    limit: float
    start_equity: Decimal
    baseline_equity: Decimal
    equity: Decimal
    loss_fraction: float  # of the baseline; negative when up on the day
    breached: bool
    breached_at: datetime | None
    resumed_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


# --- pure parts -----------------------------------------------------------------------------------


def weight_for(stats: AgentStats | None) -> Weight:
    """An agent's weight from its record (formula in the module docstring)."""
    n = stats.calibration_n if stats is not None else 0
    calibration = stats.calibration if stats is not None else None
    skill = min(1.0, max(0.0, calibration)) if calibration is not None else 0.0
    share = n / (n + SHRINK_K)
    value = share * skill + (1.0 - share) * PRIOR_WEIGHT
    formula = (
        f"w = n/(n+k)·skill + k/(n+k)·prior = {n}/({n}+{SHRINK_K})·{skill:.4f} "
        f"+ {SHRINK_K}/({n}+{SHRINK_K})·{PRIOR_WEIGHT} = {value:.4f}"
    )
    return Weight(value, PRIOR_WEIGHT, SHRINK_K, n, calibration, skill, formula)


def combine(votes: Sequence[Vote]) -> tuple[float, float, float]:
    """(prob_up, expected_return, total weight) of a symbol's votes, shrunk by the null voter."""
    total = sum(v.weight.value for v in votes)
    denominator = NULL_WEIGHT + total
    prob_up = 0.5 + sum(v.weight.value * (v.prob_up - 0.5) for v in votes) / denominator
    expected = sum(v.weight.value * v.expected_return for v in votes) / denominator
    return prob_up, expected, total


def client_order_id_for(decision_id: str) -> str:
    """The client order id of a decision that was given none: derived from its id (35 characters)."""
    return f"mai{decision_id}"


# --- daily loss -----------------------------------------------------------------------------------


class DailyLossGuard:
    """Start-of-day equity, the latched breach and the manual resume, per mode and UTC day."""

    def __init__(self, sessions: sessionmaker[Session], limit: float) -> None:
        self.sessions = sessions
        self.limit = float(limit)

    def evaluate(self, portfolio: Portfolio, now: datetime) -> DailyLossState:
        """Today's state; the first call of a UTC day (or of a new paper epoch) records its start."""

        def work(row: RiskDay) -> None:
            fraction = _loss_fraction(row.baseline_equity, portfolio.equity)
            if row.breached_at is None and fraction >= self.limit:
                row.breached_at = now
                log.warning(
                    "daily loss limit reached (%.2f%% of %s): no new entries until the next UTC day "
                    "or a manual resume",
                    fraction * 100,
                    row.baseline_equity,
                )

        return self._with_row(portfolio, now, work)

    def resume(self, portfolio: Portfolio, now: datetime) -> DailyLossState:
        """Lift today's breach; the limit re-arms, measured from the equity now."""

        def work(row: RiskDay) -> None:
            row.baseline_equity = portfolio.equity
            row.breached_at = None
            row.resumed_at = now

        return self._with_row(portfolio, now, work)

    def peek(self, mode: str, now: datetime, equity: Decimal) -> DailyLossState | None:
        """Today's state without recording anything; None before the day's first decision."""
        with self.sessions() as session:
            row = session.get(RiskDay, (mode, _day(now)))
            return None if row is None else self._state(row, equity)

    def _with_row(
        self, portfolio: Portfolio, now: datetime, work: Callable[[RiskDay], None]
    ) -> DailyLossState:
        for attempt in (1, 2):
            try:
                with transaction(self.sessions) as session:
                    row = session.get(RiskDay, (portfolio.mode, _day(now)), with_for_update=True)
                    if row is None:
                        row = RiskDay(mode=portfolio.mode, day=_day(now), resumed_at=None)
                        session.add(row)
                        _rebase(row, portfolio)
                    elif row.epoch != portfolio.epoch:
                        _rebase(row, portfolio)  # a paper reset: yesterday's money is gone
                    work(row)
                    row.updated_at = now
                    session.flush()
                    return self._state(row, portfolio.equity)
            except IntegrityError:
                # Another process inserted today's row first (PostgreSQL); read theirs.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _state(self, row: RiskDay, equity: Decimal) -> DailyLossState:
        return DailyLossState(
            mode=row.mode,
            day=row.day,
            limit=self.limit,
            start_equity=row.start_equity,
            baseline_equity=row.baseline_equity,
            equity=equity,
            loss_fraction=_loss_fraction(row.baseline_equity, equity),
            breached=row.breached_at is not None,
            breached_at=row.breached_at,
            resumed_at=row.resumed_at,
        )


def _rebase(row: RiskDay, portfolio: Portfolio) -> None:
    row.epoch = portfolio.epoch
    row.start_equity = row.baseline_equity = portfolio.equity
    row.breached_at = None


def _loss_fraction(baseline: Decimal, equity: Decimal) -> float:
    return float((baseline - equity) / baseline) if baseline > 0 else 0.0


def _day(now: datetime) -> str:
    return now.astimezone(UTC).date().isoformat()


# --- the Mother AI --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Book:
    """The portfolio as the risk checks see it."""

    equity: Decimal
    cash: Decimal
    quote_asset: str
    positions: dict[str, PositionView]  # open (sellable) positions only
    exposure: Decimal
    filters: dict[str, SymbolFilters | None]

    def held_value(self, symbol: str) -> Decimal:
        position = self.positions.get(symbol)
        return position.market_value if position is not None else Decimal(0)

    def fraction(self, amount: Decimal) -> float:
        return float(amount / self.equity) if self.equity > 0 else 0.0


class MotherAI:
    """Decides (and optionally trades) across agents; see the module docstring for the rules."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        market: MarketData,
        agents: AgentSource,
        executor: Executor,
        tracker: PerformanceTracker,
        *,
        clock: Callable[[], int],
        kill_switch: KillSwitch | None = None,
        trade_log: TradeLog | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.market = market
        self.agents = agents
        self.executor = executor
        self.tracker = tracker
        self.clock = clock
        self.kill_switch = kill_switch or KillSwitch(sessions)
        self.trade_log = trade_log
        self.daily_loss = DailyLossGuard(sessions, settings.risk_daily_loss_limit)
        self.fee_rate = float(settings.paper_fee_rate)
        self.slippage = float(settings.paper_slippage_bps) / 10_000
        self.exit_cost = self.fee_rate + self.slippage
        self.round_trip_cost = 2 * self.exit_cost

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
        votes = [_vote(agent, p, weight_for(stats.get(agent))) for agent, p in raw_votes]
        if not execute:
            return self._decide(asked, votes, ignored, raw_votes, False, None)
        with process_lock(self.sessions, "decide"):
            if client_order_id is not None:
                replay = self._replay(client_order_id)
                if replay is not None:
                    return replay
            return self._decide(asked, votes, ignored, raw_votes, True, client_order_id)

    def _collect(
        self, wanted: list[str] | None
    ) -> tuple[list[tuple[str, Prediction]], list[IgnoredVoter], list[str]]:
        views = sorted(self.agents.views(), key=lambda v: v.config.symbol)
        relevant = [v for v in views if wanted is None or v.config.symbol in wanted]
        known = {v.config.symbol for v in views}
        ignored = [
            IgnoredVoter(s, "no_agent", f"No agent for {s}; create one with POST /api/agents, then train it.")
            for s in (wanted or [])
            if s not in known
        ]
        if not any(v.active_version for v in relevant):
            raise _no_trained_agents(wanted, relevant)
        votes: list[tuple[str, Prediction]] = []
        for view in relevant:
            agent = view.config.symbol
            if not view.active:
                ignored.append(IgnoredVoter(agent, "inactive", "The agent is switched off."))
            elif not view.active_version:
                ignored.append(
                    IgnoredVoter(
                        agent,
                        "untrained",
                        f"No trained model yet; train it with POST /api/agents/{agent}/train.",
                    )
                )
            elif view.stale:
                ignored.append(IgnoredVoter(agent, "stale", f"Stale model: {view.stale_reason}."))
            else:
                prediction, problem = self._predict(agent)
                if problem is not None:
                    ignored.append(problem)
                elif prediction is not None:
                    votes.append((agent, prediction))
        if self.settings.mother_ai_include_strategies:
            ignored.append(
                IgnoredVoter(
                    "strategies",
                    "strategies_unavailable",
                    "Saved strategies do not vote yet: their entry/exit signals carry no probability "
                    "or expected return to weigh against the agents'; only agents voted.",
                )
            )
        asked = wanted if wanted is not None else sorted(v.config.symbol for v in relevant)
        return votes, ignored, asked

    def _predict(self, agent: str) -> tuple[Prediction | None, IgnoredVoter | None]:
        try:
            prediction = self.agents.predict(agent)
        except AppError as exc:
            return None, IgnoredVoter(agent, "prediction_failed", f"Prediction failed: {exc.message}")
        except Exception:  # a broken model must not take every other agent's vote down with it
            log.exception("prediction of agent %s failed", agent)
            return None, IgnoredVoter(
                agent, "prediction_failed", "Prediction failed unexpectedly; the server log has details."
            )
        if prediction.stale:
            return None, IgnoredVoter(agent, "stale", f"Stale prediction: {prediction.stale_reason}.")
        if prediction.data_stale:
            return None, IgnoredVoter(
                agent,
                "stale_data",
                "Binance was unreachable, so its latest candles may be behind the market.",
            )
        if self.executor.mode == "live" and prediction.data_source in ("sample", "file"):
            # Real money only follows predictions made from Binance's own candles.
            return None, IgnoredVoter(
                agent, "not_live_data", f"Its candles come from {prediction.data_source} data, not Binance."
            )
        numbers = (prediction.prob_up, prediction.expected_return, prediction.confidence)
        if not all(math.isfinite(x) for x in numbers) or not 0 <= prediction.prob_up <= 1:
            return None, IgnoredVoter(agent, "prediction_failed", "The prediction has no valid probability.")
        return prediction, None

    def _decide(
        self,
        asked: list[str],
        votes: list[Vote],
        ignored: list[IgnoredVoter],
        raw_votes: list[tuple[str, Prediction]],
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
        book = self._book(portfolio, sorted(set(voted) | {p.symbol for p in portfolio.positions}))
        edges = [self._edge(symbol, [v for v in votes if v.symbol == symbol], book) for symbol in voted]

        candidates: list[Candidate] = []
        chosen: Candidate | None = None
        exits = sorted(
            (e for e in edges if e.symbol in book.positions and e.expected_return < -self.exit_cost),
            key=lambda e: (e.expected_return, e.symbol),
        )
        if exits:
            chosen = self._sell_candidate(exits[0], book)
            candidates.append(chosen)
        else:
            for edge in sorted((e for e in edges if e.edge > 0), key=lambda e: (-e.edge, e.symbol)):
                candidate = self._buy_candidate(edge, book, daily)
                candidates.append(candidate)
                if candidate.passed:
                    chosen = candidate
                    break

        kill_check = RiskCheck(
            "kill_switch",
            not halted,
            "halted" if halted else "running",
            "running",
            "Trading is halted: nothing is submitted until it is resumed."
            if halted
            else "Trading is not halted.",
        )
        shown = chosen or (candidates[0] if candidates else None)
        risk_checks = [*(shown.checks if shown else []), kill_check]
        action: Action = chosen.side if chosen else "hold"
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
            edges=edges,
            candidates=candidates,
            risk_checks=risk_checks,
            portfolio=self._portfolio_summary(portfolio, book),
            daily_loss=daily.to_dict(),
            costs={
                "fee_rate": self.fee_rate,
                "slippage": self.slippage,
                "round_trip_cost": self.round_trip_cost,
                "exit_cost": self.exit_cost,
            },
            weighting=_weighting(),
            reason="",
        )
        decision = replace(decision, reason=self._reason(decision, chosen, candidates, execute))
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
            assert chosen is not None and cid is not None
            decision, order = self._submit(decision, chosen, cid)
            self._finalise(decision)
        self.tracker.snapshot(portfolio, now)
        self._log(decision)
        return DecisionOutcome(decision, order)

    def _book(self, portfolio: Portfolio, symbols: list[str]) -> _Book:
        filters = {s: self.market.symbol_filters(s) for s in symbols}
        positions: dict[str, PositionView] = {}
        for position in portfolio.positions:
            if position.quantity <= 0:
                continue
            rules = filters.get(position.symbol)
            if rules is not None and (
                position.quantity < Decimal(rules.min_qty)
                or position.market_value < Decimal(rules.min_notional)
            ):
                continue  # dust: too small to sell, so neither open nor an exit candidate
            positions[position.symbol] = position
        return _Book(
            equity=portfolio.equity,
            cash=portfolio.balances.get(portfolio.quote_asset, Decimal(0)),
            quote_asset=portfolio.quote_asset,
            positions=positions,
            exposure=sum((p.market_value for p in positions.values()), Decimal(0)),
            filters=filters,
        )

    def _edge(self, symbol: str, votes: list[Vote], book: _Book) -> SymbolEdge:
        prob_up, expected, total = combine(votes)
        position = book.positions.get(symbol)
        held_value = book.held_value(symbol)
        return SymbolEdge(
            symbol=symbol,
            voters=len(votes),
            total_weight=total,
            prob_up=prob_up,
            confidence=abs(2 * prob_up - 1),
            expected_return=expected,
            round_trip_cost=self.round_trip_cost,
            edge=expected - self.round_trip_cost,
            held_quantity=plain(position.quantity if position else Decimal(0)),
            held_value=plain(held_value),
            held_fraction=book.fraction(held_value),
        )

    def _sell_candidate(self, edge: SymbolEdge, book: _Book) -> Candidate:
        position = book.positions[edge.symbol]
        check = RiskCheck(
            "exit_view",
            True,
            edge.expected_return,
            -self.exit_cost,
            f"The combined expected return {edge.expected_return:+.4%} is below minus the exit cost "
            f"({-self.exit_cost:+.4%}): holding is expected to lose more than selling costs. Exits skip "
            "the entry limits.",
        )
        return Candidate(
            symbol=edge.symbol,
            side="sell",
            score=-edge.expected_return - self.exit_cost,
            size_quote=plain(position.market_value),
            size_fraction=book.fraction(position.market_value),
            quantity=plain(position.quantity),
            checks=[check],
            passed=True,
        )

    def _buy_candidate(self, edge: SymbolEdge, book: _Book, daily: DailyLossState) -> Candidate:
        s = self.settings
        rules = book.filters.get(edge.symbol)
        min_notional = Decimal(rules.min_notional) if rules is not None else Decimal(0)
        equity = max(book.equity, Decimal(0))
        held = edge.symbol in book.positions
        held_value = book.held_value(edge.symbol)
        position_room = max(Decimal(0), equity * _dec(s.risk_max_position_fraction) - held_value)
        exposure_room = max(Decimal(0), equity * _dec(s.risk_max_total_exposure) - book.exposure)
        cash_room = max(Decimal(0), book.cash / (1 + _dec(self.fee_rate)))
        # Confidence to 6 decimals: float noise (0.39999999...) must not show in an order size.
        target = equity * _dec(s.risk_max_position_fraction) * _dec(round(edge.confidence, 6))
        limits = [target, position_room, exposure_room, cash_room]
        if self.executor.mode == "live":  # a live entry above the cap would only be refused
            limits.append(_dec(s.live_max_order_notional))
        size = min(limits).quantize(AMOUNT_STEP, ROUND_DOWN)
        open_count = len(book.positions)

        def room(name: str, amount: Decimal, used: Decimal, limit: float, what: str) -> RiskCheck:
            passed = amount > 0 and amount >= min_notional
            return RiskCheck(
                name,
                passed,
                book.fraction(used),
                limit,
                f"{what}: {book.fraction(used):.2%} of equity (limit {limit:.2%}); room left "
                f"{plain(amount.quantize(AMOUNT_STEP, ROUND_DOWN))} {book.quote_asset}"
                + ("" if passed else f", below the minimum order of {plain(min_notional)}")
                + ".",
            )

        checks = [
            RiskCheck(
                "symbol_tradable",
                rules is not None and rules.status == "TRADING",
                rules.status if rules is not None else None,
                "TRADING",
                f"{edge.symbol} is "
                + (f"{rules.status} on the exchange." if rules is not None else "not a known symbol."),
            ),
            RiskCheck(
                "min_confidence",
                edge.confidence >= s.risk_min_confidence,
                edge.confidence,
                s.risk_min_confidence,
                f"Combined confidence {edge.confidence:.3f} (minimum {s.risk_min_confidence}).",
            ),
            RiskCheck(
                "daily_loss_limit",
                not daily.breached,
                daily.loss_fraction,
                daily.limit,
                (
                    f"Down {daily.loss_fraction:.2%} since "
                    f"{'the manual resume' if daily.resumed_at else 'the UTC day began'} "
                    f"(limit {daily.limit:.2%})"
                    + (
                        "; entries are blocked until the next UTC day or a manual resume."
                        if daily.breached
                        else "."
                    )
                ),
            ),
            RiskCheck(
                "max_open_positions",
                held or open_count < s.risk_max_open_positions,
                open_count,
                s.risk_max_open_positions,
                f"{open_count} open position(s) (maximum {s.risk_max_open_positions})"
                + (f"; {edge.symbol} is already held, so adding opens none." if held else "."),
            ),
            room(
                "max_position_fraction",
                position_room,
                held_value,
                s.risk_max_position_fraction,
                f"{edge.symbol}",
            ),
            room(
                "max_total_exposure",
                exposure_room,
                book.exposure,
                s.risk_max_total_exposure,
                "All open positions together",
            ),
            RiskCheck(
                "cash",
                cash_room > 0 and cash_room >= min_notional,
                plain(book.cash),
                plain(min_notional),
                f"{plain(book.cash)} {book.quote_asset} available; "
                f"{plain(cash_room.quantize(AMOUNT_STEP, ROUND_DOWN))} can be spent after the fee.",
            ),
            RiskCheck(
                "min_order_size",
                size > 0 and size >= min_notional,
                plain(size),
                plain(min_notional),
                f"Size {plain(size)} {book.quote_asset} = equity × {s.risk_max_position_fraction} × "
                f"confidence {edge.confidence:.3f}, capped by the limits and cash; the exchange's minimum "
                f"is {plain(min_notional)}.",
            ),
        ]
        return Candidate(
            symbol=edge.symbol,
            side="buy",
            score=edge.edge,
            size_quote=plain(size),
            size_fraction=book.fraction(size),
            quantity=None,
            checks=checks,
            passed=all(c.passed for c in checks),
        )

    def _submit(self, decision: Decision, chosen: Candidate, cid: str) -> tuple[Decision, OrderResult | None]:
        request = (
            OrderRequest(
                chosen.symbol,
                "BUY",
                quote_amount=Decimal(chosen.size_quote or "0"),
                client_order_id=cid,
                decision_id=decision.id,
            )
            if chosen.side == "buy"
            else OrderRequest(
                chosen.symbol,
                "SELL",
                quantity=Decimal(chosen.quantity or "0"),
                client_order_id=cid,
                decision_id=decision.id,
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

    def _insert(self, decision: Decision, raw_votes: list[tuple[str, Prediction]]) -> None:
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

    def list_decisions(self, limit: int = 50, offset: int = 0) -> tuple[list[Decision], int]:
        """Decisions of every mode, newest first, and how many there are."""
        with self.sessions() as session:
            rows = session.scalars(
                select(DecisionRecord)
                .order_by(DecisionRecord.created_at.desc(), DecisionRecord.id)
                .limit(limit)
                .offset(offset)
            ).all()
            total = session.scalar(select(func.count()).select_from(DecisionRecord)) or 0
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
            "weighting": _weighting(),
        }

    def resume_entries(self) -> DailyLossState:
        """Manual resume after a daily-loss breach: entries allowed again today, limit re-armed."""
        portfolio = self.executor.portfolio()
        now = datetime.fromtimestamp(self.clock() / 1000, tz=UTC)
        state = self.daily_loss.resume(portfolio, now)
        log.warning("daily loss limit manually resumed; re-armed from equity %s", portfolio.equity)
        return state

    # --- words ----------------------------------------------------------------------------------

    def _portfolio_summary(self, portfolio: Portfolio, book: _Book) -> dict[str, Any]:
        return {
            "mode": portfolio.mode,
            "epoch": portfolio.epoch,
            "quote_asset": portfolio.quote_asset,
            "equity": plain(portfolio.equity),
            "cash": plain(book.cash),
            "exposure": plain(book.exposure),
            "exposure_fraction": book.fraction(book.exposure),
            "open_positions": [
                {"symbol": p.symbol, "quantity": plain(p.quantity), "value": plain(p.market_value)}
                for p in book.positions.values()
            ],
            "realised_pnl": plain(portfolio.realised_pnl),
            "unrealised_pnl": plain(portfolio.unrealised_pnl),
            "stale": portfolio.stale,
        }

    def _reason(
        self, d: Decision, chosen: Candidate | None, candidates: list[Candidate], execute: bool
    ) -> str:
        parts: list[str] = []
        voters = ", ".join(f"{v.agent} (weight {v.weight.value:.2f})" for v in d.votes) or "none"
        parts.append(f"Asked about {', '.join(d.symbols) or 'no symbol'}; voters: {voters}")
        if d.ignored:
            parts[-1] += "; ignored: " + ", ".join(f"{i.agent} ({i.code})" for i in d.ignored)
        parts[-1] += "."
        cost = f"{self.round_trip_cost:.2%}"
        best = max(d.edges, key=lambda e: (e.edge, e.symbol), default=None)
        if chosen is not None and chosen.side == "sell":
            edge = next(e for e in d.edges if e.symbol == chosen.symbol)
            parts.append(
                f"The combined view of held {chosen.symbol} is negative (expected return "
                f"{edge.expected_return:+.2%} over the horizon, P(up) {edge.prob_up:.3f}), worse than the "
                f"{self.exit_cost:.2%} it costs to exit, so sell the whole position "
                f"({chosen.quantity}, about {chosen.size_quote} {d.portfolio['quote_asset']})."
            )
        elif chosen is not None:
            edge = next(e for e in d.edges if e.symbol == chosen.symbol)
            parts.append(
                f"After the {cost} round-trip cost, {chosen.symbol} had the best edge that passed every "
                f"risk check ({edge.edge:+.2%}: expected return {edge.expected_return:+.2%}, "
                f"confidence {edge.confidence:.3f}), so buy {chosen.size_quote} "
                f"{d.portfolio['quote_asset']} ({(chosen.size_fraction or 0):.2%} of equity)."
            )
            refused = [c for c in candidates if not c.passed]
            if refused:
                parts.append("Better edges were refused: " + _refusals(refused) + ".")
        elif candidates:
            refused = _refusals(candidates)
            parts.append(
                f"Positive edges after the {cost} round-trip cost were refused by risk checks: "
                f"{refused}. Holding."
            )
        elif best is not None:
            parts.append(
                f"No symbol's expected return covered the {cost} round-trip cost (best: {best.symbol} "
                f"{best.expected_return:+.2%}, edge {best.edge:+.2%}) and no held symbol's view was negative "
                "enough to sell. Holding."
            )
        else:
            parts.append("No agent could vote, so there is nothing to act on. Holding.")
        if d.action != "hold":
            if d.halted:
                parts.append("Trading is halted (kill switch), so no order is submitted.")
            elif not execute:
                parts.append("Not executed (execute=false).")
        return " ".join(parts)


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
) -> MotherAI:
    """The Mother AI with the executor for TRADING_MODE (make_executor) and a tracker on `market`."""
    kill_switch = kill_switch or KillSwitch(sessions)
    executor = executor or make_executor(
        settings, sessions, market, trade_log=trade_log, kill_switch=kill_switch
    )
    round_trip = 2 * (float(settings.paper_fee_rate) + float(settings.paper_slippage_bps) / 10_000)
    tracker = PerformanceTracker(sessions, market, round_trip_cost=round_trip, clock=clock)
    return MotherAI(
        settings,
        sessions,
        market,
        agents,
        executor,
        tracker,
        clock=clock,
        kill_switch=kill_switch,
        trade_log=trade_log,
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


def _no_trained_agents(wanted: list[str] | None, relevant: Sequence[AgentViewLike]) -> Conflict:
    untrained = sorted(v.config.symbol for v in relevant)
    missing = sorted(set(wanted or []) - set(untrained))
    steps = [f"POST /api/agents/{s}/train" for s in untrained]
    parts = ["No agent has a trained model yet, so there is nothing to decide on."]
    if steps:
        parts.append(f"Train {', '.join(untrained)} first: {'; '.join(steps)}.")
    if missing:
        parts.append(
            f"No agent exists for {', '.join(missing)}: create one with POST /api/agents, then train it "
            f"with {TRAIN_ENDPOINT}."
        )
    if not relevant and not missing:
        parts.append(f"Create an agent with POST /api/agents, then train it with {TRAIN_ENDPOINT}.")
    return Conflict(
        " ".join(parts),
        code="no_trained_agents",
        details={"untrained": untrained, "missing": missing, "endpoint": TRAIN_ENDPOINT},
    )


def _refusals(candidates: Sequence[Candidate]) -> str:
    return "; ".join(
        f"{c.symbol} (edge {c.score:+.2%}) failed "
        + ", ".join(check.name for check in c.checks if not check.passed)
        for c in candidates
    )


def _vote(agent: str, p: Prediction, weight: Weight) -> Vote:
    return Vote(
        agent=agent,
        symbol=p.symbol,
        interval=p.interval,
        horizon=p.horizon,
        model_version=p.model_version,
        action=p.action,
        prob_up=float(p.prob_up),
        confidence=float(p.confidence),
        expected_return=float(p.expected_return),
        as_of=int(p.as_of),
        weight=weight,
    )


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


def _weighting() -> dict[str, Any]:
    return {
        "formula": "w = n/(n+k)·clip(λ,0,1) + k/(n+k)·prior; "
        "λ = Σ(p−½)(y−½) / Σ(p−½)² over resolved predictions",
        "prior": PRIOR_WEIGHT,
        "k": SHRINK_K,
        "null_weight": NULL_WEIGHT,
        "combined": "p_s = ½ + Σw(p−½)/(W0+Σw); r_s = Σw·r/(W0+Σw); edge = r_s − round-trip cost",
    }


def _dec(value: float) -> Decimal:
    # str() gives a float's shortest decimal form (0.25, not 0.2500000000000000138...).
    return Decimal(str(value))


def _jsonable(value: Any) -> Any:
    return jsonable(value, plain)
