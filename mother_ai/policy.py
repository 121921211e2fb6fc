"""The decision policy as pure functions of (votes, portfolio book, limits, costs, daily-loss state, mode):
each symbol's combined view and edge, the exit and entry candidates with every risk check, and the action.

Combined view per symbol s (voters i of s; a "no edge" null voter with weight W0 = 0.1 always takes part)
    p_s = ½ + Σ w_i·(p_i − ½) / (W0 + Σ w_i)        r_s = Σ w_i·r_i / (W0 + Σ w_i)
    confidence_s = |2·p_s − 1|                        edge_s = r_s − round_trip_cost
    round_trip_cost = 2·(fee + slippage) from the mode's cost model (``mother_ai.fills.CostModel``): a
    fee and slippage on the way in and again on the way out. So a lone new voter's view counts at 2/3,
    a calibrated proven one at about 0.9, and one without skill not at all.

Action (one per decision; ties broken by symbol name)
    1. Exit: a held symbol whose r_s < −(fee + slippage) (holding is expected to lose more than
       leaving costs) is sold whole, spot long-only; the lowest r_s first. Exits skip the entry
       risk checks: they only reduce risk.
    2. Entry: symbols with edge_s > 0, best first; buy the first that passes every risk check.
    3. Otherwise hold.
    A held symbol without a vote (its voter stale, failing or not asked about) is left alone.

Sizing and risk checks (entries)
    size = equity · max_position_fraction · confidence_s, capped by the room left under the position
    limit, the total-exposure limit and the cash (fee included), and in live mode by
    LIVE_MAX_ORDER_NOTIONAL, rounded down to 8 decimals. Checks, each recorded with its numbers: symbol
    tradable, min confidence, daily loss limit, max open positions (adding to a held symbol opens
    none), max position fraction, max total exposure, cash, and the symbol's minimum notional.
    Positions worth less than their minimum notional are dust: not open and not sellable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any, Literal

from mother_ai.daily_loss import DailyLossState
from mother_ai.fills import CostModel
from mother_ai.orders import Portfolio, PositionView, plain
from mother_ai.votes import Vote
from mother_ai.weighting import NULL_WEIGHT
from utils.exchange import SymbolFilters
from utils.settings import RiskSettings

Action = Literal["buy", "sell", "hold"]
AMOUNT_STEP = Decimal("0.00000001")


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """The entry limits (RISK_* settings, or a replay's overrides); `max_order_notional` is live only."""

    max_position_fraction: float = 0.25
    max_total_exposure: float = 0.75
    max_open_positions: int = 3
    min_confidence: float = 0.1
    daily_loss_limit: float = 0.03
    max_order_notional: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_position_fraction": self.max_position_fraction,
            "max_total_exposure": self.max_total_exposure,
            "max_open_positions": self.max_open_positions,
            "min_confidence": self.min_confidence,
            "daily_loss_limit": self.daily_loss_limit,
            "max_order_notional": self.max_order_notional,
        }


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
class Book:
    """The portfolio as the risk checks see it."""

    equity: Decimal
    cash: Decimal
    quote_asset: str
    positions: dict[str, PositionView]  # open (sellable) positions only
    exposure: Decimal
    filters: Mapping[str, SymbolFilters | None]

    def held_value(self, symbol: str) -> Decimal:
        position = self.positions.get(symbol)
        return position.market_value if position is not None else Decimal(0)

    def fraction(self, amount: Decimal) -> float:
        return float(amount / self.equity) if self.equity > 0 else 0.0


@dataclass(frozen=True, slots=True)
class PolicyResult:
    edges: list[SymbolEdge]
    candidates: list[Candidate]
    chosen: Candidate | None

    @property
    def action(self) -> Action:
        return self.chosen.side if self.chosen is not None else "hold"

    def shown_checks(self) -> list[RiskCheck]:
        """The checks a decision reports: the chosen candidate's, else the first refused one's."""
        shown = self.chosen or (self.candidates[0] if self.candidates else None)
        return list(shown.checks) if shown is not None else []


def combine(votes: Sequence[Vote]) -> tuple[float, float, float]:
    """(prob_up, expected_return, total weight) of a symbol's votes, shrunk by the null voter."""
    total = sum(v.weight.value for v in votes)
    denominator = NULL_WEIGHT + total
    prob_up = 0.5 + sum(v.weight.value * (v.prob_up - 0.5) for v in votes) / denominator
    expected = sum(v.weight.value * v.expected_return for v in votes) / denominator
    return prob_up, expected, total


def book_of(portfolio: Portfolio, filters: Mapping[str, SymbolFilters | None]) -> Book:
    """The risk checks' view of `portfolio`; positions below their symbol's minimums are dust."""
    positions: dict[str, PositionView] = {}
    for position in portfolio.positions:
        if position.quantity <= 0:
            continue
        rules = filters.get(position.symbol)
        if rules is not None and (
            position.quantity < Decimal(rules.min_qty) or position.market_value < Decimal(rules.min_notional)
        ):
            continue  # dust: too small to sell, so neither open nor an exit candidate
        positions[position.symbol] = position
    return Book(
        equity=portfolio.equity,
        cash=portfolio.balances.get(portfolio.quote_asset, Decimal(0)),
        quote_asset=portfolio.quote_asset,
        positions=positions,
        exposure=sum((p.market_value for p in positions.values()), Decimal(0)),
        filters=filters,
    )


def edge_of(symbol: str, votes: Sequence[Vote], book: Book, costs: CostModel) -> SymbolEdge:
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
        round_trip_cost=costs.round_trip,
        edge=expected - costs.round_trip,
        held_quantity=plain(position.quantity if position else Decimal(0)),
        held_value=plain(held_value),
        held_fraction=book.fraction(held_value),
    )


def decide_action(
    votes: Sequence[Vote], book: Book, limits: RiskLimits, costs: CostModel, daily: DailyLossState
) -> PolicyResult:
    """Edges for every voted symbol, then the exit or the best entry that passes every check."""
    voted = sorted({v.symbol for v in votes})
    edges = [edge_of(symbol, [v for v in votes if v.symbol == symbol], book, costs) for symbol in voted]
    candidates: list[Candidate] = []
    chosen: Candidate | None = None
    exits = sorted(
        (e for e in edges if e.symbol in book.positions and e.expected_return < -costs.exit),
        key=lambda e: (e.expected_return, e.symbol),
    )
    if exits:
        chosen = sell_candidate(exits[0], book, costs)
        candidates.append(chosen)
    else:
        for edge in sorted((e for e in edges if e.edge > 0), key=lambda e: (-e.edge, e.symbol)):
            candidate = buy_candidate(edge, book, limits, costs, daily)
            candidates.append(candidate)
            if candidate.passed:
                chosen = candidate
                break
    return PolicyResult(edges, candidates, chosen)


def kill_switch_check(halted: bool) -> RiskCheck:
    return RiskCheck(
        "kill_switch",
        not halted,
        "halted" if halted else "running",
        "running",
        "Trading is halted: nothing is submitted until it is resumed."
        if halted
        else "Trading is not halted.",
    )


def sell_candidate(edge: SymbolEdge, book: Book, costs: CostModel) -> Candidate:
    position = book.positions[edge.symbol]
    check = RiskCheck(
        "exit_view",
        True,
        edge.expected_return,
        -costs.exit,
        f"The combined expected return {edge.expected_return:+.4%} is below minus the exit cost "
        f"({-costs.exit:+.4%}): holding is expected to lose more than selling costs. Exits skip "
        "the entry limits.",
    )
    return Candidate(
        symbol=edge.symbol,
        side="sell",
        score=-edge.expected_return - costs.exit,
        size_quote=plain(position.market_value),
        size_fraction=book.fraction(position.market_value),
        quantity=plain(position.quantity),
        checks=[check],
        passed=True,
    )


def buy_candidate(
    edge: SymbolEdge, book: Book, limits: RiskLimits, costs: CostModel, daily: DailyLossState
) -> Candidate:
    rules = book.filters.get(edge.symbol)
    min_notional = Decimal(rules.min_notional) if rules is not None else Decimal(0)
    equity = max(book.equity, Decimal(0))
    held = edge.symbol in book.positions
    held_value = book.held_value(edge.symbol)
    position_room = max(Decimal(0), equity * _dec(limits.max_position_fraction) - held_value)
    exposure_room = max(Decimal(0), equity * _dec(limits.max_total_exposure) - book.exposure)
    cash_room = max(Decimal(0), book.cash / (1 + _dec(costs.fee_rate)))
    # Confidence to 6 decimals: float noise (0.39999999...) must not show in an order size.
    target = equity * _dec(limits.max_position_fraction) * _dec(round(edge.confidence, 6))
    caps = [target, position_room, exposure_room, cash_room]
    if limits.max_order_notional is not None:  # a live entry above the cap would only be refused
        caps.append(_dec(limits.max_order_notional))
    size = min(caps).quantize(AMOUNT_STEP, ROUND_DOWN)
    open_count = len(book.positions)
    checks = [
        _tradable_check(edge.symbol, rules),
        _confidence_check(edge.confidence, limits.min_confidence),
        _daily_check(daily),
        RiskCheck(
            "max_open_positions",
            held or open_count < limits.max_open_positions,
            open_count,
            limits.max_open_positions,
            f"{open_count} open position(s) (maximum {limits.max_open_positions})"
            + (f"; {edge.symbol} is already held, so adding opens none." if held else "."),
        ),
        _room_check(
            book,
            "max_position_fraction",
            position_room,
            held_value,
            limits.max_position_fraction,
            edge.symbol,
            min_notional,
        ),
        _room_check(
            book,
            "max_total_exposure",
            exposure_room,
            book.exposure,
            limits.max_total_exposure,
            "All open positions together",
            min_notional,
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
            f"Size {plain(size)} {book.quote_asset} = equity × {limits.max_position_fraction} × "
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


def _tradable_check(symbol: str, rules: SymbolFilters | None) -> RiskCheck:
    return RiskCheck(
        "symbol_tradable",
        rules is not None and rules.status == "TRADING",
        rules.status if rules is not None else None,
        "TRADING",
        f"{symbol} is {rules.status} on the exchange."
        if rules is not None
        else f"{symbol} is not a known symbol.",
    )


def _confidence_check(confidence: float, minimum: float) -> RiskCheck:
    return RiskCheck(
        "min_confidence",
        confidence >= minimum,
        confidence,
        minimum,
        f"Combined confidence {confidence:.3f} (minimum {minimum}).",
    )


def _daily_check(daily: DailyLossState) -> RiskCheck:
    since = "the manual resume" if daily.resumed_at else "the UTC day began"
    tail = "; entries are blocked until the next UTC day or a manual resume." if daily.breached else "."
    return RiskCheck(
        "daily_loss_limit",
        not daily.breached,
        daily.loss_fraction,
        daily.limit,
        f"Down {daily.loss_fraction:.2%} since {since} (limit {daily.limit:.2%}){tail}",
    )


def _room_check(
    book: Book, name: str, amount: Decimal, used: Decimal, limit: float, what: str, min_notional: Decimal
) -> RiskCheck:
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


def _dec(value: float) -> Decimal:
    # str() gives a float's shortest decimal form (0.25, not 0.2500000000000000138...).
    return Decimal(str(value))


def limits_for(risk: RiskSettings, max_order_notional: float | None = None) -> RiskLimits:
    """The RISK_* limits; live entries are also capped by LIVE_MAX_ORDER_NOTIONAL (`max_order_notional`)."""
    return RiskLimits(**risk.model_dump(), max_order_notional=max_order_notional)
