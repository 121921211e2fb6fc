"""The fill model shared by paper trading and the replay: prices on the exchange's grid, slippage, fees,
the symbol's LOT_SIZE / PRICE_FILTER / NOTIONAL filters, the one cost model behind every edge, and how a fill
moves a long position's quantity, cost basis and realised pnl.

Everything here is pure (no database, clock or network), so a paper order and a replayed order with the
same reference price, filters and costs fill identically.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_UP, Decimal
from typing import Any, Protocol

from utils.exchange import SymbolFilters
from utils.settings import PaperSettings, TradingSettings

ASSET_STEP = Decimal("0.00000001")  # Binance keeps 8 decimals per asset

# Binance's codes and words, so a paper rejection reads exactly like a live one.
CODE_FILTER_FAILURE = -1013
CODE_ORDER_REJECTED = -2010
CODE_INVALID_SYMBOL = -1121
MSG_INSUFFICIENT_BALANCE = "Account has insufficient balance for requested action."
MSG_INVALID_SYMBOL = "Invalid symbol."
MSG_MARKET_CLOSED = "Market is closed."
MSG_DUPLICATE_ORDER = "Duplicate order sent."


@dataclass(frozen=True, slots=True)
class CostModel:
    """What one trade costs, as fractions of its notional: the fee per side and the slippage per side.

    Edges (``mother_ai.policy``) and predictions' follow-pnl (``mother_ai.performance_tracker``) use
    ``round_trip`` and ``exit``; fills use ``fee_rate`` and ``slippage_bps``. Paper trading and the replay
    take PAPER_FEE_RATE / PAPER_SLIPPAGE_BPS (or a replay's own overrides); live trading takes
    LIVE_FEE_RATE / LIVE_SLIPPAGE_BPS, its real costs, never the paper ones."""

    fee_rate: float
    slippage_bps: float

    @property
    def slippage(self) -> float:
        return self.slippage_bps / 10_000

    @property
    def exit(self) -> float:
        """Leaving a position: a fee and slippage once."""
        return self.fee_rate + self.slippage

    @property
    def round_trip(self) -> float:
        """A fee and slippage on the way in and again on the way out."""
        return 2 * self.exit

    @property
    def fee_decimal(self) -> Decimal:
        # str() gives a float's shortest decimal form (0.001, not 0.00100000000000000002...).
        return Decimal(str(self.fee_rate))

    @property
    def slippage_bps_decimal(self) -> Decimal:
        return Decimal(str(self.slippage_bps))

    def to_dict(self) -> dict[str, float]:
        return {
            "fee_rate": self.fee_rate,
            "slippage": self.slippage,
            "round_trip_cost": self.round_trip,
            "exit_cost": self.exit,
        }


@dataclass(frozen=True, slots=True)
class Fill:
    price: Decimal
    quantity: Decimal
    notional: Decimal
    fee: Decimal


@dataclass(frozen=True, slots=True)
class Rejection:
    code: int | None
    reason: str


# --- filters, rounding and the paper fill (pure) --------------------------------------------------


def floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    """`value` rounded down to a whole number of steps (a zero step means no rounding)."""
    if step <= 0:
        return value
    return (value / step).to_integral_value(rounding=ROUND_FLOOR) * step


def round_to_tick(price: Decimal, tick: Decimal, side: str) -> Decimal:
    """`price` on the tick grid, rounded against the trader: up for a buy, down for a sell."""
    if tick <= 0:
        return price
    rounding = ROUND_CEILING if side == "BUY" else ROUND_FLOOR
    return (price / tick).to_integral_value(rounding=rounding) * tick


def plan_paper_fill(
    side: str,
    quantity: Decimal | None,
    quote_amount: Decimal | None,
    reference_price: Decimal | None,
    filters: SymbolFilters | None,
    slippage_bps: Decimal,
    fee_rate: Decimal,
) -> Fill | Rejection:
    """The fill a MARKET order gets, or the rejection Binance would give, in Binance's order of
    checks (symbol, PRICE_FILTER, LOT_SIZE, NOTIONAL). Balances are checked by the caller."""
    if filters is None:
        return Rejection(CODE_INVALID_SYMBOL, MSG_INVALID_SYMBOL)
    if filters.status != "TRADING" or reference_price is None:
        return Rejection(CODE_ORDER_REJECTED, MSG_MARKET_CLOSED)
    tick, step = Decimal(filters.tick_size), Decimal(filters.step_size)
    min_qty, max_qty = Decimal(filters.min_qty), Decimal(filters.max_qty)
    slip = slippage_bps / Decimal(10_000)
    moved = reference_price * (1 + slip) if side == "BUY" else reference_price * (1 - slip)
    price = round_to_tick(moved, tick, side)
    if price <= 0:
        return Rejection(CODE_FILTER_FAILURE, "Filter failure: PRICE_FILTER")
    raw = quantity if quantity is not None else (quote_amount or Decimal(0)) / price
    qty = floor_to_step(raw, step)
    if qty <= 0 or qty < min_qty or (max_qty > 0 and qty > max_qty):
        return Rejection(CODE_FILTER_FAILURE, "Filter failure: LOT_SIZE")
    notional = price * qty
    if notional < Decimal(filters.min_notional):
        return Rejection(CODE_FILTER_FAILURE, "Filter failure: NOTIONAL")
    # Fees are charged to 8 decimals, rounded up: the exchange never undercharges.
    fee = (notional * fee_rate).quantize(ASSET_STEP, rounding=ROUND_UP)
    return Fill(price, qty, notional, fee)


class PositionLike(Protocol):
    """A long position's running totals: a database row (``TradingPosition``) or the replay's own."""

    quantity: Decimal
    cost_basis: Decimal
    avg_entry_price: Decimal
    realised_pnl: Decimal
    updated_at: Any  # datetime; a row's column and a dataclass field differ in their declared types


def apply_fill_to_position(
    position: PositionLike,
    side: str,
    quantity: Decimal,
    notional: Decimal,
    fee_quote: Decimal,
    fee_base: Decimal,
    now: datetime,
) -> Decimal:
    """Update a long position for one fill; returns the pnl this fill realised.

    The cost basis includes buy fees; a sell removes the sold share of it (all of it when the
    position closes, so nothing is left over from rounding) and realises proceeds net of fees."""
    realised = Decimal(0)
    if side == "BUY":
        position.quantity += quantity - fee_base
        position.cost_basis += notional + fee_quote
    else:
        sold = min(quantity + fee_base, position.quantity)
        if sold >= position.quantity:
            removed = position.cost_basis
        else:
            removed = (position.cost_basis * sold / position.quantity).quantize(ASSET_STEP)
        realised = notional - fee_quote - removed
        position.quantity -= sold
        position.cost_basis -= removed
        position.realised_pnl += realised
    position.avg_entry_price = (
        (position.cost_basis / position.quantity).quantize(ASSET_STEP)
        if position.quantity > 0
        else Decimal(0)
    )
    position.updated_at = now
    return realised


def cost_model_for(account: TradingSettings | PaperSettings) -> CostModel:
    """The costs of one account: live trading's own fee and slippage (LIVE_*), or the paper account's."""
    return CostModel(float(account.fee_rate), float(account.slippage_bps))
