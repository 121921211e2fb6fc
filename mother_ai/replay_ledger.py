"""The replay's paper account: cash, base balances and long positions, filled with the paper executor's
fill model and balance rules (``mother_ai.fills``), and the order records and notes a replay step carries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from mother_ai.fills import (
    CODE_ORDER_REJECTED,
    MSG_INSUFFICIENT_BALANCE,
    CostModel,
    Fill,
    Rejection,
    apply_fill_to_position,
    plan_paper_fill,
)
from mother_ai.orders import Portfolio, plain, position_view
from mother_ai.policy import Candidate
from utils.exchange import SymbolFilters


@dataclass(slots=True)
class LedgerPosition:
    quantity: Decimal = Decimal(0)
    cost_basis: Decimal = Decimal(0)
    avg_entry_price: Decimal = Decimal(0)
    realised_pnl: Decimal = Decimal(0)
    updated_at: datetime | None = None


@dataclass(slots=True)
class Ledger:
    """The replay's paper account: the quote balance, base balances and long positions."""

    quote_asset: str
    cash: Decimal
    base: dict[str, Decimal] = field(default_factory=dict)
    positions: dict[str, LedgerPosition] = field(default_factory=dict)

    def portfolio(self, marks: Mapping[str, Decimal], now: datetime) -> Portfolio:
        views = [
            position_view(symbol, symbol, self.quote_asset, p, marks.get(symbol), "replay", False)
            for symbol, p in sorted(self.positions.items())
        ]
        equity = self.cash + sum((v.market_value for v in views if v.quantity > 0), Decimal(0))
        return Portfolio.of(
            "paper",
            self.quote_asset,
            {self.quote_asset: self.cash, **self.base},
            views,
            equity,
            initial_balance=None,
            epoch=1,
            halted=False,
            stale=False,
            as_of=now,
        )

    def fill(
        self,
        symbol: str,
        side: str,
        chosen: Candidate,
        price: Decimal,
        rules: SymbolFilters | None,
        costs: CostModel,
        now: datetime,
    ) -> tuple[Fill | Rejection, Decimal]:
        """The paper executor's fill and balance rules, on this ledger; with the pnl a sell realised."""
        quantity = Decimal(chosen.quantity) if side == "SELL" and chosen.quantity else None
        quote = Decimal(chosen.size_quote) if side == "BUY" and chosen.size_quote else None
        outcome = plan_paper_fill(
            side, quantity, quote, price, rules, costs.slippage_bps_decimal, costs.fee_decimal
        )
        if isinstance(outcome, Rejection):
            return outcome, Decimal(0)
        base = self.base.get(symbol, Decimal(0))
        short_of_cash = side == "BUY" and self.cash < outcome.notional + outcome.fee
        if short_of_cash or (side == "SELL" and base < outcome.quantity):
            return Rejection(CODE_ORDER_REJECTED, MSG_INSUFFICIENT_BALANCE), Decimal(0)
        if side == "BUY":
            self.cash -= outcome.notional + outcome.fee
            self.base[symbol] = base + outcome.quantity
        else:
            self.base[symbol] = base - outcome.quantity
            self.cash += outcome.notional - outcome.fee
        position = self.positions.setdefault(symbol, LedgerPosition())
        realised = apply_fill_to_position(
            position, side, outcome.quantity, outcome.notional, outcome.fee, Decimal(0), now
        )
        return outcome, realised


def order_record(
    step: int,
    symbol: str,
    side: str,
    fill_time: int,
    reference: Decimal,
    outcome: Fill | Rejection,
    realised: Decimal,
) -> dict[str, Any]:
    if isinstance(outcome, Rejection):
        return {
            "step": step,
            "symbol": symbol,
            "side": side,
            "status": "REJECTED",
            "fill_time": fill_time,
            "reference_price": plain(reference),
            "reject_code": outcome.code,
            "reject_reason": outcome.reason,
        }
    return {
        "step": step,
        "symbol": symbol,
        "side": side,
        "status": "FILLED",
        "fill_time": fill_time,
        "reference_price": plain(reference),
        "price": plain(outcome.price),
        "quantity": plain(outcome.quantity),
        "notional": plain(outcome.notional),
        "fee": plain(outcome.fee),
        "realised_pnl": plain(realised),
    }


def fill_note(order: dict[str, Any]) -> str:
    if order["status"] == "FILLED":
        return (
            f" Filled at the next candle's open: {order['side']} {order['quantity']} {order['symbol']} at "
            f"{order['price']} (open {order['reference_price']} moved by slippage), fee {order['fee']}."
        )
    return f" The order at the next candle's open was REJECTED: {order['reject_reason']}"
