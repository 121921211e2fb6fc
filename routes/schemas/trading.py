"""Orders, positions, the portfolio, the kill switch and the day's loss state, as a client reads them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from mother_ai.orders import HaltState, OrderResult, Portfolio
from routes.schemas.values import DecimalStr, EpochMs

Mode = Literal["paper", "live"]
Side = Literal["BUY", "SELL"]
# Ours (PENDING: decided, not yet answered; UNKNOWN: placement unanswered) and Binance's order statuses
# as a live order's answer and reconciliation store them.
OrderStatus = Literal[
    "PENDING",
    "UNKNOWN",
    "NEW",
    "PARTIALLY_FILLED",
    "FILLED",
    "CANCELED",
    "PENDING_CANCEL",
    "REJECTED",
    "EXPIRED",
    "EXPIRED_IN_MATCH",
]


class OrderOut(BaseModel):
    """One order of the paper or live account."""

    id: int
    mode: Mode
    client_order_id: str
    symbol: str = Field(examples=["BTCUSDT"])
    side: Side
    type: Literal["MARKET"]
    status: OrderStatus
    requested_quantity: DecimalStr | None
    requested_quote_amount: DecimalStr | None
    executed_quantity: DecimalStr
    price: DecimalStr | None = Field(description="Average fill price.")
    quote_quantity: DecimalStr = Field(description="Quote spent (buys) or received (sells), fee excluded.")
    fee: DecimalStr
    fee_asset: str | None
    realised_pnl: DecimalStr
    reference_price: DecimalStr | None = Field(description="The price the order was sized against.")
    price_source: str | None
    reject_code: int | None
    reject_reason: str | None
    exchange_order_id: str | None
    decision_id: str | None
    candle_open_time: EpochMs | None = Field(
        description="Open time of the last closed candle the decision behind this order saw (for chart "
        "markers); null for orders not placed by a decision."
    )
    epoch: int = Field(description="Paper account generation; a reset starts a new one.")
    created_at: EpochMs
    updated_at: EpochMs
    replayed: bool = Field(description="True when a retry with a known client_order_id returned this order.")


class OrderList(BaseModel):
    mode: Mode
    total: int
    limit: int
    offset: int
    orders: list[OrderOut]


class PositionOut(BaseModel):
    symbol: str
    base_asset: str
    quote_asset: str
    quantity: DecimalStr
    avg_entry_price: DecimalStr = Field(description="Cost basis / quantity: break-even incl. buy fees.")
    cost_basis: DecimalStr
    realised_pnl: DecimalStr
    mark_price: DecimalStr | None
    market_value: DecimalStr
    unrealised_pnl: DecimalStr
    price_source: str | None
    stale: bool = Field(description="True when no current price was available (valued at cost).")


class BalanceOut(BaseModel):
    asset: str
    amount: DecimalStr


class PortfolioOut(BaseModel):
    mode: Mode
    quote_asset: str
    balances: list[BalanceOut]
    positions: list[PositionOut] = Field(description="Open and closed positions (closed ones keep pnl).")
    equity: DecimalStr
    realised_pnl: DecimalStr
    unrealised_pnl: DecimalStr
    initial_balance: DecimalStr | None
    epoch: int
    halted: bool
    stale: bool
    unpriced_assets: list[str]
    as_of: EpochMs


class DailyLossOut(BaseModel):
    """The UTC day's loss against its baseline, and whether entries are halted for the day."""

    mode: Literal["paper", "live", "replay"]
    day: str = Field(description="The UTC day, YYYY-MM-DD.", examples=["2025-01-03"])
    limit: float
    start_equity: DecimalStr
    baseline_equity: DecimalStr = Field(description="Start of day, or the equity at a manual resume.")
    equity: DecimalStr
    loss_fraction: float = Field(description="Of the baseline; negative when up on the day.")
    breached: bool
    breached_at: EpochMs | None
    resumed_at: EpochMs | None


class HaltOut(BaseModel):
    halted: bool
    reason: str
    changed_at: EpochMs | None
    daily_loss: DailyLossOut | None = None


def order_out(order: OrderResult) -> OrderOut:
    return OrderOut.model_validate(order, from_attributes=True)


def portfolio_out(portfolio: Portfolio) -> PortfolioOut:
    values: dict[str, Any] = portfolio.to_dict()
    values["balances"] = [BalanceOut(asset=a, amount=v) for a, v in sorted(values["balances"].items())]
    return PortfolioOut.model_validate(values)


def halt_out(state: HaltState, daily_loss: dict[str, Any] | None = None) -> HaltOut:
    return HaltOut.model_validate(
        {
            "halted": state.halted,
            "reason": state.reason,
            "changed_at": state.changed_at,
            "daily_loss": daily_loss,
        }
    )
