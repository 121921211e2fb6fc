"""Mother AI and trading endpoints: decide, decisions, performance, kill switch, orders, portfolio."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query
from pydantic import BaseModel, Field

from mother_ai.trade_executer import list_orders
from mother_ai.trade_log import export_trades_csv
from routes.common import Ctx, Limit, Offset, Sort, TimeQuery, error_responses, get_mother, parse_time
from routes.schemas.decisions import DecideResponse, DecisionList, DecisionOut, PerformanceOut
from routes.schemas.trading import HaltOut, OrderList, PortfolioOut, halt_out, order_out, portfolio_out
from utils.symbols import SYMBOL_PATTERN

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/mother-ai", tags=["mother ai"])
trading = APIRouter(prefix="/api", tags=["trading"])

Mode = Literal["paper", "live"]
SymbolFilter = Annotated[str | None, Query(pattern=SYMBOL_PATTERN, examples=["BTCUSDT"])]


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


class HaltBody(BaseModel):
    reason: str = Field(default="manual halt", max_length=500)

    model_config = {"json_schema_extra": {"examples": [{"reason": "stepping away for the weekend"}]}}


class ExportOut(BaseModel):
    mode: Mode
    path: str = Field(
        description="The CSV file written, relative to TRADE_EXPORT_DIR (the server's folders stay its own).",
        examples=["trades-paper-20250103T120000000000Z-1a2b3c4d.csv"],
    )


@router.post(
    "/decide",
    name="decide",
    response_model=DecideResponse,
    summary="Ask every agent, weigh, decide (and execute)",
    responses=error_responses(400, 401, 409, 422, 502, 503),
)
def decide(ctx: Ctx, body: DecideBody) -> DecideResponse:
    outcome = get_mother(ctx).decide(body.symbols, body.execute, body.client_order_id)
    return DecideResponse.model_validate(outcome.to_dict())


@router.get(
    "/decisions",
    name="decisions",
    response_model=DecisionList,
    summary="Past decisions with provenance, newest first",
    responses=error_responses(401, 409, 422),
)
def decisions(
    ctx: Ctx,
    limit: Limit = 50,
    offset: Offset = 0,
    symbol: SymbolFilter = None,
    action: Literal["buy", "sell", "hold"] | None = None,
    sort: Sort = "newest",
) -> DecisionList:
    rows, total = get_mother(ctx).list_decisions(
        limit, offset, symbol=symbol, action=action, newest_first=sort == "newest"
    )
    return DecisionList(
        total=total,
        limit=limit,
        offset=offset,
        decisions=[DecisionOut.model_validate(d.to_dict()) for d in rows],
    )


@router.get(
    "/decisions/{decision_id}",
    name="decision",
    response_model=DecisionOut,
    summary="One decision",
    responses=error_responses(401, 404, 409, 422),
)
def decision(ctx: Ctx, decision_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]) -> DecisionOut:
    return DecisionOut.model_validate(get_mother(ctx).get_decision(decision_id).to_dict())


@router.get(
    "/performance",
    name="performance",
    response_model=PerformanceOut,
    summary="Per-agent skill and portfolio performance",
    description="Resolves every prediction whose horizon has passed first, so the numbers are current.",
    responses=error_responses(401, 409),
)
def performance(ctx: Ctx) -> PerformanceOut:
    mother = get_mother(ctx)
    resolution = mother.resolve()
    return PerformanceOut.model_validate({**mother.performance(), "resolution": resolution})


@router.post(
    "/halt",
    name="halt",
    response_model=HaltOut,
    summary="Kill switch: stop all new orders now",
    responses=error_responses(401, 422),
)
def halt(
    ctx: Ctx,
    body: Annotated[
        HaltBody | None,
        Body(openapi_examples={"weekend": {"summary": "with a reason", "value": {"reason": "weekend"}}}),
    ] = None,
) -> HaltOut:
    state = ctx.kill_switch.halt((body or HaltBody()).reason)
    _log_control(ctx, {"action": "halt", "reason": state.reason})
    return halt_out(state)


@router.post(
    "/resume",
    name="resume",
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
    return halt_out(state, daily)


def _log_control(ctx: Ctx, payload: dict[str, Any]) -> None:
    """Append to the JSON-lines log; the control action already happened, so a full disk or a
    permission problem is logged, not turned into an error for the client."""
    try:
        ctx.trade_log.append_event("control", payload)
    except OSError:
        log.exception("could not append a control event to the trade log")


@trading.get(
    "/orders",
    name="orders",
    response_model=OrderList,
    summary="Orders (filled and rejected), newest first",
    responses=error_responses(401, 422),
)
def orders(
    ctx: Ctx,
    limit: Limit = 50,
    offset: Offset = 0,
    mode: Mode | None = None,
    symbol: SymbolFilter = None,
    side: Literal["BUY", "SELL"] | None = None,
    start: TimeQuery = None,
    end: TimeQuery = None,
    sort: Sort = "newest",
) -> OrderList:
    chosen = mode or ctx.settings.trading_mode
    rows, total = list_orders(
        ctx.sessions,
        chosen,
        limit=limit,
        offset=offset,
        symbol=symbol,
        side=side,
        start_ms=parse_time(start, "start"),
        end_ms=parse_time(end, "end"),
        newest_first=sort == "newest",
    )
    return OrderList(
        mode=chosen, total=total, limit=limit, offset=offset, orders=[order_out(r) for r in rows]
    )


@trading.post(
    "/orders/export",
    name="export_orders",
    response_model=ExportOut,
    summary="Write the orders of a mode as CSV",
    responses=error_responses(401, 422),
)
def export(ctx: Ctx, mode: Mode | None = None) -> ExportOut:
    chosen = mode or ctx.settings.trading_mode
    directory = ctx.settings.trade_export_dir
    path = export_trades_csv(ctx.sessions, chosen, directory)
    return ExportOut(mode=chosen, path=path.relative_to(directory).as_posix())


@trading.get(
    "/portfolio",
    name="portfolio",
    response_model=PortfolioOut,
    summary="Balances, positions, equity, pnl",
    responses=error_responses(401, 409, 503),
)
def portfolio(ctx: Ctx) -> PortfolioOut:
    return portfolio_out(get_mother(ctx).executor.portfolio())


@trading.post(
    "/portfolio/reset",
    name="reset_portfolio",
    response_model=PortfolioOut,
    summary="Reset the paper account (paper only)",
    responses=error_responses(401, 409),
)
def reset(ctx: Ctx) -> PortfolioOut:
    return portfolio_out(get_mother(ctx).reset_portfolio())
