"""Market data endpoints: candles, prices, symbols, sync and CSV import (/api/binance)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Literal

from fastapi import APIRouter, Query, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from db.models import Job
from routes.common import Ctx, Interval, IntervalQuery, Symbol, SymbolQuery, error_responses, parse_time
from routes.schemas.jobs import GapOut, JobOut, job_out
from utils.exchange import SymbolFilters
from utils.market_data.candles import Gap
from utils.market_data.market import request_sync

router = APIRouter(prefix="/api/binance", tags=["market data"])
# Series computed over the candles (/api/indicators): market data a chart draws beside the candles.
indicators = APIRouter(prefix="/api", tags=["market data"])


class CandleOut(BaseModel):
    open_time: int = Field(description="Candle open time, epoch milliseconds UTC.", examples=[1704067200000])
    open: float
    high: float
    low: float
    close: float
    volume: float = Field(description="Volume in the base asset.")


class CandlesResponse(BaseModel):
    symbol: str = Field(examples=["BTCUSDT"])
    interval: str = Field(examples=["1h"])
    source: Literal["binance", "cache", "file", "sample"] = Field(
        description="binance: fetched now; cache: stored from Binance; file: imported CSV; "
        "sample: generated synthetic data (never real)."
    )
    stale: bool = Field(description="True when Binance was unreachable and stored candles were served.")
    count: int
    gaps: list[GapOut]
    candles: list[CandleOut]


class PriceResponse(BaseModel):
    symbol: str
    price: float
    source: Literal["binance", "cache", "file", "sample"]
    stale: bool
    as_of: int | None = Field(
        description="Open time of the candle whose close is the price, when not a live ticker."
    )


class SymbolOut(BaseModel):
    symbol: str
    status: str
    base_asset: str
    quote_asset: str
    tick_size: str = Field(description="PRICE_FILTER tickSize (decimal string).")
    step_size: str = Field(description="LOT_SIZE stepSize (decimal string).")
    min_qty: str
    max_qty: str
    min_notional: str = Field(description="NOTIONAL / MIN_NOTIONAL minNotional (decimal string).")


class SymbolsResponse(BaseModel):
    source: Literal["binance", "cache", "sample"]
    stale: bool
    count: int
    symbols: list[SymbolOut]


class SyncRequest(BaseModel):
    symbol: Symbol
    interval: Interval
    start: int | str = Field(description="Epoch ms or ISO-8601.", examples=["2024-01-01T00:00:00Z"])
    end: int | str | None = Field(default=None, description="Epoch ms or ISO-8601; default now.")

    model_config = {
        "json_schema_extra": {
            "examples": [{"symbol": "BTCUSDT", "interval": "1h", "start": "2024-01-01", "end": "2024-02-01"}]
        }
    }


class SyncResponse(BaseModel):
    symbol: str
    interval: str
    start: int
    end: int
    added: int = Field(description="Candles that were not stored before.")
    requests: int = Field(description="Requests sent to Binance.")
    stored: int = Field(description="Candles now stored in the range.")
    gaps: list[GapOut]


class ImportResponse(BaseModel):
    symbol: str
    interval: str
    layout: Literal["binance", "plain"]
    rows: int
    added: int
    first_open_time: int
    last_open_time: int
    gaps: list[GapOut]


def _gaps(gaps: list[Gap]) -> list[GapOut]:
    return [GapOut(**asdict(g)) for g in gaps]


def _symbol_out(f: SymbolFilters) -> SymbolOut:
    return SymbolOut(**asdict(f))


@router.get(
    "/candles",
    name="candles",
    response_model=CandlesResponse,
    summary="Closed candles, ascending",
    responses=error_responses(401, 404, 422, 502, 503),
)
def get_candles(
    ctx: Ctx,
    symbol: SymbolQuery,
    interval: IntervalQuery,
    limit: Annotated[int, Query(ge=1, le=5000, description="At most 5000.")] = 500,
    start: Annotated[str | None, Query(description="Epoch ms or ISO-8601; first candles from here.")] = None,
    end: Annotated[str | None, Query(description="Epoch ms or ISO-8601; latest candles up to here.")] = None,
) -> CandlesResponse:
    answer = ctx.market.candles(
        symbol, interval, limit=limit, start_ms=parse_time(start, "start"), end_ms=parse_time(end, "end")
    )
    c = answer.candles
    rows = zip(
        c.open_time.tolist(),
        c.open.tolist(),
        c.high.tolist(),
        c.low.tolist(),
        c.close.tolist(),
        c.volume.tolist(),
        strict=True,
    )
    return CandlesResponse(
        symbol=symbol,
        interval=interval,
        source=answer.source,
        stale=answer.stale,
        count=len(c),
        gaps=_gaps(answer.gaps),
        candles=[
            CandleOut(open_time=t, open=o, high=h, low=lo, close=cl, volume=v) for t, o, h, lo, cl, v in rows
        ],
    )


@router.get(
    "/price",
    name="price",
    response_model=PriceResponse,
    summary="Latest price",
    responses=error_responses(401, 404, 422, 503),
)
def get_price(ctx: Ctx, symbol: SymbolQuery) -> PriceResponse:
    answer = ctx.market.price(symbol)
    return PriceResponse(**asdict(answer))


@router.get(
    "/symbols",
    name="symbols",
    response_model=SymbolsResponse,
    summary="Tradable symbols and filters",
    responses=error_responses(401),
)
def get_symbols(ctx: Ctx) -> SymbolsResponse:
    answer = ctx.market.symbols()
    return SymbolsResponse(
        source=answer.source,
        stale=answer.stale,
        count=len(answer.symbols),
        symbols=[_symbol_out(f) for f in answer.symbols],
    )


@router.post(
    "/sync",
    name="sync",
    response_model=SyncResponse,
    summary="Download a range into the local store",
    description="Small ranges answer at once; large ones answer 202 with a job to poll at /api/jobs/{id}.",
    responses={
        202: {"model": JobOut, "description": "Started as a background job"},
        **error_responses(400, 401, 404, 409, 422, 502, 503),
    },
)
def post_sync(ctx: Ctx, body: SyncRequest) -> SyncResponse | JSONResponse:
    start = parse_time(str(body.start), "start")
    end = parse_time(str(body.end), "end") if body.end is not None else None
    outcome = request_sync(
        ctx.market,
        ctx.jobs,
        body.symbol,
        body.interval,
        start or 0,
        end,
        ctx.settings.sync_inline_max_candles,
    )
    if isinstance(outcome, Job):
        return JSONResponse(status_code=202, content=job_out(outcome).model_dump(mode="json"))
    return SyncResponse(**{**asdict(outcome), "gaps": _gaps(outcome.gaps)})


@router.post(
    "/import",
    name="import",
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "examples": {
                        "binance_csv": {
                            "summary": "A Binance kline CSV (data.binance.vision layout)",
                            "value": {"file": "BTCUSDT-1h-2024-01.csv"},
                        }
                    }
                }
            }
        }
    },
    response_model=ImportResponse,
    status_code=201,
    summary="Import a kline CSV (Binance public-data or timestamp,open,high,low,close,volume)",
    responses=error_responses(400, 401, 413, 422),
)
def post_import(
    ctx: Ctx,
    symbol: SymbolQuery,
    interval: IntervalQuery,
    file: UploadFile,
) -> ImportResponse:
    data = file.file.read()
    report = ctx.market.import_csv(symbol, interval, data, file.filename or "upload.csv")
    return ImportResponse(**{**asdict(report), "gaps": _gaps(report.gaps)})
