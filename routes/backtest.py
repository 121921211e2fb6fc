"""Backtest endpoints: run one, read stored ones, sweep a parameter grid (/api/backtest)."""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

import msgspec
from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field, StrictFloat, StrictInt

import strategy_registry
from backtester import report, service
from db.models import BacktestRun
from routes.common import (
    Ctx,
    Limit,
    MetricsOut,
    Offset,
    Sort,
    Symbol,
    error_responses,
    parse_time,
)
from routes.html import html_page, html_responses
from routes.schemas.values import EpochMs, StrategyRefIn
from strategy_engine.strategy_parser import STOP_FIELDS, backtest_config
from utils.errors import InvalidInput
from utils.gc_pause import gc_paused
from utils.intervals import Interval
from utils.market_data.candles import DataSource
from utils.symbols import SYMBOL_PATTERN

router = APIRouter(prefix="/api/backtest", tags=["backtest"])

Number = StrictInt | StrictFloat


class BacktestBody(BaseModel):
    symbol: Symbol
    interval: Interval = "1h"
    strategy: StrategyRefIn = Field(
        description="A built-in name (e.g. sma_crossover), a saved strategy's id, or an inline strategy spec "
        "(see GET /api/strategies/schema)."
    )
    params: dict[str, Number] = Field(default_factory=dict, max_length=32, description="Strategy parameters.")
    start: int | str | None = Field(default=None, description="Epoch ms or ISO-8601; default: all stored.")
    end: int | str | None = Field(default=None, description="Epoch ms or ISO-8601; default: now.")
    initial_capital: float = Field(default=10_000.0, gt=0, le=1e12)
    fee_rate: float = Field(default=0.001, ge=0, lt=1, description="Per side, on each fill's notional.")
    slippage_bps: float = Field(default=0.0, ge=0, lt=10_000, description="Moves every fill against you.")
    stop_loss: float | None = Field(default=None, gt=0, lt=1, description="Fraction below the entry price.")
    take_profit: float | None = Field(
        default=None, gt=0, le=100, description="Fraction above the entry price."
    )
    trailing_stop: float | None = Field(default=None, gt=0, lt=1, description="Fraction below the peak.")
    position_size: float = Field(default=1.0, gt=0, le=1, description="Fraction of equity per entry.")

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "symbol": "BTCUSDT",
                    "interval": "1h",
                    "strategy": "sma_crossover",
                    "params": {"fast": 10, "slow": 30},
                    "fee_rate": 0.001,
                    "stop_loss": 0.03,
                }
            ]
        }
    }

    def to_request(
        self, strategy: strategy_registry.ResolvedStrategy | None = None
    ) -> service.BacktestRequest:
        """The engine request; a JSON strategy's own stops and size apply where the body gives none."""
        spec = strategy.spec if strategy is not None else None
        stops = {
            name: getattr(self, name) for name in STOP_FIELDS if spec is None or name in self.model_fields_set
        }
        try:
            config = backtest_config(
                spec,
                initial_capital=self.initial_capital,
                fee_rate=self.fee_rate,
                slippage_bps=self.slippage_bps,
                **stops,
            )
        except ValueError as exc:  # the engine's own rules, beyond the field bounds above
            raise InvalidInput(str(exc), details={"field": str(exc).split(" ", 1)[0]}) from None
        start = parse_time(None if self.start is None else str(self.start), "start")
        end = parse_time(None if self.end is None else str(self.end), "end")
        return service.BacktestRequest(self.symbol, self.interval, start, end, config)


class SweepBody(BacktestBody):
    grid: dict[str, Annotated[list[Number], Field(min_length=1, max_length=64)]] = Field(
        min_length=1,
        max_length=8,
        description=f"Values per parameter; at most {service.MAX_SWEEP_COMBINATIONS} combinations in all.",
        examples=[{"fast": [5, 10, 20], "slow": [30, 50]}],
    )
    rank_by: service.RankMetric = Field(default="sharpe")


class TradeOut(BaseModel):
    entry_time: int
    entry_price: float
    exit_time: int | None
    exit_price: float | None
    quantity: float
    fees: float
    pnl: float
    trade_return: float
    entry_bar: int
    exit_bar: int | None
    exit_reason: Literal["signal", "stop_loss", "take_profit", "trailing_stop", "end"]


class EquityPoint(BaseModel):
    time: int = Field(description="Candle open time, epoch ms.")
    equity: float = Field(description="Cash + position marked at that candle's close.")
    drawdown: float = Field(description="Below the running peak (the capital counts), positive fraction.")


class BacktestConfigOut(BaseModel):
    initial_capital: float
    fee_rate: float
    slippage_bps: float
    position_size: float
    stop_loss: float | None
    take_profit: float | None
    trailing_stop: float | None


class BacktestSummary(BaseModel):
    id: str
    created_at: EpochMs
    symbol: str
    interval: Interval
    strategy: str = Field(
        description="Display name: a built-in's name, or a saved strategy's name, id, version."
    )
    strategy_kind: Literal["builtin", "saved", "inline"] | None
    strategy_id: int | None = Field(
        description="The saved strategy that ran (null for built-ins and inline specs)."
    )
    strategy_version: int | None
    params: dict[str, float | int | str | bool]
    config: BacktestConfigOut
    source: DataSource = Field(description="Where the candles came from: binance, cache, file or sample.")
    start_time: EpochMs = Field(description="Open time of the first candle.")
    end_time: EpochMs = Field(description="Open time of the last candle.")
    n_bars: int
    metrics: MetricsOut


class BacktestResponse(BacktestSummary):
    trades: list[TradeOut]
    open_trade: TradeOut | None
    equity_points: int = Field(description="Bars in the full curve; `equity_curve` may be downsampled.")
    equity_curve: list[EquityPoint]


class BacktestList(BaseModel):
    total: int
    limit: int
    offset: int
    backtests: list[BacktestSummary]


class SweepResult(BaseModel):
    rank: int | None = Field(description="1 = best; null for combinations the strategy rejected.")
    params: dict[str, float | int | str | bool]
    metrics: MetricsOut | None
    error: str | None


class SweepResponse(BaseModel):
    strategy: str
    rank_by: service.RankMetric
    combinations: int
    source: DataSource
    n_bars: int
    results: list[SweepResult]


def _summary(run: BacktestRun) -> BacktestSummary:
    return BacktestSummary.model_validate(
        {
            "id": run.id,
            "created_at": run.created_at,
            "symbol": run.symbol,
            "interval": run.interval,
            "strategy": run.strategy,
            "strategy_kind": run.strategy_kind,
            "strategy_id": run.strategy_id,
            "strategy_version": run.strategy_version,
            "params": run.params,
            "config": run.config,
            "source": run.data_source,
            "start_time": run.start_time,
            "end_time": run.end_time,
            "n_bars": run.n_bars,
            "metrics": run.metrics,
        }
    )


def _response(stored: service.StoredBacktest, full: bool, status_code: int = 200) -> Response:
    """A BacktestResponse body, serialised once: thousands of trades and curve points are built from
    typed columns (ints, floats and exit reasons from the engine), so validating each row as a pydantic
    object and dumping it again would cost more than the backtest. The small parts are still validated;
    tests/routes/test_backtest_body.py proves the body is what BacktestResponse would produce (the same
    fields in the same order, the same values).

    The rows are msgspec structs, made in C from the columns and encoded without a dict per row: a third
    of the time dicts and a dict encoder take. FastAPI passes a returned Response through untouched, while
    the route's response_model keeps documenting the body in /openapi.json."""
    limit = len(stored.times) if full else service.MAX_CURVE_POINTS
    initial = float(stored.run.config["initial_capital"])
    curve = service.downsample(stored.times, stored.equity, initial, max(limit, 1))
    columns = stored.trades.lists()
    open_trade = stored.run.open_trade
    with gc_paused():  # thousands of small acyclic rows (utils.gc_pause says why)
        body = {
            **_summary(stored.run).model_dump(mode="json"),
            "trades": list(map(_TradeRow, *(columns[name] for name in TRADE_OUT_FIELDS))),
            "open_trade": (
                None if open_trade is None else TradeOut.model_validate(open_trade).model_dump(mode="json")
            ),
            "equity_points": len(stored.times),
            "equity_curve": [_CurveRow(t, e, d) for t, e, d in curve],
        }
        content = _ENCODER.encode(body)
    return Response(content, status_code=status_code, media_type="application/json")


TRADE_OUT_FIELDS = tuple(TradeOut.model_fields)  # the engine's Trade fields (a test pins it)
# Encoding-only row types, named after the models' own fields (so they cannot drift): what each field holds
# is checked where the columns are made, and the body's equality with the models is tested.
_TradeRow = msgspec.defstruct("TradeRow", [(name, Any) for name in TRADE_OUT_FIELDS], gc=False)
_CurveRow = msgspec.defstruct("CurveRow", [(name, Any) for name in EquityPoint.model_fields], gc=False)
_ENCODER = msgspec.json.Encoder()


FullQuery = Annotated[bool, Query(description="Return every point of the equity curve.")]


@router.post(
    "",
    name="create",
    response_model=BacktestResponse,
    status_code=201,
    summary="Run and store a backtest",
    responses=error_responses(400, 401, 404, 409, 422, 502, 503),
)
def post_backtest(ctx: Ctx, body: BacktestBody, full: FullQuery = False) -> Response:
    strategy = strategy_registry.resolve(body.strategy, body.params, ctx.strategies)
    return service.run_store_and_render(
        ctx.market,
        ctx.sessions,
        strategy,
        body.to_request(strategy),
        functools.partial(_response, full=full, status_code=201),
    )


@router.get(
    "",
    name="list",
    response_model=BacktestList,
    summary="Stored backtests, newest first",
    responses=error_responses(401, 422),
)
def list_backtests(
    ctx: Ctx,
    limit: Limit = 50,
    offset: Offset = 0,
    symbol: Annotated[str | None, Query(pattern=SYMBOL_PATTERN, examples=["BTCUSDT"])] = None,
    interval: Interval | None = None,
    strategy: Annotated[str | None, Query(max_length=100, description="A built-in's name.")] = None,
    strategy_id: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="A saved strategy.")] = None,
    sort: Sort = "newest",
) -> BacktestList:
    rows, total = service.list_stored(
        ctx.sessions,
        limit,
        offset,
        symbol=symbol,
        interval=interval,
        strategy=strategy,
        strategy_id=strategy_id,
        newest_first=sort == "newest",
    )
    return BacktestList(
        total=total,
        limit=limit,
        offset=offset,
        backtests=[_summary(r) for r in rows],
    )


@router.post(
    "/sweep",
    name="sweep",
    response_model=SweepResponse,
    summary="Run a parameter grid, ranked by a metric",
    responses=error_responses(400, 401, 404, 409, 422, 502, 503),
)
def post_sweep(ctx: Ctx, body: SweepBody) -> SweepResponse:
    if not isinstance(body.strategy, str):
        raise InvalidInput(
            "Sweeps vary a built-in strategy's parameters; give its name.", details={"field": "strategy"}
        )
    rows, source, n_bars = service.sweep(
        ctx.market,
        ctx.compute,
        # Picklable (a module-level function and a name): each worker process resolves its combinations.
        functools.partial(strategy_registry.resolve, body.strategy),
        body.params,
        body.grid,
        body.to_request(),
        body.rank_by,
    )
    results = [
        SweepResult(
            rank=i + 1 if row.metrics is not None else None,
            params=row.params,
            metrics=MetricsOut(**row.metrics) if row.metrics is not None else None,
            error=row.error,
        )
        for i, row in enumerate(rows)
    ]
    return SweepResponse(
        strategy=body.strategy,
        rank_by=body.rank_by,
        combinations=len(rows),
        source=source,
        n_bars=n_bars,
        results=results,
    )


@router.get(
    "/{backtest_id}",
    name="get",
    response_model=BacktestResponse,
    summary="One stored backtest",
    responses=error_responses(401, 404, 422),
)
def get_backtest(
    ctx: Ctx, backtest_id: Annotated[str, Path(max_length=64)], full: FullQuery = False
) -> Response:
    return _response(service.get_stored(ctx.sessions, backtest_id), full)


@router.get(
    "/{backtest_id}/report",
    name="report",
    response_class=HTMLResponse,
    summary="One stored backtest as an HTML report",
    description="Candles with volume, the strategy's indicators, entries and exits with their reasons, "
    "equity against buy and hold with the drawdown, the metrics with their definitions and the trade "
    "list; the data source is named on the page (a sample-data report says so in its title). "
    "Self-contained and offline: open it in a browser, or embed it in an iframe (see the README).",
    responses=html_responses("The report", 401, 404, 422),
)
def get_backtest_report(ctx: Ctx, backtest_id: Annotated[str, Path(max_length=64)]) -> HTMLResponse:
    page = report.backtest_report_html(
        ctx.sessions, ctx.market.store, ctx.strategies, backtest_id, ctx.clock()
    )
    return html_page(ctx, page)
