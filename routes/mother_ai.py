"""Mother AI and trading endpoints: decide, decisions, performance, kill switch, trades, portfolio."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from mother_ai.trade_executer import list_orders
from mother_ai.trade_log import export_trades_csv
from routes.common import Ctx, error_responses, get_mother
from utils.symbols import SYMBOL_PATTERN

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/mother-ai", tags=["mother ai"])
trading = APIRouter(prefix="/api", tags=["trading"])

Mode = Literal["paper", "live"]


class DecideBody(BaseModel):
    symbols: list[Annotated[str, Field(pattern=SYMBOL_PATTERN)]] | None = Field(
        default=None, max_length=50, description="Default: every active agent's symbol."
    )
    execute: bool = Field(
        default=False, description="Place the chosen order (paper unless TRADING_MODE=live)."
    )
    client_order_id: str | None = Field(
        default=None,
        pattern=r"^[a-zA-Z0-9_-]{1,36}$",
        description="Idempotency key: the same id returns the first decision and order, never a second fill.",
    )

    model_config = {
        "json_schema_extra": {"examples": [{"symbols": ["BTCUSDT", "ETHUSDT"], "execute": False}]}
    }


class DecideResponse(BaseModel):
    decision: dict[str, Any] = Field(
        description="Votes, weights, model versions, as_of, risk checks, reason."
    )
    order: dict[str, Any] | None = Field(description="The order, when executed.")
    replayed: bool = Field(description="True when this client_order_id had been decided before.")


class DecisionList(BaseModel):
    total: int
    limit: int
    offset: int
    decisions: list[dict[str, Any]]


class HaltBody(BaseModel):
    reason: str = Field(default="manual halt", max_length=500)


class HaltOut(BaseModel):
    halted: bool
    reason: str
    changed_at: Any | None
    daily_loss: dict[str, Any] | None = None


class OrderList(BaseModel):
    mode: Mode
    total: int
    limit: int
    offset: int
    trades: list[dict[str, Any]]


class ExportOut(BaseModel):
    mode: Mode
    path: str = Field(description="The CSV file written under TRADE_EXPORT_DIR.")


Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]


@router.post(
    "/decide",
    response_model=DecideResponse,
    summary="Ask every agent, weigh, decide (and execute)",
    responses=error_responses(400, 401, 409, 422, 502, 503),
)
def decide(ctx: Ctx, body: DecideBody) -> DecideResponse:
    outcome = get_mother(ctx).decide(body.symbols, body.execute, body.client_order_id)
    return DecideResponse(**outcome.to_dict())


@router.get(
    "/decisions",
    response_model=DecisionList,
    summary="Past decisions with provenance, newest first",
    responses=error_responses(401, 409, 422),
)
def decisions(ctx: Ctx, limit: Limit = 50, offset: Offset = 0) -> DecisionList:
    rows, total = get_mother(ctx).list_decisions(limit, offset)
    return DecisionList(total=total, limit=limit, offset=offset, decisions=[d.to_dict() for d in rows])


@router.get(
    "/decisions/{decision_id}",
    response_model=dict[str, Any],
    summary="One decision",
    responses=error_responses(401, 404, 409, 422),
)
def decision(ctx: Ctx, decision_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]) -> dict[str, Any]:
    return get_mother(ctx).get_decision(decision_id).to_dict()


@router.get(
    "/performance",
    response_model=dict[str, Any],
    summary="Per-agent skill and portfolio performance",
    description="Resolves every prediction whose horizon has passed first, so the numbers are current.",
    responses=error_responses(401, 409),
)
def performance(ctx: Ctx) -> dict[str, Any]:
    mother = get_mother(ctx)
    resolution = mother.resolve()
    return {**mother.performance(), "resolution": resolution}


@router.post(
    "/halt",
    response_model=HaltOut,
    summary="Kill switch: stop all new orders now",
    responses=error_responses(401, 422),
)
def halt(ctx: Ctx, body: HaltBody | None = None) -> HaltOut:
    state = ctx.kill_switch.halt((body or HaltBody()).reason)
    _log_control(ctx, {"action": "halt", "reason": state.reason})
    return HaltOut(halted=state.halted, reason=state.reason, changed_at=state.changed_at)


@router.post(
    "/resume",
    response_model=HaltOut,
    summary="Lift the kill switch and a daily-loss halt",
    responses=error_responses(401, 409),
)
def resume(ctx: Ctx) -> HaltOut:
    # The daily-loss resume reads the portfolio and can fail (live: Binance down); do it first so a
    # failure leaves the kill switch as it was.
    daily = get_mother(ctx).resume_entries().to_dict() if ctx.mother is not None else None
    state = ctx.kill_switch.resume()
    _log_control(ctx, {"action": "resume"})
    return HaltOut(halted=state.halted, reason=state.reason, changed_at=state.changed_at, daily_loss=daily)


def _log_control(ctx: Ctx, payload: dict[str, Any]) -> None:
    """Append to the JSON-lines log; the control action already happened, so a full disk or a
    permission problem is logged, not turned into an error for the client."""
    try:
        ctx.trade_log.append_event("control", payload)
    except OSError:
        log.exception("could not append a control event to the trade log")


@trading.get(
    "/trades",
    response_model=OrderList,
    summary="Orders (filled and rejected), newest first",
    responses=error_responses(401, 422),
)
def trades(ctx: Ctx, limit: Limit = 50, offset: Offset = 0, mode: Mode | None = None) -> OrderList:
    chosen = mode or ctx.settings.trading_mode
    rows, total = list_orders(ctx.sessions, chosen, limit=limit, offset=offset)
    return OrderList(mode=chosen, total=total, limit=limit, offset=offset, trades=[r.to_dict() for r in rows])


@trading.post(
    "/trades/export",
    response_model=ExportOut,
    summary="Write the trades of a mode as CSV",
    responses=error_responses(401, 422),
)
def export(ctx: Ctx, mode: Mode | None = None) -> ExportOut:
    chosen = mode or ctx.settings.trading_mode
    path = export_trades_csv(ctx.sessions, chosen, ctx.settings.trade_export_dir)
    return ExportOut(mode=chosen, path=str(path))


@trading.get(
    "/portfolio",
    response_model=dict[str, Any],
    summary="Balances, positions, equity, pnl",
    responses=error_responses(401, 409, 503),
)
def portfolio(ctx: Ctx) -> dict[str, Any]:
    return get_mother(ctx).executor.portfolio().to_dict()


@trading.post(
    "/portfolio/reset",
    response_model=dict[str, Any],
    summary="Reset the paper account (paper only)",
    responses=error_responses(401, 409),
)
def reset(ctx: Ctx) -> dict[str, Any]:
    return get_mother(ctx).executor.reset().to_dict()
