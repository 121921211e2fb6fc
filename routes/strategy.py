"""Strategy endpoints: list, save, read, update, delete, validate, blocks to spec, the schema."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field

import strategy_registry
from routes.common import Ctx, error_responses
from strategy_engine import service
from strategy_engine.spec import json_schema
from strategy_engine.store import SavedStrategy

router = APIRouter(prefix="/api/strategies", tags=["strategies"])

IdPath = Annotated[int, Path(ge=1, le=2**31 - 1, description="A saved strategy's id.")]
SpecBody = Annotated[
    dict[str, Any], Field(description="A canonical strategy spec; see GET /api/strategies/schema.")
]


class FindingOut(BaseModel):
    severity: Literal["error", "warning", "info"]
    code: str
    message: str
    path: str | None


class HealthOut(BaseModel):
    score: int = Field(ge=0, le=100, description="0 with any error; see strategy_engine/strategy_health.py.")
    can_activate: bool = Field(description="False when any finding is an error.")
    findings: list[FindingOut]
    metrics: dict[str, Any]
    data: dict[str, Any] | None = Field(default=None, description="Which candles the health was measured on.")


class StrategyListItem(BaseModel):
    name: str
    kind: Literal["builtin", "saved"]
    description: str
    parameters: list[dict[str, Any]]
    id: int | None
    symbol: str | None
    interval: str | None
    version: int | None
    health_score: int | None
    can_activate: bool | None


class SavedOut(BaseModel):
    id: int
    name: str
    slug: str
    symbol: str
    interval: str
    version: int = Field(description="The version shown.")
    latest_version: int
    created_at: datetime
    updated_at: datetime
    spec: dict[str, Any]
    health: HealthOut | None


class CheckedOut(BaseModel):
    spec: dict[str, Any]
    health: HealthOut


class BlockGraph(BaseModel):
    meta: dict[str, Any] = Field(description="name, symbol, interval and optional stops/position size.")
    nodes: list[dict[str, Any]] = Field(max_length=2000)
    edges: list[dict[str, Any]] = Field(max_length=4000)

    model_config = {"extra": "allow"}


def _saved_out(saved: SavedStrategy) -> SavedOut:
    return SavedOut(
        id=saved.id,
        name=saved.name,
        slug=saved.slug,
        symbol=saved.symbol,
        interval=saved.interval,
        version=saved.version,
        latest_version=saved.latest_version,
        created_at=saved.created_at,
        updated_at=saved.updated_at,
        spec=saved.spec,
        health=HealthOut(**saved.health) if saved.health is not None else None,
    )


def _checked_out(checked: service.Checked) -> CheckedOut:
    return CheckedOut(spec=checked.spec.to_dict(), health=HealthOut(**checked.health))


@router.get("/schema", summary="JSON Schema of the canonical strategy spec", responses=error_responses(401))
def get_schema() -> dict[str, Any]:
    return json_schema()


@router.get(
    "",
    response_model=list[StrategyListItem],
    summary="Built-in and saved strategies, with health",
    responses=error_responses(401),
)
def list_strategies(ctx: Ctx) -> list[StrategyListItem]:
    return [StrategyListItem(**vars_of(info)) for info in strategy_registry.list_strategies(ctx.strategies)]


def vars_of(info: strategy_registry.StrategyInfo) -> dict[str, Any]:
    return {name: getattr(info, name) for name in StrategyListItem.model_fields}


@router.post(
    "",
    response_model=SavedOut,
    status_code=201,
    summary="Save a strategy (health measured on save)",
    responses=error_responses(400, 401, 409, 413, 422),
)
def create_strategy(ctx: Ctx, spec: SpecBody) -> SavedOut:
    saved, _ = service.save(ctx.strategies, ctx.market, spec)
    return _saved_out(saved)


@router.post(
    "/validate",
    response_model=CheckedOut,
    summary="Health report without saving",
    responses=error_responses(400, 401, 413, 422),
)
def validate_strategy(ctx: Ctx, spec: SpecBody) -> CheckedOut:
    return _checked_out(service.check_spec(ctx.market, spec))


@router.post(
    "/from-blocks",
    response_model=CheckedOut,
    summary="Dashboard block graph to spec, with health",
    responses=error_responses(400, 401, 413, 422),
)
def from_blocks(ctx: Ctx, graph: BlockGraph) -> CheckedOut:
    return _checked_out(service.check_blocks(ctx.market, graph.model_dump()))


@router.get(
    "/{strategy_id}",
    response_model=SavedOut,
    summary="A saved strategy (any version)",
    responses=error_responses(401, 404, 422),
)
def get_strategy(
    ctx: Ctx, strategy_id: IdPath, version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None
) -> SavedOut:
    return _saved_out(ctx.strategies.get(strategy_id, version))


@router.put(
    "/{strategy_id}",
    response_model=SavedOut,
    summary="Save a new version",
    responses=error_responses(400, 401, 404, 413, 422),
)
def update_strategy(ctx: Ctx, strategy_id: IdPath, spec: SpecBody) -> SavedOut:
    saved, _ = service.update(ctx.strategies, ctx.market, strategy_id, spec)
    return _saved_out(saved)


@router.delete(
    "/{strategy_id}",
    status_code=204,
    summary="Delete a strategy and all its versions",
    responses=error_responses(401, 404, 422),
)
def delete_strategy(ctx: Ctx, strategy_id: IdPath) -> Response:
    ctx.strategies.delete(strategy_id)
    return Response(status_code=204)
