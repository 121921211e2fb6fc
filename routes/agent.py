"""Agent endpoints: list, register, train (a job), predict, model history and activation (/api/agents)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Literal

from fastapi import APIRouter, Path
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from agents import model_report
from agents.generic_agent import AgentConfig, AgentKind
from agents.service import AgentView
from ml_engine.feature_extractor import FeatureSetName
from routes.common import Ctx, Limit, Offset, Symbol, error_responses
from routes.html import html_page, html_responses
from routes.schemas.agents import ModelMetricsOut
from routes.schemas.jobs import JobOut, job_out
from routes.schemas.values import EpochMs
from utils.intervals import Interval
from utils.market_data.candles import DataSource
from utils.symbols import SYMBOL_PATTERN

router = APIRouter(prefix="/api/agents", tags=["agents"])

SymbolPath = Annotated[str, Path(pattern=SYMBOL_PATTERN, examples=["BTCUSDT"])]
VersionPath = Annotated[str, Path(pattern=r"^[0-9]{8}T[0-9]{12}Z$", examples=["20261127T120000000000Z"])]


class AgentOut(BaseModel):
    symbol: str
    kind: AgentKind = Field(description="Which defaults it started from: btc, eth or generic.")
    interval: Interval
    horizon: int = Field(description="Bars ahead the model predicts.")
    feature_set: str
    buy_threshold: float
    sell_threshold: float
    max_model_age_hours: float
    active: bool
    active_version: str | None
    trained_at: EpochMs | None
    metrics: ModelMetricsOut | None = Field(description="Out-of-sample metrics of the active model.")
    stale: bool
    stale_reason: str | None


class AgentCreate(BaseModel):
    symbol: Symbol
    interval: Interval = "1h"
    horizon: int = Field(default=4, ge=1, le=500)
    feature_set: FeatureSetName = "default"
    buy_threshold: float = Field(default=0.55, gt=0.5, lt=1)
    sell_threshold: float = Field(default=0.45, gt=0, lt=0.5)
    max_model_age_hours: float | None = Field(default=None, gt=0, le=24 * 365)
    train_bars: int = Field(default=20_000, ge=500, le=200_000)
    candidates: list[Literal["logreg", "random_forest", "hist_gb"]] = Field(
        default=["logreg", "random_forest", "hist_gb"], min_length=1, max_length=3
    )

    model_config = {
        "json_schema_extra": {"examples": [{"symbol": "SOLUSDT", "interval": "1h", "horizon": 4}]}
    }


class FeatureOut(BaseModel):
    name: str
    value: float
    contribution: float = Field(description="P(up) minus P(up) with this feature at its training mean.")


class PredictionOut(BaseModel):
    symbol: str
    interval: Interval
    horizon: int
    action: Literal["buy", "sell", "hold"]
    prob_up: float
    confidence: float = Field(description="|2 * prob_up - 1|.")
    expected_return: float = Field(description="Over the horizon, fraction.")
    model_version: str
    as_of: EpochMs = Field(description="Open time (ms) of the last closed candle used.")
    stale: bool
    stale_reason: str | None
    top_features: list[FeatureOut]
    source: DataSource = Field(description="Where the candles came from.")
    data_stale: bool = Field(description="Binance was unreachable; stored candles were used.")


class ModelOut(BaseModel):
    version: str
    interval: Interval
    horizon: int
    trained_at: EpochMs
    sha256: str
    active: bool
    metrics: ModelMetricsOut


class AgentList(BaseModel):
    total: int
    limit: int
    offset: int
    agents: list[AgentOut]


class ModelList(BaseModel):
    symbol: str
    total: int
    limit: int
    offset: int
    models: list[ModelOut]


def _agent_out(view: AgentView) -> AgentOut:
    c = view.config
    return AgentOut.model_validate(
        {
            "symbol": c.symbol,
            "kind": c.kind,
            "interval": c.interval,
            "horizon": c.horizon,
            "feature_set": c.feature_set,
            "buy_threshold": c.buy_threshold,
            "sell_threshold": c.sell_threshold,
            "max_model_age_hours": c.max_model_age_hours,
            "active": view.active,
            "active_version": view.active_version,
            "trained_at": view.trained_at,
            "metrics": view.metrics,
            "stale": view.stale,
            "stale_reason": view.stale_reason,
        }
    )


@router.get(
    "",
    name="list",
    response_model=AgentList,
    summary="Every agent with its active model",
    responses=error_responses(401, 422),
)
def list_agents(ctx: Ctx, limit: Limit = 100, offset: Offset = 0) -> AgentList:
    views = ctx.agents.views()
    page = views[offset : offset + limit]
    return AgentList(total=len(views), limit=limit, offset=offset, agents=[_agent_out(v) for v in page])


@router.post(
    "",
    name="create",
    response_model=AgentOut,
    status_code=201,
    summary="Register an agent for a new symbol",
    responses=error_responses(400, 401, 409, 422),
)
def create_agent(ctx: Ctx, body: AgentCreate) -> AgentOut:
    max_age = body.max_model_age_hours or ctx.settings.agent_max_model_age_hours
    config = AgentConfig(
        symbol=body.symbol,
        interval=body.interval,
        horizon=body.horizon,
        feature_set=body.feature_set,
        buy_threshold=body.buy_threshold,
        sell_threshold=body.sell_threshold,
        max_model_age_hours=max_age,
        train_bars=body.train_bars,
        candidates=tuple(body.candidates),
    )
    return _agent_out(ctx.agents.create(config))


@router.get(
    "/{symbol}",
    name="get",
    response_model=AgentOut,
    summary="One agent",
    responses=error_responses(401, 404, 422),
)
def get_agent(ctx: Ctx, symbol: SymbolPath) -> AgentOut:
    return _agent_out(ctx.agents.view(symbol))


class TrainManyBody(BaseModel):
    symbols: list[Symbol] = Field(
        min_length=1,
        max_length=50,
        description="Agents to train together.",
        examples=[["BTCUSDT", "ETHUSDT"]],
    )

    model_config = {"json_schema_extra": {"examples": [{"symbols": ["BTCUSDT", "ETHUSDT"]}]}}


@router.post(
    "/train",
    name="train_many",
    response_model=JobOut,
    status_code=202,
    summary="Train several agents in one background job",
    description="The fits run side by side on the compute backend (local worker processes, or the Dask "
    "cluster at COMPUTE_SCHEDULER); each model is then registered and activated. One job, one result per "
    "agent: an agent whose training fails keeps its previous model.",
    responses=error_responses(401, 404, 409, 422),
)
def train_agents(ctx: Ctx, body: TrainManyBody) -> JobOut:
    return job_out(ctx.agents.start_training_many(body.symbols))


@router.post(
    "/{symbol}/train",
    name="train",
    response_model=JobOut,
    status_code=202,
    summary="Train in the background",
    description="Returns a job; poll GET /api/jobs/{id} for progress and the out-of-sample report.",
    responses=error_responses(401, 404, 409, 422),
)
def train_agent(ctx: Ctx, symbol: SymbolPath) -> JobOut:
    return job_out(ctx.agents.start_training(symbol))


@router.get(
    "/{symbol}/predict",
    name="predict",
    response_model=PredictionOut,
    summary="Predict from the latest closed candle",
    responses=error_responses(401, 404, 409, 422, 502, 503),
)
def predict(ctx: Ctx, symbol: SymbolPath) -> PredictionOut:
    prediction = asdict(ctx.agents.predict(symbol))
    return PredictionOut(source=prediction.pop("data_source"), **prediction)


@router.get(
    "/{symbol}/models",
    name="list_models",
    response_model=ModelList,
    summary="Model history with metrics, newest first",
    responses=error_responses(401, 404, 422),
)
def list_models(ctx: Ctx, symbol: SymbolPath, limit: Limit = 100, offset: Offset = 0) -> ModelList:
    active = ctx.agents.record(symbol).active_version
    models = ctx.agents.models(symbol)
    page = [
        ModelOut.model_validate(
            {
                "version": m.version,
                "interval": m.interval,
                "horizon": m.horizon,
                "trained_at": m.trained_at,
                "sha256": m.sha256,
                "active": m.version == active,
                "metrics": m.metrics,
            }
        )
        for m in models[offset : offset + limit]
    ]
    return ModelList(symbol=symbol, total=len(models), limit=limit, offset=offset, models=page)


@router.post(
    "/{symbol}/models/{version}/activate",
    name="activate_model",
    response_model=AgentOut,
    summary="Make a model active",
    responses=error_responses(401, 404, 422),
)
def activate(ctx: Ctx, symbol: SymbolPath, version: VersionPath) -> AgentOut:
    return _agent_out(ctx.agents.activate(symbol, version))


@router.get(
    "/{symbol}/models/{version}/report",
    name="model_report",
    response_class=HTMLResponse,
    summary="One model version as an HTML report",
    description="Out-of-sample metrics pooled and per walk-forward fold, the calibration curve, permutation "
    "feature importances and the fee-aware out-of-sample backtest against buy and hold. Self-contained and "
    "offline: open it in a browser, or embed it in an iframe (see the README).",
    responses=html_responses("The report", 401, 404, 422),
)
def report(ctx: Ctx, symbol: SymbolPath, version: VersionPath) -> HTMLResponse:
    models_dir = ctx.settings.agents.models_dir
    return html_page(
        ctx, model_report.model_report_html(ctx.agents, models_dir, symbol, version, ctx.clock())
    )
