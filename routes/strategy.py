"""Strategy endpoints: list, save, read, update, delete, validate, blocks (to spec, palette), the schema."""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictFloat, StrictInt, StrictStr
from typing_extensions import TypeAliasType

import strategy_registry
from backtester.optimize import service as optimize_service
from routes.common import Ctx, Limit, Offset, error_responses
from routes.schemas.json_schema import JsonSchemaDocument
from routes.schemas.values import EpochMs, SpecIn
from strategy_engine import service
from strategy_engine.blocks_palette import BlocksPalette, palette
from strategy_engine.json_strategy_parser import MAX_EDGES, MAX_NODES
from strategy_engine.spec import StrategySpec, json_schema, validate_spec
from strategy_engine.store import SavedStrategy
from strategy_engine.strategy_health import OptimisationNote
from utils.errors import Conflict, InvalidInput
from utils.intervals import Interval
from utils.market_data.candles import DataSource
from utils.settings import PROJECT_ROOT

router = APIRouter(prefix="/api/strategies", tags=["strategies"])

_EXAMPLES = PROJECT_ROOT / "storage" / "strategies" / "examples"


def _shipped_values(kind: str) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(_EXAMPLES.glob(f"*.{kind}.json"))]


def _shipped(kind: str) -> dict[str, dict[str, Any]]:
    """The shipped example strategies (``storage/strategies/examples/*.<kind>.json``) as OpenAPI
    examples, so "Try it out" starts from a working body."""
    return {
        path.name.split(".")[0]: {"summary": path.name.split(".")[0], "value": json.loads(path.read_text())}
        for path in sorted(_EXAMPLES.glob(f"*.{kind}.json"))
    }


IdPath = Annotated[int, Path(ge=1, le=2**31 - 1, description="A saved strategy's id.")]
# Validated by strategy_engine.spec, documented as StrategySpec (see SpecIn).
SpecBody = Annotated[
    SpecIn,
    Body(
        description="A canonical strategy spec; see GET /api/strategies/schema.",
        openapi_examples=_shipped("spec"),
    ),
]


class FindingOut(BaseModel):
    severity: Literal["error", "warning", "info"]
    code: str
    message: str
    path: str | None = Field(description="The spec node it is about (dotted, e.g. entry.all[0]), if any.")
    node_ids: list[str] = Field(
        default_factory=list,
        description="For a strategy built from blocks (POST /api/strategies/from-blocks): the ids of the "
        "blocks `path` came from (for entry/exit: the root block, then the block wired into it); empty for "
        "specs written as JSON and findings about no node.",
    )


class SplitMetricsOut(BaseModel):
    bars: int
    n_trades: int
    total_return: float | None
    cagr: float | None
    sharpe: float | None
    sortino: float | None
    max_drawdown: float | None
    win_rate: float | None
    profit_factor: float | None
    exposure: float | None
    buy_and_hold_return: float | None


class HealthMetricsOut(BaseModel):
    """What the health check measured; absent when it stopped early (an invalid spec, too few bars)."""

    bars: int | None = None
    warmup: int | None = None
    first_open_time: EpochMs | None = None
    last_open_time: EpochMs | None = None
    lookahead_prefixes: list[int] | None = Field(
        default=None, description="Prefix lengths re-evaluated to prove no signal used later candles."
    )
    entry_bars: int | None = None
    exit_bars: int | None = None
    n_trades: int | None = None
    total_return: float | None = None
    cagr: float | None = None
    sharpe: float | None = None
    sortino: float | None = None
    max_drawdown: float | None = None
    win_rate: float | None = None
    profit_factor: float | None = None
    exposure: float | None = None
    buy_and_hold_return: float | None = None
    final_equity: float | None = None
    open_trade: bool | None = None
    in_sample: SplitMetricsOut | None = None
    out_of_sample: SplitMetricsOut | None = None
    split_open_time: EpochMs | None = None


class HealthDataOut(BaseModel):
    source: DataSource
    bars: int


class OptimisationNoteOut(BaseModel):
    """What the optimisation a strategy was saved from (POST /api/strategies/from-optimization) said."""

    optimization_id: str
    verdict: Literal["credible", "doubtful", "likely_overfit"]
    reasons: list[str]
    n_trials: int
    dsr: float | None = Field(description="Deflated Sharpe ratio of the winner, given every trial.")
    pbo: float | None = Field(description="Probability of backtest overfitting (CSCV).")


class HealthOut(BaseModel):
    score: int = Field(ge=0, le=100, description="0 with any error; see strategy_engine/strategy_health.py.")
    can_activate: bool = Field(description="False when any finding is an error.")
    findings: list[FindingOut]
    metrics: HealthMetricsOut
    data: HealthDataOut | None = Field(default=None, description="Which candles the health was measured on.")
    optimisation: OptimisationNoteOut | None = Field(
        default=None, description="Set for a strategy saved from an optimisation: its verdict counts here."
    )


class FromOptimizationBody(BaseModel):
    optimization_id: str = Field(pattern=r"^[0-9a-f]{32}$", examples=["0123456789abcdef0123456789abcdef"])
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description='Default: the strategy\'s name + " (optimised)".',
    )

    model_config = {
        "json_schema_extra": {"examples": [{"optimization_id": "0123456789abcdef0123456789abcdef"}]}
    }


class ParameterOut(BaseModel):
    name: str
    type: str = Field(examples=["int"])
    default: float | int | str | bool | None


class StrategyListItem(BaseModel):
    name: str
    kind: Literal["builtin", "saved"]
    description: str
    parameters: list[ParameterOut]
    id: int | None
    symbol: str | None
    interval: Interval | None
    version: int | None
    health_score: int | None
    can_activate: bool | None


def _as_spec(value: object) -> object:
    # A spec document (a stored file, a converter's output) read as specs are: its {"param": name}
    # references resolved to their defaults and kept, so they serialise back where they stood.
    return validate_spec(value) if isinstance(value, Mapping) else value


# A spec in a response: the StrategySpec, serialised in its canonical form (references included).
SpecOut = Annotated[StrategySpec, BeforeValidator(_as_spec)]


class SavedOut(BaseModel):
    id: int
    name: str
    slug: str
    symbol: str
    interval: Interval
    version: int = Field(description="The version shown.")
    latest_version: int
    created_at: EpochMs
    updated_at: EpochMs
    spec: SpecOut
    health: HealthOut | None


class CheckedOut(BaseModel):
    spec: SpecOut
    health: HealthOut


class StrategyList(BaseModel):
    total: int
    limit: int
    offset: int
    strategies: list[StrategyListItem]


# A block's setting: a number, a name, a flag, or settings of their own (an indicator's params, a
# reference to a tunable parameter as {"param": name}).
BlockValue = TypeAliasType(
    "BlockValue", "str | int | float | bool | None | list[BlockValue] | dict[str, BlockValue]"
)


class ParamRefIn(BaseModel):
    """A setting given by a tunable parameter of the strategy (declared in `parameters`)."""

    model_config = ConfigDict(extra="forbid")

    param: str


# A stop or the position size: a fraction, or a tunable parameter's name. Strict: the spec's own
# validation judges the value as sent ("0.03" or true is refused there, never converted here).
StopIn = StrictFloat | StrictInt | ParamRefIn | None


class BlockMetaIn(BaseModel):
    """A graph's strategy settings. Each is optional here so that the spec's own validation reports a
    missing one by its path (`meta.name`), as it reports keys that are none of these."""

    model_config = ConfigDict(extra="allow")

    name: StrictStr | None = None
    description: StrictStr | None = None
    symbol: StrictStr | None = None
    interval: StrictStr | None = None
    stop_loss: StopIn = None
    take_profit: StopIn = None
    trailing_stop: StopIn = None
    position_size: StopIn = None
    parameters: dict[str, BlockValue] | None = Field(
        default=None, description="Tunable parameters, as in a spec."
    )


class BlockNodeIn(BaseModel):
    """A block: its id, its type (GET /api/strategies/blocks lists them) and its settings. An editor's own
    fields (position, selection) may ride along; they are ignored."""

    model_config = ConfigDict(extra="allow")

    id: str
    type: str
    data: dict[str, BlockValue] | None = None


class BlockEdgeIn(BaseModel):
    """A connection from one block's output into another's input handle."""

    model_config = ConfigDict(extra="allow")

    source: str
    target: str
    target_handle: str | None = Field(default=None, alias="targetHandle")
    source_handle: str | None = Field(default=None, alias="sourceHandle")


class BlockGraph(BaseModel):
    meta: BlockMetaIn = Field(description="name, symbol, interval and optional stops/position size.")
    nodes: list[BlockNodeIn] = Field(max_length=MAX_NODES)
    edges: list[BlockEdgeIn] = Field(max_length=MAX_EDGES)

    def to_graph(self) -> dict[str, Any]:
        """The graph as the converter reads it: what the client sent (by its own key names), no defaults."""
        return self.model_dump(by_alias=True, exclude_unset=True)

    model_config = {"extra": "allow", "json_schema_extra": {"examples": list(_shipped_values("blocks"))}}


def _saved_out(saved: SavedStrategy) -> SavedOut:
    return SavedOut.model_validate(
        {
            "id": saved.id,
            "name": saved.name,
            "slug": saved.slug,
            "symbol": saved.symbol,
            "interval": saved.interval,
            "version": saved.version,
            "latest_version": saved.latest_version,
            "created_at": saved.created_at,
            "updated_at": saved.updated_at,
            "spec": saved.spec,
            "health": saved.health,
        }
    )


def _checked_out(checked: service.Checked) -> CheckedOut:
    return CheckedOut.model_validate({"spec": checked.spec, "health": checked.health})


@router.get(
    "/schema",
    name="schema",
    response_model=JsonSchemaDocument,
    response_model_exclude_unset=True,
    response_model_by_alias=True,
    summary="JSON Schema (draft 2020-12) of the canonical strategy spec, with the indicator catalogue",
    responses=error_responses(401),
)
def get_schema() -> JsonSchemaDocument:
    return JsonSchemaDocument.model_validate(json_schema())


@router.get(
    "",
    name="list",
    response_model=StrategyList,
    summary="Built-in and saved strategies, with health",
    responses=error_responses(401, 422),
)
def list_strategies(ctx: Ctx, limit: Limit = 100, offset: Offset = 0) -> StrategyList:
    infos = strategy_registry.list_strategies(ctx.strategies)
    page = [
        StrategyListItem.model_validate(info, from_attributes=True) for info in infos[offset : offset + limit]
    ]
    return StrategyList(total=len(infos), limit=limit, offset=offset, strategies=page)


@router.post(
    "",
    name="create",
    response_model=SavedOut,
    status_code=201,
    summary="Save a strategy (health measured on save)",
    responses=error_responses(400, 401, 409, 413, 422),
)
def create_strategy(ctx: Ctx, spec: SpecBody) -> SavedOut:
    saved, _ = service.save(ctx.strategies, ctx.market, spec)
    return _saved_out(saved)


@router.post(
    "/from-optimization",
    name="from_optimization",
    response_model=SavedOut,
    status_code=201,
    summary="Save the winner of an optimisation of a JSON strategy",
    description="The strategy's spec with the winning values in place of its tunable parameters (in "
    "walk-forward: the last window's winner), saved as a new strategy. Its health report carries the "
    "optimisation's verdict (deflated Sharpe ratio, probability of overfitting, trials) as a finding.",
    responses=error_responses(401, 404, 409, 422),
)
def from_optimization(ctx: Ctx, body: FromOptimizationBody) -> SavedOut:
    run = optimize_service.get(ctx.sessions, body.optimization_id)
    if run.strategy_kind == "builtin":
        raise InvalidInput(
            "A built-in strategy's winner is a set of parameters, not a JSON strategy: backtest it "
            "with them.",
            details={"field": "optimization_id"},
        )
    winner = run.result.get("winner")
    if winner is None:
        raise Conflict("This optimisation found no trial that met its constraints.", code="conflict")
    request = optimize_service.OptimizeRequest.from_dict(run.request)
    # The version that was optimised (runs from before versions were pinned: the one stored with it).
    version = request.strategy_version or run.strategy_version
    prepared = strategy_registry.recipe_for(request.strategy, None, None, ctx.strategies, version=version)
    assert prepared.recipe.spec is not None
    concrete = validate_spec(prepared.recipe.spec).bind(winner["values"]).to_dict()
    concrete["name"] = body.name or f"{concrete['name'][:88]} (optimised)"
    # One search's statistics; in walk-forward, the median over the windows (as its verdict used), each
    # window's DSR deflated for that window's trials.
    windows = (run.result.get("walk_forward") or {}).get("windows") or []
    every = [w["statistics"] for w in windows] if windows else [run.result["statistics"]]
    n_trials = round(statistics.median(w["trials"] for w in windows)) if windows else run.result["n_trials"]
    dsrs = [
        s["deflated_sharpe"]["dsr"] for s in every if (s.get("deflated_sharpe") or {}).get("dsr") is not None
    ]
    pbos = [s["pbo"]["pbo"] for s in every if s.get("pbo")]
    note = OptimisationNote(
        run.id,
        run.result["verdict"]["level"],
        tuple(run.result["verdict"]["reasons"]),
        int(n_trials),
        statistics.median(dsrs) if dsrs else None,
        statistics.median(pbos) if pbos else None,
    )
    return _saved_out(service.save_optimised(ctx.strategies, ctx.market, concrete, note))


@router.post(
    "/validate",
    name="validate",
    response_model=CheckedOut,
    summary="Health report without saving",
    responses=error_responses(400, 401, 413, 422),
)
def validate_strategy(ctx: Ctx, spec: SpecBody) -> CheckedOut:
    return _checked_out(service.check_spec(ctx.market, spec))


@router.post(
    "/from-blocks",
    name="from_blocks",
    response_model=CheckedOut,
    summary="Dashboard block graph to spec, with health",
    responses=error_responses(400, 401, 413, 422),
)
def from_blocks(ctx: Ctx, graph: BlockGraph) -> CheckedOut:
    return _checked_out(service.check_blocks(ctx.market, graph.to_graph()))


@router.post(
    "/from-blocks/save",
    name="save_from_blocks",
    response_model=SavedOut,
    status_code=201,
    summary="Save a dashboard block graph as a strategy (health names its blocks)",
    responses=error_responses(400, 401, 409, 413, 422),
)
def save_from_blocks(ctx: Ctx, graph: BlockGraph) -> SavedOut:
    return _saved_out(service.save_blocks(ctx.strategies, ctx.market, graph.to_graph()))


def _palette_example() -> dict[str, object]:
    """The real palette, cut to a few entries of each list so the example stays readable (without its
    nulls, which the OpenAPI document drops anyway)."""
    whole = palette().model_dump(mode="json", exclude_none=True)
    return {key: value[:3] if isinstance(value, list) else value for key, value in whole.items()}


# Declared before /{strategy_id}, which would otherwise take "blocks" for an id (and answer 422).
@router.get(
    "/blocks",
    name="blocks",
    response_model=BlocksPalette,
    summary="The block palette of the strategy editor: block types, handles, connections, indicators",
    description="Derived from the code that converts block graphs (POST /api/strategies/from-blocks) and "
    "from the indicator library, so a graph built from it converts.",
    responses={
        200: {"content": {"application/json": {"example": _palette_example()}}},
        **error_responses(401),
    },
)
def get_blocks() -> BlocksPalette:
    return palette()


@router.get(
    "/{strategy_id}",
    name="get",
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
    name="update",
    response_model=SavedOut,
    summary="Save a new version",
    responses=error_responses(400, 401, 404, 413, 422),
)
def update_strategy(ctx: Ctx, strategy_id: IdPath, spec: SpecBody) -> SavedOut:
    saved, _ = service.update(ctx.strategies, ctx.market, strategy_id, spec)
    return _saved_out(saved)


@router.delete(
    "/{strategy_id}",
    name="delete",
    status_code=204,
    summary="Delete a strategy and all its versions",
    responses=error_responses(401, 404, 422),
)
def delete_strategy(ctx: Ctx, strategy_id: IdPath) -> Response:
    ctx.strategies.delete(strategy_id)
    return Response(status_code=204)
