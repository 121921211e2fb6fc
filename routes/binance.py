"""Market data endpoints: candles, prices, symbols, sync and CSV import (/api/binance)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Literal

from fastapi import APIRouter, Query, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from db.models import Job
from routes.common import Ctx, IntervalQuery, Symbol, SymbolQuery, error_responses, parse_time
from routes.schemas.jobs import GapOut, JobOut, job_out
from routes.schemas.values import DecimalStr, EpochMs
from strategy_engine import indicator_series
from utils.exchange import SymbolFilters
from utils.intervals import Interval, as_interval
from utils.market_data.candles import DataSource, Gap
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
    interval: Interval = Field(examples=["1h"])
    source: DataSource = Field(
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
    source: DataSource
    stale: bool
    as_of: EpochMs | None = Field(
        description="Open time of the candle whose close is the price, when not a live ticker."
    )


class SymbolOut(BaseModel):
    symbol: str
    status: str
    base_asset: str
    quote_asset: str
    tick_size: DecimalStr = Field(description="PRICE_FILTER tickSize.")
    step_size: DecimalStr = Field(description="LOT_SIZE stepSize.")
    min_qty: DecimalStr = Field(description="LOT_SIZE minQty.")
    max_qty: DecimalStr = Field(description="LOT_SIZE maxQty.")
    min_notional: DecimalStr = Field(description="NOTIONAL / MIN_NOTIONAL minNotional.")


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
    interval: Interval
    start: int
    end: int
    added: int = Field(description="Candles that were not stored before.")
    requests: int = Field(description="Requests sent to Binance.")
    stored: int = Field(description="Candles now stored in the range.")
    gaps: list[GapOut]


class ImportResponse(BaseModel):
    symbol: str
    interval: Interval
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
    # The upload stays spooled on disk until the import's turn: waiting uploads hold no memory.
    report = ctx.market.import_csv(symbol, interval, file.file, file.filename or "upload.csv")
    return ImportResponse(**{**asdict(report), "gaps": _gaps(report.gaps)})


# --- /api/indicators -------------------------------------------------------------------------------


class IndicatorOutputSeries(BaseModel):
    name: str = Field(
        description="The output: for a multi-output indicator the spec operand's `output` (macd, signal, "
        "hist; upper, middle, lower; ...), for a single-output one `value`.",
        examples=["macd"],
    )
    values: list[float | None] = Field(
        description="One value per entry of `times`; null only where the indicator has no value yet "
        "(fewer than `warmup` candles are stored before that bar)."
    )


class IndicatorsResponse(BaseModel):
    """An indicator over a candles window: `times[i]` is a candle's open time and `series[k].values[i]`
    the k-th output on that candle (zip them for a chart: one line per series)."""

    symbol: str = Field(examples=["BTCUSDT"])
    interval: Interval = Field(examples=["1h"])
    source: DataSource = Field(description="Where the candles come from, as for /api/binance/candles.")
    stale: bool = Field(description="True when Binance was unreachable and stored candles were used.")
    indicator: str = Field(description="The indicator's name.", examples=["macd"])
    params: dict[str, int | float] = Field(
        description="Its parameters, defaults filled in: what a strategy operand with these params uses.",
        examples=[{"fast": 12, "slow": 26, "signal": 9}],
    )
    outputs: list[str] = Field(description="The names of `series`, in order.", examples=[["macd"]])
    warmup: int = Field(description="Bars an indicator needs before its first value (TA-Lib's lookback).")
    history_start_time: EpochMs | None = Field(
        description="Open time of the first stored candle the values were computed from: recursive "
        "indicators (EMA, RSI, ATR, ADX, MACD, OBV) depend on every earlier bar. Null with no candles."
    )
    count: int = Field(description="Candles in the window (the length of `times` and of every series).")
    times: list[EpochMs] = Field(description="Open time of each candle of the window, ascending.")
    series: list[IndicatorOutputSeries]

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "symbol": "BTCUSDT",
                    "interval": "1h",
                    "source": "sample",
                    "stale": False,
                    "indicator": "bollinger",
                    "params": {"period": 20, "k": 2.0},
                    "outputs": ["upper", "middle", "lower"],
                    "warmup": 19,
                    "history_start_time": 1672531200000,
                    "count": 2,
                    "times": [1735686000000, 1735689600000],
                    "series": [
                        {"name": "upper", "values": [43120.5, 43188.1]},
                        {"name": "middle", "values": [42710.2, 42755.9]},
                        {"name": "lower", "values": [42299.9, 42323.7]},
                    ],
                }
            ]
        }
    }


IndicatorName = Annotated[
    str,
    Query(
        max_length=40,
        description="An indicator of the strategy engine's library (GET /api/strategies/blocks lists "
        "each with its parameters and outputs).",
        json_schema_extra={"enum": list(indicator_series.INDICATOR_NAMES)},
        examples=["rsi"],
    ),
]
ParamsQuery = Annotated[
    str | None,
    Query(
        max_length=indicator_series.MAX_PARAMS_TEXT,
        description='A JSON object of parameters (URL-encoded), e.g. {"period": 14}; omitted ones take '
        "their defaults. It is parsed as JSON data, never evaluated.",
        examples=['{"period": 14}'],
    ),
]


@indicators.get(
    "/indicators",
    name="indicators",
    response_model=IndicatorsResponse,
    summary="An indicator's series over a candles window, as strategies compute it",
    description="The window is the one /api/binance/candles answers for the same symbol, interval, limit, "
    "start and end. Values come from the strategies' indicator library over the stored series up to the "
    "window's last candle: a value at a candle uses candles up to it only, and the warm-up before the "
    "window is read (and synced, online) first, so the first value equals what a strategy sees there.",
    responses=error_responses(401, 404, 409, 422, 502, 503),
)
def get_indicators(
    ctx: Ctx,
    symbol: SymbolQuery,
    interval: IntervalQuery,
    name: IndicatorName,
    params: ParamsQuery = None,
    limit: Annotated[int, Query(ge=1, le=5000, description="At most 5000.")] = 500,
    start: Annotated[str | None, Query(description="Epoch ms or ISO-8601; first candles from here.")] = None,
    end: Annotated[str | None, Query(description="Epoch ms or ISO-8601; latest candles up to here.")] = None,
) -> IndicatorsResponse:
    answer = indicator_series.indicator_series(
        ctx.market,
        symbol,
        interval,
        name,
        indicator_series.parse_params(params),
        limit=limit,
        start_ms=parse_time(start, "start"),
        end_ms=parse_time(end, "end"),
    )
    return IndicatorsResponse(
        symbol=answer.symbol,
        interval=as_interval(answer.interval),
        source=answer.source,
        stale=answer.stale,
        indicator=answer.indicator,
        params=answer.params,
        outputs=[s.name for s in answer.series],
        warmup=answer.warmup,
        history_start_time=answer.history_start_time,
        count=len(answer.times),
        times=answer.times,
        series=[IndicatorOutputSeries(name=s.name, values=s.values) for s in answer.series],
    )
