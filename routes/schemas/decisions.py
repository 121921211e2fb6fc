"""A Mother AI decision with its provenance (votes, weights, edges, risk checks, portfolio, costs), as
the live loop answers it and as a replay records each step; and the performance report."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from routes.schemas.trading import DailyLossOut, OrderOut, OrderStatus
from routes.schemas.values import DecimalStr, EpochMs
from utils.intervals import Interval

Action = Literal["buy", "sell", "hold"]


class WeightOut(BaseModel):
    value: float
    prior: float
    k: int
    resolved: int
    calibration: float | None
    skill: float
    formula: str


class VoteOut(BaseModel):
    agent: str = Field(description="The voter: an agent's symbol, or strategy:<id>.")
    kind: Literal["agent", "strategy"]
    symbol: str
    interval: Interval
    horizon: int
    model_version: str
    action: Action
    prob_up: float
    confidence: float
    expected_return: float
    as_of: EpochMs = Field(description="Open time of the last closed candle the voter saw.")
    weight: WeightOut


class IgnoredOut(BaseModel):
    agent: str
    code: str = Field(examples=["stale"])
    reason: str


class EdgeOut(BaseModel):
    symbol: str
    voters: int
    total_weight: float
    prob_up: float
    confidence: float
    expected_return: float
    round_trip_cost: float
    edge: float
    held_quantity: DecimalStr
    held_value: DecimalStr
    held_fraction: float


class RiskCheckOut(BaseModel):
    name: str = Field(examples=["max_position_fraction"])
    passed: bool
    value: float | str | None = Field(description="What was measured (a number, or a state such as TRADING).")
    limit: float | str | None
    detail: str


class CandidateOut(BaseModel):
    symbol: str
    side: Literal["buy", "sell"]
    score: float
    size_quote: DecimalStr | None
    size_fraction: float | None
    quantity: DecimalStr | None
    checks: list[RiskCheckOut]
    passed: bool


class HeldOut(BaseModel):
    symbol: str
    quantity: DecimalStr
    value: DecimalStr


class SizedAgainstOut(BaseModel):
    """The portfolio a decision sized against."""

    mode: Literal["paper", "live", "replay"]
    epoch: int
    quote_asset: str
    equity: DecimalStr
    cash: DecimalStr
    exposure: DecimalStr
    exposure_fraction: float
    open_positions: list[HeldOut]
    realised_pnl: DecimalStr
    unrealised_pnl: DecimalStr
    stale: bool


class CostsOut(BaseModel):
    fee_rate: float
    slippage: float
    round_trip_cost: float
    exit_cost: float


class WeightingOut(BaseModel):
    formula: str
    prior: float
    k: int
    null_weight: float
    combined: str


class _DecisionCore(BaseModel):
    id: str
    created_at: EpochMs
    mode: Literal["paper", "live", "replay"]
    symbols: list[str]
    action: Action
    symbol: str | None
    size_quote: DecimalStr | None = Field(description="Buys: quote to spend; sells: estimated value sold.")
    size_fraction: float | None
    quantity: DecimalStr | None
    execute_requested: bool
    executed: bool
    client_order_id: str | None
    order_id: int | None
    order_status: OrderStatus | None
    halted: bool
    votes: list[VoteOut]
    ignored: list[IgnoredOut]
    edges: list[EdgeOut]
    candidates: list[CandidateOut]
    risk_checks: list[RiskCheckOut]
    portfolio: SizedAgainstOut
    daily_loss: DailyLossOut
    costs: CostsOut
    weighting: WeightingOut
    reason: str
    order_error: str | None = None


class DecisionOut(_DecisionCore):
    """A live decision (paper or live account)."""

    order: OrderOut | None = None


class DecideResponse(BaseModel):
    decision: DecisionOut
    order: OrderOut | None = Field(description="The order, when executed.")
    replayed: bool = Field(description="True when this client_order_id had been decided before.")


class DecisionList(BaseModel):
    total: int
    limit: int
    offset: int
    decisions: list[DecisionOut]


class ReplayOrderOut(BaseModel):
    """A replay's order: filled at the next candle's open, or rejected by the exchange's rules."""

    step: int
    symbol: str
    side: Literal["BUY", "SELL"]
    status: Literal["FILLED", "REJECTED"]
    fill_time: EpochMs = Field(description="Open time of the candle whose open filled (or refused) it.")
    reference_price: DecimalStr
    price: DecimalStr | None = None
    quantity: DecimalStr | None = None
    notional: DecimalStr | None = None
    fee: DecimalStr | None = None
    realised_pnl: DecimalStr | None = None
    reject_code: int | None = None
    reject_reason: str | None = None


class StepOut(_DecisionCore):
    """One replay step: the live decision payload, plus where it sits in the replay."""

    step: int
    time: EpochMs = Field(description="The close the step decided at.")
    reason_code: str
    order: ReplayOrderOut | None = None


# --- performance -----------------------------------------------------------------------------------


class AgentRecordOut(BaseModel):
    agent: str
    resolved: int
    unresolved: int
    directional: int
    hits: int
    hit_rate: float | None
    brier: float | None
    brier_skill: float | None
    calibration: float | None
    calibration_n: int
    follow_trades: int
    follow_pnl: float
    follow_pnl_mean: float | None
    last_resolved_as_of: EpochMs | None
    active: bool | None
    active_version: str | None
    stale: bool | None
    weight: WeightOut


class EquityPointOut(BaseModel):
    time: EpochMs
    equity: DecimalStr
    realised: DecimalStr
    unrealised: DecimalStr


class PortfolioRecordOut(BaseModel):
    mode: Literal["paper", "live"]
    epoch: int
    quote_asset: str
    equity: DecimalStr
    realised_pnl: DecimalStr
    unrealised_pnl: DecimalStr
    initial_balance: DecimalStr | None
    peak_equity: DecimalStr | None
    max_drawdown: float | None
    current_drawdown: float | None
    drawdown: list[float] = Field(description="Drawdown at each point of equity_curve (positive fraction).")
    snapshots: int
    equity_curve: list[EquityPointOut]


class ResolutionOut(BaseModel):
    resolved: int = Field(description="Predictions resolved by this call.")
    pending: int = Field(description="Predictions whose target candle has not closed yet.")
    missing: int = Field(description="Predictions whose base or target candle is not stored.")
    errors: list[str]


class PerformanceOut(BaseModel):
    agents: list[AgentRecordOut]
    portfolio: PortfolioRecordOut
    daily_loss: DailyLossOut | None
    weighting: WeightingOut
    resolution: ResolutionOut
