"""A decision with its full provenance (votes, ignored voters, edges, candidates, risk checks, portfolio,
daily loss, costs, weighting, reason, order): the payload the live loop stores and logs and the replay
records step by step, so both answer in the same shape."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from mother_ai.orders import OrderResult, jsonable_dict, plain
from mother_ai.policy import Action, Book, Candidate, RiskCheck, SymbolEdge
from mother_ai.votes import IgnoredVoter, Vote


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
        return jsonable_dict(self, plain)

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


def client_order_id_for(decision_id: str) -> str:
    """The client order id of a decision that was given none: derived from its id (35 characters)."""
    return f"mai{decision_id}"


def portfolio_summary(
    mode: str, epoch: int, book: Book, portfolio_pnl: tuple[Decimal, Decimal], stale: bool
) -> dict[str, Any]:
    """What a decision records of the portfolio it sized against."""
    realised, unrealised = portfolio_pnl
    return {
        "mode": mode,
        "epoch": epoch,
        "quote_asset": book.quote_asset,
        "equity": plain(book.equity),
        "cash": plain(book.cash),
        "exposure": plain(book.exposure),
        "exposure_fraction": book.fraction(book.exposure),
        "open_positions": [
            {"symbol": p.symbol, "quantity": plain(p.quantity), "value": plain(p.market_value)}
            for p in book.positions.values()
        ],
        "realised_pnl": plain(realised),
        "unrealised_pnl": plain(unrealised),
        "stale": stale,
    }
