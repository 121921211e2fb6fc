"""The block palette: what a strategy editor may put in a block graph, derived from the code that reads one.

``palette()`` describes every block type of ``json_strategy_parser.BLOCK_TYPES`` (its data fields with
types, ranges and defaults, its input handles and the type each accepts, its output), every connection
those types allow, the graph's ``meta`` settings (from ``StrategySpec``'s own JSON Schema), the
indicator catalogue (from ``ml_engine.indicators.INDICATORS``) and the size limits. Everything that
decides whether a graph converts is read from those tables; the only hand-written parts are the data
fields each block type reads (``_DATA``), the indicators' cross-parameter rules (``_RULES``) and the
descriptions, and tests/strategy_engine/test_blocks_palette.py builds graphs from this description and
converts them (and pins one rule per registry check), so they cannot drift.

Conventions of a field's description (``PaletteField``): ``default`` is what a new block starts with
and, for a field that is not ``required``, what leaving it out means; ``depends_on`` names the field whose
value decides this one's options (an indicator block's ``params`` and ``output`` depend on its ``name``:
see that indicator in ``indicators``).
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, Field

from ml_engine.indicators import INDICATORS, IndicatorSpec, ParamSpec
from strategy_engine.json_strategy_parser import (
    BLOCK_TYPES,
    BOOLEAN,
    COMPARE_OPS,
    CROSS_DIRECTIONS,
    MAX_EDGES,
    MAX_NODES,
    META_FIELDS,
    NUMBER,
    PAIR_HANDLES,
    ROOT_COUNTS,
)
from strategy_engine.spec import (
    MAX_COMPARISONS,
    MAX_DEPTH,
    MAX_OFFSET,
    MAX_TUNABLES,
    PARAM_NAME_PATTERN,
    PRICE_FIELDS,
    STOP_PARAM_FIELDS,
    ChoiceTunable,
    FloatTunable,
    IntTunable,
    StrategySpec,
)

__all__ = [
    "BlocksPalette",
    "PaletteBlock",
    "PaletteConnection",
    "PaletteField",
    "PaletteHandle",
    "PaletteIndicator",
    "PaletteLimits",
    "PaletteRule",
    "PaletteTunable",
    "palette",
]

ValueType = Literal["string", "number", "integer", "params", "parameters"]
WireType = Literal["number", "boolean"]
Scalar = int | float | str | None
# The handle name suggested where the converter accepts any targetHandle (logic blocks and roots).
ANY_HANDLE = "in"


class PaletteField(BaseModel):
    """One field of a block's ``data``, of the graph's ``meta`` or of an indicator's ``params``."""

    name: str = Field(examples=["period"])
    type: ValueType = Field(description="params: an object of the chosen indicator's parameters.")
    required: bool
    nullable: bool = Field(default=False, description="null is accepted (and means none).")
    default: Scalar = Field(
        default=None,
        description="What a new block starts with; for a field that is not required, what omitting it means.",
    )
    minimum: int | float | None = None
    maximum: int | float | None = None
    exclusive_minimum: int | float | None = None
    exclusive_maximum: int | float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    choices: list[str] | None = Field(default=None, description="The allowed values, when they are a list.")
    depends_on: str | None = Field(
        default=None, description="The field whose value decides this one's options (see `indicators`)."
    )
    accepts_param: bool = Field(
        default=False,
        description='The value may be {"param": name}, a tunable parameter declared in meta.parameters '
        "(for an indicator's params: each parameter's value).",
    )
    description: str = ""


class PaletteTunable(BaseModel):
    """One kind of tunable parameter meta.parameters may declare (see `tunable_kinds`)."""

    type: Literal["int", "float", "choice"]
    fields: list[str] = Field(description="Its fields besides `type`; `default` and `step` are optional.")
    description: str


class PaletteHandle(BaseModel):
    """An input of a block: edges into it carry ``targetHandle`` = ``name``."""

    name: str = Field(examples=["left"])
    accepts: WireType = Field(description="The output type of the blocks that may feed it.")
    min_edges: int
    max_edges: int | None = Field(description="null: any number.")
    any_name: bool = Field(
        description="True when the block reads every edge into it whatever its targetHandle (`name` is a "
        "suggestion); False when targetHandle must be exactly `name`."
    )


class PaletteBlock(BaseModel):
    type: str = Field(examples=["compare"])
    role: Literal["value", "condition", "logic", "root"]
    description: str
    data: list[PaletteField]
    inputs: list[PaletteHandle]
    output: WireType | None = Field(description="What its edges carry; null for a root (entry, exit).")
    min_count: int = Field(description="Blocks of this type a graph needs at least.")
    max_count: int | None = Field(description="Blocks of this type a graph may have at most; null: any.")


class PaletteConnection(BaseModel):
    """An allowed edge: from a block of type ``source`` into handle ``target_handle`` of a ``target``."""

    source: str
    target: str
    target_handle: str


class PaletteRule(BaseModel):
    """A rule between two parameters of one indicator, beyond each one's own range."""

    param: str = Field(examples=["fast"])
    op: Literal["<="]
    other: str = Field(examples=["slow"])


class PaletteIndicator(BaseModel):
    name: str = Field(examples=["macd"])
    description: str
    inputs: list[str] = Field(description="The candle columns it reads.")
    params: list[PaletteField]
    outputs: list[str] = Field(description="Its outputs; `value` for a single-output indicator.")
    output_required: bool = Field(
        description="True for a multi-output indicator: an indicator block must choose one as `output` (a "
        "single-output indicator takes no `output`)."
    )
    warmup: int = Field(description="Bars before its first value with the default parameters.")
    rules: list[PaletteRule] = Field(description="Rules between its parameters (e.g. macd: fast <= slow).")


class PaletteLimits(BaseModel):
    max_depth: int = Field(description="Conditions nested at most this deep once the graph is unfolded.")
    max_comparisons: int = Field(description="Compare and cross blocks, counted per use, in entry and exit.")
    max_nodes: int
    max_edges: int
    max_tunables: int = Field(description="Tunable parameters meta.parameters may declare.")


class BlocksPalette(BaseModel):
    """Everything a strategy editor needs to build graphs that POST /api/strategies/from-blocks accepts."""

    blocks: list[PaletteBlock]
    connections: list[PaletteConnection]
    meta: list[PaletteField] = Field(description="The graph's `meta` object: the strategy's settings.")
    indicators: list[PaletteIndicator]
    limits: PaletteLimits
    tunable_kinds: list[PaletteTunable] = Field(
        description="What meta.parameters may declare (at most limits.max_tunables), for optimisation."
    )


_OFFSET = PaletteField(
    name="offset",
    type="integer",
    required=False,
    default=0,
    minimum=0,
    maximum=MAX_OFFSET,
    description="Bars ago (0: the current bar); the future cannot be read.",
)

# The data fields json_strategy_parser's _build reads for each block type.
_DATA: dict[str, list[PaletteField]] = {
    "price": [
        PaletteField(name="field", type="string", required=True, default="close", choices=list(PRICE_FIELDS)),
        _OFFSET,
    ],
    "number": [
        PaletteField(
            name="value", type="number", required=True, default=0, accepts_param=True, description="Finite."
        )
    ],
    "indicator": [
        PaletteField(name="name", type="string", required=True, default="sma", choices=sorted(INDICATORS)),
        PaletteField(
            name="params",
            type="params",
            required=False,
            depends_on="name",
            accepts_param=True,
            description="The indicator's parameters (indicators[].params); omitted ones take their defaults.",
        ),
        PaletteField(
            name="output",
            type="string",
            required=False,
            depends_on="name",
            description="One of the indicator's outputs; required exactly when indicators[].output_required.",
        ),
        _OFFSET,
    ],
    "compare": [
        PaletteField(name="op", type="string", required=True, default=">", choices=list(COMPARE_OPS))
    ],
    "cross": [
        PaletteField(
            name="direction",
            type="string",
            required=True,
            default="above",
            choices=list(CROSS_DIRECTIONS),
            description="above: left crosses above right (at or below on the previous bar, above now).",
        )
    ],
}

# The registry's cross-parameter checks (IndicatorSpec.check), as data; a test pins one entry per check.
_RULES: dict[str, list[PaletteRule]] = {"macd": [PaletteRule(param="fast", op="<=", other="slow")]}

_DESCRIPTIONS = {
    "price": "A candle column on each bar, or `offset` bars ago.",
    "number": "A constant.",
    "indicator": "An indicator's value (one output of it) on each bar, or `offset` bars ago.",
    "compare": "True where left op right.",
    "cross": "True on the bar where left crosses right.",
    "and": "True where every input is true.",
    "or": "True where at least one input is true.",
    "not": "True where its input is false (and its inputs exist).",
    "entry": "Buy where its input is true (on the next bar's open).",
    "exit": "Sell where its input is true; optional when meta sets a stop or target.",
}


def _role(kind: str) -> Literal["value", "condition", "logic", "root"]:
    block = BLOCK_TYPES[kind]
    if block.output is None:
        return "root"
    if block.inputs == "none":
        return "value"
    return "condition" if block.inputs == "pair" else "logic"


def _handles(kind: str) -> list[PaletteHandle]:
    inputs = BLOCK_TYPES[kind].inputs
    if inputs == "none":
        return []
    if inputs == "pair":
        return [
            PaletteHandle(name=h, accepts=NUMBER, min_edges=1, max_edges=1, any_name=False)
            for h in PAIR_HANDLES
        ]
    most = 1 if inputs == "one" else None
    return [PaletteHandle(name=ANY_HANDLE, accepts=BOOLEAN, min_edges=1, max_edges=most, any_name=True)]


def _block(kind: str) -> PaletteBlock:
    low, high = ROOT_COUNTS.get(kind, (0, None))
    return PaletteBlock(
        type=kind,
        role=_role(kind),
        description=_DESCRIPTIONS.get(kind, ""),
        data=_DATA.get(kind, []),
        inputs=_handles(kind),
        output=BLOCK_TYPES[kind].output,
        min_count=low,
        max_count=high,
    )


def _connections(blocks: list[PaletteBlock]) -> list[PaletteConnection]:
    return [
        PaletteConnection(source=source.type, target=target.type, target_handle=handle.name)
        for target in blocks
        for handle in target.inputs
        for source in blocks
        if source.output == handle.accepts
    ]


def _schema_field(name: str, schema: dict[str, Any], required: bool) -> PaletteField:
    """A field of ``meta`` from its property in StrategySpec's JSON Schema (``anyOf [X, null]``: nullable)."""
    variants = schema.get("anyOf", [schema])
    typed = [v for v in variants if v.get("type") != "null"]
    value = typed[0] if typed else {}
    return PaletteField(
        name=name,
        type=value.get("type", "string"),
        required=required,
        nullable=len(typed) < len(variants),
        default=schema.get("default"),
        minimum=value.get("minimum"),
        maximum=value.get("maximum"),
        exclusive_minimum=value.get("exclusiveMinimum"),
        exclusive_maximum=value.get("exclusiveMaximum"),
        min_length=value.get("minLength"),
        max_length=value.get("maxLength"),
        pattern=value.get("pattern"),
        choices=value.get("enum"),
        description=schema.get("description", ""),
    )


def _meta() -> list[PaletteField]:
    schema = StrategySpec.model_json_schema()
    required = set(schema.get("required", []))
    fields = []
    for name, prop in schema["properties"].items():
        if name == "parameters":
            fields.append(
                PaletteField(
                    name="parameters",
                    type="parameters",
                    required=False,
                    nullable=True,
                    max_length=MAX_TUNABLES,
                    pattern=PARAM_NAME_PATTERN,
                    description="Tunable parameters: name (the pattern) -> one of tunable_kinds. Every one "
                    'must be used, as {"param": name}, where a field accepts_param.',
                )
            )
        elif name in META_FIELDS:
            field = _schema_field(name, prop, name in required)
            fields.append(field.model_copy(update={"accepts_param": name in STOP_PARAM_FIELDS}))
    return fields


def _tunable_kinds() -> list[PaletteTunable]:
    kinds: list[PaletteTunable] = []
    models: tuple[tuple[type[BaseModel], Literal["int", "float", "choice"]], ...] = (
        (IntTunable, "int"),
        (FloatTunable, "float"),
        (ChoiceTunable, "choice"),
    )
    for model, kind in models:
        names = [n for n in model.model_fields if n != "type"]
        doc = (model.__doc__ or "").strip()
        kinds.append(PaletteTunable(type=kind, fields=names, description=doc))
    return kinds


def _param(param: ParamSpec) -> PaletteField:
    return PaletteField(
        name=param.name,
        type="integer" if param.kind is int else "number",
        required=False,
        default=param.default,
        minimum=param.minimum,
        maximum=param.maximum,
    )


def _indicator(spec: IndicatorSpec) -> PaletteIndicator:
    return PaletteIndicator(
        name=spec.name,
        description=" ".join((spec.func.__doc__ or "").split()),
        inputs=list(spec.inputs),
        params=[_param(p) for p in spec.params],
        outputs=list(spec.outputs),
        output_required=len(spec.outputs) > 1,
        warmup=spec.warmup(),
        rules=_RULES.get(spec.name, []),
    )


@cache
def palette() -> BlocksPalette:
    """The palette (the same object every time: it only changes with the code)."""
    blocks = [_block(kind) for kind in BLOCK_TYPES]
    return BlocksPalette(
        blocks=blocks,
        connections=_connections(blocks),
        meta=_meta(),
        indicators=[_indicator(INDICATORS[name]) for name in sorted(INDICATORS)],
        limits=PaletteLimits(
            max_depth=MAX_DEPTH,
            max_comparisons=MAX_COMPARISONS,
            max_nodes=MAX_NODES,
            max_edges=MAX_EDGES,
            max_tunables=MAX_TUNABLES,
        ),
        tunable_kinds=_tunable_kinds(),
    )
