"""Mother AI replay endpoints: start a replay job, list stored replays, read one and page its decisions."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from mother_ai import replay_report, replay_service
from mother_ai.replay_service import ReplayDeps, ReplayRequest
from routes.common import Ctx, Limit, MetricsOut, Offset, Symbol, error_responses, parse_time
from routes.html import html_page, html_responses
from routes.schemas.agents import ModelMetricsOut
from routes.schemas.decisions import StepOut
from routes.schemas.jobs import JobOut, job_out
from routes.schemas.values import DecimalStr, EpochMs
from utils.intervals import Interval
from utils.market_data.candles import DataSource

router = APIRouter(prefix="/api/mother-ai", tags=["mother ai replay"])

ReplayId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]
Number = float | None


class RiskOverrides(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_position_fraction: float | None = Field(default=None, gt=0, le=1)
    max_total_exposure: float | None = Field(default=None, gt=0, le=1)
    max_open_positions: int | None = Field(default=None, ge=1, le=100)
    min_confidence: float | None = Field(default=None, ge=0, le=1)
    daily_loss_limit: float | None = Field(default=None, gt=0, le=1)


class ReplayBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "symbols": ["BTCUSDT", "ETHUSDT"],
                    "interval": "1h",
                    "start": "2023-01-01T00:00:00Z",
                    "end": "2024-12-31T00:00:00Z",
                    "initial_balance": "10000",
                    "retrain_every": 168,
                    "warmup": 6000,
                    "include_strategies": [],
                    "fee_rate": 0.001,
                    "slippage_bps": 5,
                    "risk": {"min_confidence": 0.1},
                }
            ]
        },
    )

    symbols: list[Symbol] = Field(min_length=1, max_length=replay_service.MAX_SYMBOLS)
    interval: Interval = "1h"
    start: str | int = Field(description="Epoch ms or ISO-8601: the first candle of the range.")
    end: str | int = Field(description="Epoch ms or ISO-8601: the last candle of the range.")
    initial_balance: str = Field(
        default="10000", pattern=r"^[0-9]{1,12}(\.[0-9]{1,8})?$", description="Quote asset, decimal string."
    )
    retrain_every: int = Field(
        default=168,
        ge=1,
        le=100_000,
        description=f"Bars between retrains (min {replay_service.MIN_RETRAIN_EVERY}).",
    )
    warmup: int = Field(
        default=6000, ge=1, le=1_000_000, description="Bars of history before the first decision."
    )
    include_strategies: list[int] = Field(
        default_factory=list, max_length=20, description="Saved strategy ids."
    )
    fee_rate: float | None = Field(default=None, ge=0, lt=0.1, description="Default: PAPER_FEE_RATE.")
    slippage_bps: float | None = Field(
        default=None, ge=0, le=1000, description="Default: PAPER_SLIPPAGE_BPS."
    )
    risk: RiskOverrides | None = Field(default=None, description="Overrides of the RISK_* limits.")
    retrain_mode: Literal["refit", "full"] = Field(
        default="refit",
        description="refit: a full walk-forward search at the first retrain, then refits of that family; "
        "full: a search at every retrain.",
    )


class OutcomeOut(BaseModel):
    final_equity: float
    total_return: float
    fills: int
    max_drawdown: float


class VoterAloneOut(OutcomeOut):
    kind: Literal["agent", "strategy"]


class HoldOut(BaseModel):
    final_equity: float
    total_return: float
    max_drawdown: float


class ComparisonsOut(BaseModel):
    mother_ai: OutcomeOut
    voters_alone: dict[str, VoterAloneOut]
    equal_weights: OutcomeOut
    buy_and_hold: dict[str, HoldOut]
    best_voter_alone: str | None
    beats_best_voter_alone: bool
    beats_equal_weights: bool
    beats_buy_and_hold: dict[str, bool]


class RetrainOut(BaseModel):
    voter: str
    time: int = Field(description="The close (epoch ms) the training ran at.")
    ok: bool
    error: str | None = None
    version: str | None = None
    mode: Literal["full", "refit"] | None = None
    family: str | None = None
    params: dict[str, float | int | str | bool | None] | None = None
    window_start_time: int | None = None
    window_end_time: int | None = None
    rows: int | None = None
    seconds: float | None = None
    oos_metrics: ModelMetricsOut | None = Field(
        default=None, description="The trainer's out-of-sample report."
    )


class VoterOut(BaseModel):
    voter: str
    kind: Literal["agent", "strategy"]
    symbol: str
    horizon: int
    votes: int
    resolved: int
    hit_rate: float | None
    final_weight: float | None


class TimingsOut(BaseModel):
    training: float
    prediction: float
    decision: float


class CostsOut(BaseModel):
    fee_rate: float
    slippage: float
    round_trip_cost: float
    exit_cost: float


class LimitsOut(BaseModel):
    max_position_fraction: float
    max_total_exposure: float
    max_open_positions: int
    min_confidence: float
    daily_loss_limit: float
    max_order_notional: float | None


class CountsOut(BaseModel):
    steps: int
    buys: int
    sells: int
    fills: int
    final_equity: float


class FillOut(BaseModel):
    step: int
    symbol: str
    side: Literal["BUY", "SELL"]
    status: Literal["FILLED"]
    fill_time: int = Field(description="Open time (epoch ms) of the candle whose open filled the order.")
    reference_price: DecimalStr
    price: DecimalStr
    quantity: DecimalStr
    notional: DecimalStr
    fee: DecimalStr
    realised_pnl: DecimalStr


class VoterSeriesOut(BaseModel):
    as_of: list[int]
    prob_up: list[Number]
    realised: list[Number]
    weight: list[float]


class SeriesOut(BaseModel):
    step_times: list[int] = Field(description="Decision times: each step's candle close, epoch ms.")
    equity: list[Number]
    drawdown: list[Number]
    fills: list[FillOut]
    comparison_equity: dict[str, list[Number]]
    voters: dict[str, VoterSeriesOut]


class ReplayRequestOut(BaseModel):
    symbols: list[str]
    interval: Interval
    start: int
    end: int
    initial_balance: DecimalStr
    retrain_every: int
    warmup: int
    include_strategies: list[int]
    fee_rate: float | None
    slippage_bps: float | None
    risk: dict[str, float | int] | None
    retrain_mode: Literal["refit", "full"]


class ReplayListItem(BaseModel):
    id: str
    job_id: str
    created_at: EpochMs
    symbols: list[str]
    interval: Interval
    start_time: EpochMs
    end_time: EpochMs
    n_steps: int
    sample_data: bool
    final_equity: float
    total_return: float


class ReplayList(BaseModel):
    total: int
    limit: int
    offset: int
    replays: list[ReplayListItem]


class ReplayOut(ReplayListItem):
    request: ReplayRequestOut
    metrics: MetricsOut
    comparisons: ComparisonsOut
    retrains: list[RetrainOut]
    retrain_mode: Literal["refit", "full"]
    voters: list[VoterOut]
    timings: TimingsOut
    costs: CostsOut
    limits: LimitsOut
    sources: dict[str, DataSource] = Field(description="Per symbol, where its candles came from.")
    counts: CountsOut
    notes: list[str]
    series: SeriesOut | None = Field(
        description="With ?series=true: equity, drawdown, fills, weights, predictions."
    )


class StepList(BaseModel):
    total: int
    limit: int
    offset: int
    steps: list[StepOut] = Field(
        description="Decision payloads, as live decisions, plus step, time (epoch ms) and reason_code."
    )


def _deps(ctx: Ctx) -> ReplayDeps:
    return ReplayDeps(
        ctx.settings.paper,
        ctx.settings.risk,
        ctx.sessions,
        ctx.market,
        ctx.agents,
        ctx.strategies,
        ctx.jobs,
        ctx.clock,
    )


@router.post(
    "/replay",
    name="create",
    status_code=202,
    response_model=JobOut,
    summary="Replay the whole decision loop over history (a background job)",
    description="Poll GET /api/jobs/{id}; its result names the replay_id to read at "
    "/api/mother-ai/replays/{id}. Cancel with POST /api/jobs/{id}/cancel. "
    "A replay never touches the running account.",
    responses=error_responses(401, 404, 422, 503),
)
def start(ctx: Ctx, body: ReplayBody) -> JobOut:
    start_ms, end_ms = parse_time(str(body.start), "start"), parse_time(str(body.end), "end")
    assert start_ms is not None and end_ms is not None
    risk = {k: v for k, v in body.risk.model_dump().items() if v is not None} if body.risk else None
    request = ReplayRequest(
        symbols=tuple(body.symbols),
        interval=body.interval,
        start_ms=start_ms,
        end_ms=end_ms,
        initial_balance=Decimal(body.initial_balance),
        retrain_every=body.retrain_every,
        warmup=body.warmup,
        include_strategies=tuple(body.include_strategies),
        fee_rate=body.fee_rate,
        slippage_bps=body.slippage_bps,
        risk=risk or None,
        retrain_mode=body.retrain_mode,
    )
    return job_out(replay_service.start_replay(_deps(ctx), request))


@router.get(
    "/replays",
    name="list",
    response_model=ReplayList,
    summary="Stored replays, newest first",
    responses=error_responses(401, 422),
)
def replays(ctx: Ctx, limit: Limit = 50, offset: Offset = 0) -> ReplayList:
    rows, total = replay_service.list_replays(ctx.sessions, limit, offset)
    return ReplayList(total=total, limit=limit, offset=offset, replays=[_item(r) for r in rows])


@router.get(
    "/replays/{replay_id}",
    name="get",
    response_model=ReplayOut,
    summary="One replay: metrics, comparisons, voters, retrains (and ?series=true for the curves)",
    responses=error_responses(401, 404, 422),
)
def replay(ctx: Ctx, replay_id: ReplayId, series: bool = False) -> ReplayOut:
    row = replay_service.get_replay(ctx.sessions, replay_id)
    summary = row.summary
    return ReplayOut(
        **_item(row).model_dump(),
        request=ReplayRequestOut(**row.request),
        metrics=MetricsOut(**summary["metrics"], final_equity=summary["counts"]["final_equity"]),
        comparisons=ComparisonsOut(**summary["comparisons"]),
        retrains=[RetrainOut(**r) for r in summary["retrains"]],
        retrain_mode=summary["retrain_mode"],
        voters=[VoterOut(**v) for v in summary["voters"]],
        timings=TimingsOut(**summary["timings"]),
        costs=CostsOut(**summary["costs"]),
        limits=LimitsOut(**summary["limits"]),
        sources=summary["data_sources"],
        counts=CountsOut(**summary["counts"]),
        notes=summary["notes"],
        series=SeriesOut(**replay_service.replay_series(row)) if series else None,
    )


@router.get(
    "/replays/{replay_id}/steps",
    name="steps",
    response_model=StepList,
    summary="A page of a replay's decisions, in step order",
    responses=error_responses(401, 404, 422),
)
def steps(ctx: Ctx, replay_id: ReplayId, limit: Limit = 100, offset: Offset = 0) -> StepList:
    rows, total = replay_service.replay_steps(ctx.sessions, replay_id, offset, limit)
    return StepList(total=total, limit=limit, offset=offset, steps=[StepOut.model_validate(r) for r in rows])


@router.get(
    "/replays/{replay_id}/report",
    name="report",
    response_class=HTMLResponse,
    summary="One replay as an HTML report",
    description="Equity against buy and hold, each voter alone and equal weights, the voters' weights over "
    "time, the decisions marked on each symbol's price, the fills and the retrains. Self-contained and "
    "offline: open it in a browser, or embed it in an iframe (see the README).",
    responses=html_responses("The report", 401, 404, 422),
)
def report(ctx: Ctx, replay_id: ReplayId) -> HTMLResponse:
    page = replay_report.replay_report_html(ctx.sessions, ctx.market.store, replay_id, ctx.clock())
    return html_page(ctx, page)


def _item(row: Any) -> ReplayListItem:
    counts = row.summary["counts"]
    initial = float(row.request["initial_balance"])
    created: datetime = row.created_at
    return ReplayListItem(
        id=row.id,
        job_id=row.job_id,
        created_at=int(created.timestamp() * 1000),
        symbols=row.symbols,
        interval=row.interval,
        start_time=row.start_time,
        end_time=row.end_time,
        n_steps=row.n_steps,
        sample_data=bool(row.summary["sample_data"]),
        final_equity=counts["final_equity"],
        total_return=counts["final_equity"] / initial - 1.0,
    )
