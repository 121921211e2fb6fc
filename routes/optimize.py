"""Optimisation endpoints: start one (a background job), list and read the stored results (/api/optimize)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse, JSONResponse

from backtester.optimize import report, service
from backtester.optimize.search import Constraints
from backtester.runner import BacktestConfig
from db.models import OptimizationRun
from routes.common import Ctx, Limit, Offset, error_responses, parse_time
from routes.html import html_page, html_responses
from routes.schemas.jobs import JobOut, job_out
from routes.schemas.optimize import OptimizationList, OptimizationOut, OptimizationSummaryOut, OptimizeBody
from utils.errors import InvalidInput
from utils.intervals import as_interval
from utils.symbols import SYMBOL_PATTERN

router = APIRouter(prefix="/api", tags=["optimisation"])
OptimizationId = Annotated[
    str, Path(pattern=r"^[0-9a-f]{32}$", examples=["0123456789abcdef0123456789abcdef"])
]


def _request(body: OptimizeBody) -> service.OptimizeRequest:
    try:
        config = BacktestConfig(
            initial_capital=body.initial_capital, fee_rate=body.fee_rate, slippage_bps=body.slippage_bps
        )
    except ValueError as exc:  # the engine's own rules, beyond the field bounds
        raise InvalidInput(str(exc), details={"field": str(exc).split(" ", 1)[0]}) from None
    wf = body.walk_forward
    return service.OptimizeRequest(
        strategy=body.strategy,
        symbol=body.symbol,
        interval=body.interval,
        start_ms=parse_time(None if body.start is None else str(body.start), "start"),
        end_ms=parse_time(None if body.end is None else str(body.end), "end"),
        objective=body.objective,
        n_trials=body.n_trials,
        sampler=body.sampler,
        seed=body.seed,
        trials_per_round=body.trials_per_round,
        constraints=Constraints(body.constraints.min_trades, body.constraints.max_drawdown),
        walk_forward=None
        if wf is None
        else service.WalkForward(wf.mode, wf.windows, wf.in_sample, wf.out_of_sample, wf.gap),
        config=config,
        params=dict(body.params) or None,
        space=None if body.space is None else {k: v.model_dump() for k, v in body.space.items()},
    )


@router.post(
    "/optimize",
    name="create",
    status_code=202,
    response_model=JobOut,
    summary="Optimise a strategy's parameters (a background job)",
    description="Optuna search (TPE, or grid) of a built-in's `space` or a JSON strategy's own `parameters`, "
    "optionally walk-forward (each window's winner is scored on the bars after it). Trials run on the "
    "compute backend (local processes, or the Dask cluster at COMPUTE_SCHEDULER). The result carries the "
    "trials' spread, the deflated Sharpe ratio, the probability of backtest overfitting, the winner's "
    "neighbourhood and a verdict. Progress and cancel as for every job; an interrupted run resumes.",
    responses=error_responses(401, 404, 409, 422),
)
def post_optimize(ctx: Ctx, body: OptimizeBody) -> JSONResponse:
    job = service.start(ctx.optimize, _request(body))
    return JSONResponse(status_code=202, content=job_out(job).model_dump(mode="json"))


@router.get(
    "/optimizations",
    name="list",
    response_model=OptimizationList,
    summary="Stored optimisations, newest first",
    responses=error_responses(401, 422),
)
def list_optimizations(
    ctx: Ctx,
    limit: Limit = 50,
    offset: Offset = 0,
    symbol: Annotated[str | None, Query(pattern=SYMBOL_PATTERN, examples=["BTCUSDT"])] = None,
) -> OptimizationList:
    rows, total = service.list_runs(ctx.sessions, limit, offset, symbol=symbol)
    return OptimizationList(
        total=total,
        limit=limit,
        offset=offset,
        optimizations=[
            OptimizationSummaryOut(
                id=row.id,
                job_id=row.job_id,
                created_at=row.created_at,  # type: ignore[arg-type]  # EpochMs converts datetimes
                symbol=row.symbol,
                interval=as_interval(row.interval),
                strategy=row.strategy,
                kind=row.result["kind"],
                n_trials=row.result["n_trials"],
                verdict=row.result["verdict"]["level"],
            )
            for row in rows
        ],
    )


@router.get(
    "/optimizations/{optimization_id}",
    name="get",
    response_model=OptimizationOut,
    summary="One optimisation: winner, trials, statistics, verdict, walk-forward windows",
    responses=error_responses(401, 404, 422),
)
def get_optimization(ctx: Ctx, optimization_id: OptimizationId) -> OptimizationOut:
    return optimization_out(service.get(ctx.sessions, optimization_id))


def optimization_out(row: OptimizationRun) -> OptimizationOut:
    result: dict[str, Any] = row.result
    return OptimizationOut.model_validate(
        {
            **result,
            "id": row.id,
            "job_id": row.job_id,
            "created_at": row.created_at,
            "symbol": row.symbol,
            "interval": row.interval,
            "strategy": row.strategy,
            "strategy_kind": row.strategy_kind,
            "strategy_id": row.strategy_id,
            "strategy_version": row.strategy_version,
            "objective": row.request["objective"],
        }
    )


@router.get(
    "/optimizations/{optimization_id}/report",
    name="report",
    response_class=HTMLResponse,
    summary="One optimisation as an HTML report",
    description="The verdict and the statistics behind it, the winner's neighbourhood as a heatmap, every "
    "trial's objective, the winner's (or the stitched out-of-sample) equity, and the walk-forward windows. "
    "Self-contained and offline.",
    responses=html_responses("The report", 401, 404, 422),
)
def get_report(ctx: Ctx, optimization_id: OptimizationId) -> HTMLResponse:
    return html_page(ctx, report.optimization_report_html(ctx.sessions, optimization_id, ctx.clock()))
