"""Web-layer pieces every router shares (not a router): the app context, auth, error body, parsers."""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from agents.service import AgentService
from backtester.optimize.service import OptimizeDeps
from mother_ai.mother_ai import MotherAI
from mother_ai.recovery import PeriodicReconciler
from mother_ai.scheduler import DecisionScheduler
from mother_ai.trade_executer import KillSwitch
from mother_ai.trade_log import TradeLog
from strategy_engine.store import StrategyStore
from utils.compute import Compute
from utils.errors import (
    AppError,
    ComputeUnavailable,
    Conflict,
    DataUnavailable,
    ExchangeError,
    ExchangeUnavailable,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from utils.events import EventLog
from utils.exchange import Clock
from utils.exchange_probe import ExchangeProbe
from utils.intervals import Interval
from utils.jobs import JobRunner
from utils.market_data.market import MarketData
from utils.market_data.watcher import CandleWatcher
from utils.settings import Settings
from utils.symbols import SYMBOL_PATTERN

_YEAR_3000_MS = 32_503_680_000_000
Symbol = Annotated[
    str,
    Field(
        pattern=SYMBOL_PATTERN,
        description="Binance symbol: 5-20 capital letters or digits.",
        examples=["BTCUSDT"],
    ),
]


@dataclass
class AppContext:
    """Everything a request may need, built once and complete in ``create_app`` (the lifespan only
    migrates the database and seeds it; it assigns nothing here)."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    market: MarketData
    jobs: JobRunner
    agents: AgentService
    strategies: StrategyStore
    kill_switch: KillSwitch
    trade_log: TradeLog
    clock: Clock
    events: EventLog
    candle_watcher: CandleWatcher
    probe: ExchangeProbe
    compute: Compute  # where sweeps and optimisation trials run: local processes or a Dask cluster
    optimize: OptimizeDeps  # strategy optimisation (backtester/optimize/service.py)
    mother: MotherAI | None = None  # None when TRADING_MODE=live is not fully enabled
    scheduler: DecisionScheduler | None = None  # SCHEDULER_ENABLED (and the Mother AI available)
    reconciler: PeriodicReconciler | None = None  # live mode: open orders looked up on Binance
    mother_error: AppError | None = None
    api_key: str = ""


def get_mother(ctx: AppContext) -> MotherAI:
    """The Mother AI, or the reason it could not be built (live trading not fully enabled)."""
    if ctx.mother is None:
        raise ctx.mother_error or Conflict("The Mother AI is not available.", code="mother_ai_unavailable")
    return ctx.mother


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]

_bearer = HTTPBearer(auto_error=False, description="The API_KEY from .env (printed on first start).")


def require_api_key(
    ctx: Ctx, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Every endpoint but /api/health: `Authorization: Bearer <API_KEY>`, compared in constant time."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("Missing API key: send the header 'Authorization: Bearer <API_KEY>'.")
    if not ctx.api_key or not hmac.compare_digest(credentials.credentials.encode(), ctx.api_key.encode()):
        raise Unauthorized("Invalid API key.")


# --- the one error body --------------------------------------------------------------------------


# Every code an error body can carry (tests/routes/test_contract.py finds each one raised in the code).
ErrorCode = Literal[
    "agent_exists",
    "agent_not_found",
    "agent_untrained",
    "backtest_not_found",
    "bad_request",
    "compute_unavailable",
    "conflict",
    "data_unavailable",
    "decision_not_found",
    "exchange_bad_response",
    "exchange_error",
    "exchange_unavailable",
    "feature_mismatch",
    "forbidden",
    "internal_error",
    "invalid_body",
    "invalid_csv",
    "invalid_input",
    "job_finished",
    "optimization_not_found",
    "job_not_found",
    "live_reset_refused",
    "live_trading_disabled",
    "method_not_allowed",
    "model_checksum_mismatch",
    "model_exists",
    "model_invalid",
    "model_missing",
    "model_not_found",
    "model_path_invalid",
    "mother_ai_unavailable",
    "no_data",
    "no_trained_agents",
    "not_acceptable",
    "not_enough_candles",
    "not_found",
    "offline",
    "payload_too_large",
    "replay_not_found",
    "strategy_exists",
    "strategy_not_found",
    "sync_required",
    "too_many_combinations",
    "too_many_requests",
    "trading_halted",
    "training_failed",
    "training_in_progress",
    "unauthorized",
    "unknown_strategy",
    "unknown_symbol",
    "unsupported_media_type",
    "validation_error",
    "version_not_found",
]


class ProblemOut(BaseModel):
    """One problem validation found: in a request field, or at a path inside a strategy spec."""

    field: str | None = Field(default=None, description="The request field, as `query.limit` or `body.grid`.")
    path: str | None = Field(default=None, description="Where in a strategy spec, as `entry.all.0.left`.")
    message: str


# A named value of an error's context: a symbol, a job id, a limit, a count, the symbols missing.
ContextValue = str | int | float | bool | list[str] | list[int] | None


class ErrorContext(BaseModel):
    """What an error is about, for a client to point at it: the request field or spec path at fault,
    every problem when validation found several (the first is `field` or `path`), and named values
    (`symbol`, `interval`, `job`, `limit`, `available`, `binance_code`, ...)."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, ContextValue]

    field: str | None = Field(default=None, description="The request field at fault.")
    path: str | None = Field(default=None, description="The path at fault inside a strategy spec.")
    errors: list[ProblemOut] | None = Field(default=None, description="Every problem found, first first.")


class ErrorDetail(BaseModel):
    code: ErrorCode = Field(description="Machine-readable error code.", examples=["invalid_input"])
    message: str = Field(description="What went wrong, in a sentence.")
    details: ErrorContext | None = Field(default=None, description="Structured context, when there is any.")


class ErrorBody(BaseModel):
    error: ErrorDetail


def error_responses(*statuses: int, stream: bool = False) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses an endpoint can answer with. A `stream` (SSE) route's
    models would be documented as `text/event-stream`; its errors are JSON, so they name the schema."""
    names = {
        400: "Malformed request body",
        401: "Missing or invalid API key",
        404: "Not found",
        409: "Conflict with the current state",
        413: "Payload too large",
        422: "Invalid input (the message names the field)",
        502: "The exchange rejected the request",
        503: "Data or exchange unavailable",
    }
    if stream:
        body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        return {status: {"content": body, "description": names.get(status, "Error")} for status in statuses}
    return {status: {"model": ErrorBody, "description": names.get(status, "Error")} for status in statuses}


# --- from domain errors to HTTP: the one place that knows both ---------------------------------

_STATUS_OF_KIND: dict[type[AppError], int] = {
    Unauthorized: 401,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    InvalidInput: 422,
    ExchangeError: 502,
    ExchangeUnavailable: 503,
    DataUnavailable: 503,
    ComputeUnavailable: 503,
}


def http_status(exc: AppError) -> int:
    """The status of an error kind (its nearest listed base class; 400 for a plain AppError)."""
    for kind in type(exc).__mro__:
        if kind in _STATUS_OF_KIND:
            return _STATUS_OF_KIND[kind]
    return 400


def _train_steps(symbols: list[str]) -> str:
    return "; ".join(f"POST /api/agents/{s}/train" for s in symbols)


def _no_trained_agents_hint(details: dict[str, Any]) -> str | None:
    parts = []
    if details.get("untrained"):
        parts.append(f"Train with {_train_steps(details['untrained'])}.")
    if details.get("missing") or not details.get("untrained"):
        parts.append(
            "Create an agent with POST /api/agents, then train it with POST /api/agents/{symbol}/train."
        )
    return " ".join(parts)


# Per error code, the endpoint that fixes it: the domain says what is wrong, the API says where to act.
_HINTS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "agent_not_found": lambda d: "Create one with POST /api/agents.",
    "agent_untrained": lambda d: f"Train it with POST /api/agents/{d.get('symbol', '{symbol}')}/train.",
    "no_trained_agents": _no_trained_agents_hint,
    "strategy_exists": lambda d: f"Update it with PUT /api/strategies/{d.get('id', '{id}')}.",
    "sync_required": lambda d: "Download them with POST /api/binance/sync (it runs as a background job).",
}


def error_message(exc: AppError) -> str:
    """The error's message, followed by the hint for its code when there is one."""
    hint = _HINTS.get(exc.code)
    details = exc.details if isinstance(exc.details, dict) else {}
    extra = hint(details) if hint is not None else None
    return f"{exc.message} {extra}" if extra else exc.message


# --- query parsing --------------------------------------------------------------------------------


def parse_time(value: str | None, field: str) -> int | None:
    """Epoch milliseconds from an integer (ms) or an ISO-8601 date/time (UTC if no zone is given)."""
    if value is None or value == "":
        return None
    text = value.strip()
    if re.fullmatch(r"[0-9]{1,20}", text):
        ms = int(text)
    else:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(
                f"{field}: expected epoch milliseconds or an ISO-8601 date/time "
                "such as 2024-01-31T00:00:00Z.",
                details={"field": field},
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        ms = int(parsed.timestamp() * 1000)
    if not 0 <= ms <= _YEAR_3000_MS:
        raise InvalidInput(f"{field}: must be between 1970 and 3000.", details={"field": field})
    return ms


SymbolQuery = Annotated[
    str, Query(pattern=SYMBOL_PATTERN, description="5-20 capital letters or digits.", examples=["BTCUSDT"])
]
IntervalQuery = Annotated[Interval, Query(description="One of Binance's kline intervals.", examples=["1h"])]
Limit = Annotated[int, Query(ge=1, le=500, description="Items per page.")]
Offset = Annotated[int, Query(ge=0, le=1_000_000, description="Items to skip.")]
Sort = Annotated[Literal["newest", "oldest"], Query(description="Newest first unless oldest is asked for.")]
TimeQuery = Annotated[
    str | None,
    Query(description="Epoch milliseconds or ISO-8601 (UTC if no zone).", examples=["2025-01-01T00:00:00Z"]),
]


# --- shared bodies ---------------------------------------------------------------------------------


class MetricsOut(BaseModel):
    total_return: float | None = Field(description="Final equity / initial capital - 1 (0.12 = 12%).")
    cagr: float | None
    sharpe: float | None = Field(description="Annualised from per-bar equity returns, 365-day calendar.")
    sortino: float | None
    max_drawdown: float | None = Field(description="Largest peak-to-trough fall, positive fraction.")
    max_drawdown_duration: int | None = Field(description="Bars from a peak to the recovery (or the end).")
    calmar: float | None
    win_rate: float | None
    profit_factor: float | None = Field(description="Gross profit / gross loss in quote currency.")
    expectancy: float | None = Field(description="Mean pnl per closed trade, quote currency.")
    avg_trade_return: float | None
    n_trades: int = Field(description="Closed trades (an open position at the end is not counted).")
    exposure: float | None = Field(description="Share of bars in a position.")
    buy_and_hold_return: float | None
    final_equity: float


# --- jobs -----------------------------------------------------------------------------------------
