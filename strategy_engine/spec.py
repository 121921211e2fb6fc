"""The canonical JSON strategy spec: its pydantic models (hence its JSON Schema) and its validation.

Every part of the backend speaks this format (the dashboard's blocks are converted into it)::

    {"name": "RSI dip", "description": "", "symbol": "BTCUSDT", "interval": "1h",
     "entry": {"all": [{"left": {"indicator": "rsi", "params": {"period": 14}}, "op": "<", "right": 30},
                       {"left": {"price": "close"}, "op": ">",
                        "right": {"indicator": "sma", "params": {"period": 200}}}]},
     "exit": {"left": {"indicator": "rsi", "params": {"period": 14}}, "op": ">", "right": 70},
     "stop_loss": 0.03, "take_profit": 0.08, "trailing_stop": null, "position_size": 1.0}

* A condition is ``{"all": [c, ...]}``, ``{"any": [c, ...]}`` (both non-empty), ``{"not": c}`` or a
  comparison ``{"left": operand, "op": "<" | "<=" | ">" | ">=" | "crosses_above" | "crosses_below",
  "right": operand}``.
* An operand is a number, ``{"price": "open" | "high" | "low" | "close" | "volume", "offset"?: n}`` or
  ``{"indicator": name, "params": {...}, "output"?: name, "offset"?: n}`` where name, params and output are
  exactly those of ``ml_engine.indicators.INDICATORS``; ``output`` is required for (and only allowed on)
  multi-output indicators. ``offset`` n >= 0 reads the value n bars ago; a negative offset would read the
  future and is rejected.
* ``exit`` may be omitted (or null) only when ``stop_loss``, ``take_profit`` or ``trailing_stop`` closes
  positions instead. Stops are fractions of the entry price: stop_loss and trailing_stop in (0, 1),
  take_profit > 0; position_size in (0, 1] is the fraction of equity per entry.
* Tunable parameters (for optimisation): ``"parameters": {"fast": {"type": "int", "low": 5, "high": 50,
  "step": 5, "default": 10}, "level": {"type": "float", "low": 20, "high": 40, "step": 0.5},
  "size": {"type": "choice", "choices": [0.5, 1.0]}}`` declares them (at most ``MAX_TUNABLES``), and
  ``{"param": "fast"}`` stands for a number where one is allowed: a number operand, an indicator
  parameter, or stop_loss / take_profit / trailing_stop / position_size. Every declared parameter must be
  used and every reference declared; a range must hold more than one value (``low < high``), a step must
  reach ``high`` from ``low`` in whole steps (at most ``MAX_VALUES`` values), and its ``default`` (else
  ``low``, or the first choice) must lie on it. The spec is checked with the defaults
  and with each parameter's extreme values, so no value an optimiser may pick is invalid where it is
  used; a backtest of the spec itself uses the defaults, and ``spec.bind(values)`` gives the concrete
  spec for chosen values. ``to_dict()`` keeps the references.
* Limits: conditions nested at most ``MAX_DEPTH`` levels (a lone comparison is depth 1) and at most
  ``MAX_COMPARISONS`` comparisons in entry and exit together; the web layer caps the body size.

``validate_spec(raw)`` is the one way in: pydantic checks the shape, then a semantic pass checks indicator
names, parameters, outputs and comparisons and fills in every indicator's default parameters, so the
returned spec is explicit (its ``to_dict()`` is the canonical JSON). Any problem raises ``InvalidInput``
whose ``details["path"]`` names the offending node in dotted form, e.g. ``entry.all[1].right.params.period``;
pydantic's own errors are converted to the same shape, so the API has one error format.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    StringConstraints,
    Tag,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    model_serializer,
)
from pydantic_core import PydanticCustomError

from backtester.runner import BacktestConfig
from ml_engine.indicators import INDICATORS, IndicatorSpec
from utils.errors import InvalidInput
from utils.intervals import Interval
from utils.symbols import SYMBOL_PATTERN

__all__ = [
    "CROSS_OPERATORS",
    "MAX_COMPARISONS",
    "MAX_DEPTH",
    "MAX_OFFSET",
    "MAX_TUNABLES",
    "MAX_VALUES",
    "OPERATORS",
    "PRICE_FIELDS",
    "AllCondition",
    "AnyCondition",
    "Comparison",
    "Condition",
    "IndicatorOperand",
    "NotCondition",
    "Operand",
    "PriceOperand",
    "StrategySpec",
    "Tunable",
    "dotted_path",
    "indicator_catalog",
    "iter_comparisons",
    "json_schema",
    "spec_comparisons",
    "tunable_problem",
    "validate_spec",
]

MAX_DEPTH = 32
MAX_COMPARISONS = 256
MAX_OFFSET = 100_000  # same bound as an indicator period: further back than any history we hold
MAX_TUNABLES = 8  # an optimiser's search space grows as the product of the ranges: keep it searchable
MAX_CHOICES = 64
# Values on one parameter's grid (int, or float with a step): more is no range an optimiser can cover.
MAX_VALUES = 1_000_000
PARAM_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
STOP_PARAM_FIELDS: tuple[str, ...] = ("stop_loss", "take_profit", "trailing_stop", "position_size")
PRICE_FIELDS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
OPERATORS: tuple[str, ...] = ("<", "<=", ">", ">=", "crosses_above", "crosses_below")
CROSS_OPERATORS: tuple[str, ...] = ("crosses_above", "crosses_below")

PriceField = Literal["open", "high", "low", "close", "volume"]
Operator = Literal["<", "<=", ">", ">=", "crosses_above", "crosses_below"]
IntervalName = Interval


def indicator_catalog() -> dict[str, dict[str, Any]]:
    """Every indicator with its inputs, parameters (type, default, inclusive range) and outputs.

    Published in the JSON Schema (``x-indicators``) so an editor can build its forms from it.
    """
    catalog: dict[str, dict[str, Any]] = {}
    for name, spec in sorted(INDICATORS.items()):
        catalog[name] = {
            "inputs": list(spec.inputs),
            "params": {
                p.name: {
                    "type": "integer" if p.kind is int else "number",
                    "default": p.default,
                    "minimum": p.minimum,
                    "maximum": p.maximum,
                }
                for p in spec.params
            },
            "outputs": list(spec.outputs) if len(spec.outputs) > 1 else [],
        }
    return catalog


class _Model(BaseModel):
    # Unknown keys are mistakes (a typo'd "ofset" would otherwise be silently ignored).
    model_config = ConfigDict(extra="forbid", serialize_by_alias=True)


def _check_offset(value: int) -> int:
    if value < 0:
        raise PydanticCustomError(
            "negative_offset",
            "offset {offset} is negative: it would read {ahead} bar(s) into the future, which a live "
            "strategy cannot see; use an offset >= 0 (bars ago)",
            {"offset": value, "ahead": -value},
        )
    if value > MAX_OFFSET:
        raise PydanticCustomError(
            "offset_too_large",
            "offset must be at most {limit}, got {offset}",
            {"limit": MAX_OFFSET, "offset": value},
        )
    return value


Offset = Annotated[
    int,
    # Checked by _check_offset rather than ge/le so the message can say why negative is wrong.
    Field(strict=True, json_schema_extra={"minimum": 0, "maximum": MAX_OFFSET}),
    AfterValidator(_check_offset),
]
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class PriceOperand(_Model):
    """A candle column on each bar, or ``offset`` bars ago."""

    price: PriceField
    offset: Offset = 0
    # Test-only hook (strategy_parser.with_lookahead): bars of the future this operand reads. The public
    # format cannot set it; it exists so tests can prove the health check catches lookahead.
    _lookahead: int = PrivateAttr(default=0)

    @model_serializer(mode="wrap")
    def _canonical(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if self.offset == 0:
            data.pop("offset", None)
        return data


class IndicatorOperand(_Model):
    """An indicator from ml_engine.indicators, one of its outputs, on each bar or ``offset`` bars ago."""

    model_config = ConfigDict(json_schema_extra={"x-indicators": dict(indicator_catalog())})

    indicator: Annotated[str, Field(json_schema_extra={"enum": sorted(INDICATORS)})]
    # Any values here: the semantic pass checks them against the indicator's ParamSpecs, so the error can
    # name the parameter and its range (the schema still says "numbers").
    params: Annotated[
        dict[str, Any], WithJsonSchema({"type": "object", "additionalProperties": {"type": "number"}})
    ] = Field(default_factory=dict)
    output: str | None = None
    offset: Offset = 0
    _lookahead: int = PrivateAttr(default=0)

    @model_serializer(mode="wrap")
    def _canonical(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if self.output is None:
            data.pop("output", None)
        if self.offset == 0:
            data.pop("offset", None)
        return data


def _operand_tag(value: Any) -> str | None:
    if isinstance(value, bool):  # an int subclass, but never a price level
        return None
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, Mapping):
        if "price" in value:
            return "price"
        if "indicator" in value:
            return "indicator"
        return None
    tags: dict[type, str] = {PriceOperand: "price", IndicatorOperand: "indicator"}
    return tags.get(type(value))


Operand = Annotated[
    Annotated[Number, Tag("number")]
    | Annotated[PriceOperand, Tag("price")]
    | Annotated[IndicatorOperand, Tag("indicator")],
    Discriminator(
        _operand_tag,
        custom_error_type="invalid_operand",
        custom_error_message='an operand is a number, {"price": ...} or {"indicator": ...}',
    ),
]


class Comparison(_Model):
    """``left op right`` on every bar; a crossover compares the previous bar too."""

    left: Operand
    op: Operator
    right: Operand


class AllCondition(_Model):
    """True where every condition is true."""

    all: list[Condition] = Field(min_length=1)


class AnyCondition(_Model):
    """True where at least one condition is true."""

    any: list[Condition] = Field(min_length=1)


class NotCondition(_Model):
    """True where the condition is false (and its inputs exist)."""

    not_: Condition = Field(alias="not")


_CONDITION_KEYS = ("all", "any", "not")


def _condition_tag(value: Any) -> str | None:
    if isinstance(value, Mapping):
        for key in _CONDITION_KEYS:
            if key in value:
                return key
        if "left" in value or "op" in value or "right" in value:
            return "comparison"
        return None
    tags: dict[type, str] = {
        AllCondition: "all",
        AnyCondition: "any",
        NotCondition: "not",
        Comparison: "comparison",
    }
    return tags.get(type(value))


Condition = Annotated[
    Annotated[AllCondition, Tag("all")]
    | Annotated[AnyCondition, Tag("any")]
    | Annotated[NotCondition, Tag("not")]
    | Annotated[Comparison, Tag("comparison")],
    Discriminator(
        _condition_tag,
        custom_error_type="invalid_condition",
        custom_error_message='a condition is {"all": [...]}, {"any": [...]}, {"not": ...} or '
        '{"left": ..., "op": ..., "right": ...}',
    ),
]

Fraction = Annotated[float, Field(strict=True, gt=0, lt=1)]


class IntTunable(_Model):
    """An integer from ``low`` to ``high`` (both included) in steps of ``step``."""

    type: Literal["int"]
    low: Annotated[int, Field(strict=True)]
    high: Annotated[int, Field(strict=True)]
    step: Annotated[int, Field(strict=True, ge=1)] = 1
    default: Annotated[int, Field(strict=True)] | None = None

    def count(self) -> int | None:
        return (self.high - self.low) // self.step + 1

    def extremes(self) -> tuple[float, float]:
        return float(self.low), float(self.low + (self.high - self.low) // self.step * self.step)

    def grid(self) -> list[float]:
        """Every value (callers check ``count()`` against their cap first)."""
        return [float(v) for v in range(self.low, self.high + 1, self.step)]

    def initial(self) -> int:
        return self.low if self.default is None else self.default


class FloatTunable(_Model):
    """A number from ``low`` to ``high``: on a grid of ``step`` when given, else continuous."""

    type: Literal["float"]
    low: Number
    high: Number
    step: Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)] | None = None
    default: Number | None = None

    def count(self) -> int | None:
        """Values on the grid; None when continuous."""
        return None if self.step is None else math.floor((self.high - self.low) / self.step + 1e-9) + 1

    def extremes(self) -> tuple[float, float]:
        count = self.count()
        if count is None:  # continuous: the range's own ends
            return self.low, self.high
        return self.low, round(self.low + (count - 1) * (self.step or 0), 12)

    def grid(self) -> list[float] | None:
        count = self.count()
        if count is None or self.step is None:
            return None
        return [round(self.low + i * self.step, 12) for i in range(count)]

    def initial(self) -> float:
        return self.low if self.default is None else self.default


class ChoiceTunable(_Model):
    """One of a few numbers."""

    type: Literal["choice"]
    choices: list[Number] = Field(min_length=2, max_length=MAX_CHOICES)
    default: Number | None = None

    def count(self) -> int | None:
        return len(self.choices)

    def extremes(self) -> tuple[float, float]:
        return min(self.choices), max(self.choices)

    def grid(self) -> list[float]:
        return list(self.choices)

    def initial(self) -> float:
        return self.choices[0] if self.default is None else self.default


Tunable = Annotated[IntTunable | FloatTunable | ChoiceTunable, Field(discriminator="type")]


class StrategySpec(_Model):
    """A user strategy: long-only entry/exit conditions over one symbol and interval, plus stops."""

    name: Annotated[str, StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=100)]
    description: Annotated[str, StringConstraints(strict=True, max_length=2000)] = ""
    symbol: Annotated[str, StringConstraints(strict=True, pattern=SYMBOL_PATTERN)]
    interval: IntervalName
    entry: Condition
    exit: Condition | None = None
    stop_loss: Fraction | None = None
    take_profit: Annotated[float, Field(strict=True, gt=0, le=100)] | None = None
    trailing_stop: Fraction | None = None
    position_size: Annotated[float, Field(strict=True, gt=0, le=1)] = 1.0
    parameters: (
        Annotated[
            dict[str, Tunable],
            Field(
                max_length=MAX_TUNABLES,
                json_schema_extra={"propertyNames": {"pattern": PARAM_NAME_PATTERN}},
                description='Tunable parameters, referred to as {"param": name} where a number stands: a '
                "number operand, an indicator parameter, or a stop / position_size field.",
            ),
        ]
        | None
    ) = None
    # Where each {"param": name} reference stood (dotted path -> name); the fields hold the defaults.
    _refs: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_serializer(mode="wrap")
    def _canonical(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if self.parameters is None:
            data.pop("parameters", None)
        for path, name in self._refs.items():
            _set_path(data, path, {"param": name})
        return data

    def to_dict(self) -> dict[str, Any]:
        """The canonical JSON form (defaults of operands omitted, every indicator parameter explicit,
        parameter references where the spec had them)."""
        data: dict[str, Any] = self.model_dump(mode="json")
        return data

    def bind(self, values: Mapping[str, Any]) -> StrategySpec:
        """The concrete spec with `values` (the defaults for parameters not given) in place of the
        references, and no parameters: what a backtest of those values runs."""
        params = self.parameters or {}
        unknown = sorted(set(values) - set(params))
        if unknown:
            raise _fail(f"parameters.{unknown[0]}", f"no tunable parameter {unknown[0]!r} in this spec")
        chosen = {name: values.get(name, tunable.initial()) for name, tunable in params.items()}
        data = self.to_dict()
        data.pop("parameters", None)
        for path, name in self._refs.items():
            _set_path(data, path, chosen[name])
        return validate_spec(data)

    def defaults(self) -> dict[str, float]:
        """Each tunable parameter's default value."""
        return {name: tunable.initial() for name, tunable in (self.parameters or {}).items()}


for _model in (AllCondition, AnyCondition, NotCondition, StrategySpec):
    _model.model_rebuild()
_TUNABLES: TypeAdapter[dict[str, IntTunable | FloatTunable | ChoiceTunable]] = TypeAdapter(dict[str, Tunable])


def json_schema() -> dict[str, Any]:
    """JSON Schema of the spec (what GET /api/strategies/schema serves), with ``{"param": name}`` allowed
    where validation allows it: a number operand, an indicator parameter and the stop fields (the models
    hold the numbers a reference is bound to, so their own schema has numbers only there)."""
    schema: dict[str, Any] = StrategySpec.model_json_schema()
    defs = schema["$defs"]
    defs["ParamRef"] = {
        "title": "ParamRef",
        "description": "A tunable parameter declared under `parameters`, standing for a number here.",
        "type": "object",
        "properties": {"param": {"type": "string", "pattern": PARAM_NAME_PATTERN}},
        "required": ["param"],
        "additionalProperties": False,
    }
    ref = {"$ref": "#/$defs/ParamRef"}
    for side in ("left", "right"):
        defs["Comparison"]["properties"][side]["oneOf"].append(ref)
    params = defs["IndicatorOperand"]["properties"]["params"]
    params["additionalProperties"] = {"anyOf": [params["additionalProperties"], ref]}
    for name in STOP_PARAM_FIELDS:
        field = schema["properties"][name]
        if "anyOf" in field:
            field["anyOf"].append(ref)
        else:
            kept = {k: field.pop(k) for k in ("default", "title", "description") if k in field}
            schema["properties"][name] = {"anyOf": [field, ref], **kept}
    return schema


# --------------------------------------------------------------------------------------------------
# Walking a validated spec
# --------------------------------------------------------------------------------------------------


def iter_comparisons(condition: Condition, path: str) -> Iterator[tuple[str, Comparison]]:
    """Every comparison under ``condition`` with its dotted path, in document order."""
    stack: list[tuple[str, Any]] = [(path, condition)]
    while stack:
        node_path, node = stack.pop()
        if isinstance(node, Comparison):
            yield node_path, node
        elif isinstance(node, NotCondition):
            stack.append((f"{node_path}.not", node.not_))
        else:
            key = "all" if isinstance(node, AllCondition) else "any"
            children = node.all if isinstance(node, AllCondition) else node.any
            stack.extend((f"{node_path}.{key}[{i}]", c) for i, c in reversed(list(enumerate(children))))


def spec_comparisons(spec: StrategySpec) -> Iterator[tuple[str, Comparison]]:
    """Every comparison of entry, then exit, with its dotted path."""
    yield from iter_comparisons(spec.entry, "entry")
    if spec.exit is not None:
        yield from iter_comparisons(spec.exit, "exit")


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------


def validate_spec(raw: Mapping[str, Any] | StrategySpec) -> StrategySpec:
    """Check a spec (parsed JSON or a model) completely; the explicit, normalised spec or InvalidInput."""
    if isinstance(raw, StrategySpec):
        if raw.parameters is not None:
            return validate_spec(raw.to_dict())
        _check_limits(raw.to_dict())
        return _semantic_pass(raw)
    if not isinstance(raw, Mapping):
        raise InvalidInput("A strategy spec must be a JSON object.", details={"path": ""})
    # Before pydantic: a pathological nesting must be refused before anything recurses into it.
    _check_limits(raw)
    refs = _references(raw)
    if refs or raw.get("parameters") is not None:
        return _with_parameters(raw, refs)
    return _validated(raw)


def _validated(raw: Mapping[str, Any]) -> StrategySpec:
    try:
        spec = StrategySpec.model_validate(raw)
    except ValidationError as exc:
        raise _invalid_from_pydantic(exc) from None
    return _semantic_pass(spec)


# --------------------------------------------------------------------------------------------------
# Tunable parameters
# --------------------------------------------------------------------------------------------------

_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _tokens(path: str) -> list[str | int]:
    return [int(index) if index else key for key, index in _PATH_TOKEN.findall(path)]


def _set_path(data: Any, path: str, value: Any) -> None:
    tokens = _tokens(path)
    node = data
    for token in tokens[:-1]:
        node = node[token]
    node[tokens[-1]] = value


def _is_ref(value: Any) -> bool:
    return isinstance(value, Mapping) and set(value) == {"param"}


def _ref_allowed(path: str) -> bool:
    """A reference stands for a number: an operand, an indicator parameter, or a stop field."""
    tokens = _tokens(path)
    if len(tokens) == 1:
        return tokens[0] in STOP_PARAM_FIELDS
    return tokens[-1] in ("left", "right") or (len(tokens) >= 2 and tokens[-2] == "params")


def _references(raw: Mapping[str, Any]) -> dict[str, str]:
    """Every {"param": name} outside ``parameters``, by dotted path (iterative: nesting is bounded)."""
    found: dict[str, str] = {}
    stack: list[tuple[str, Any]] = [(key, value) for key, value in raw.items() if key != "parameters"]
    while stack:
        path, node = stack.pop()
        if _is_ref(node):
            name = node["param"]
            if not isinstance(name, str):
                raise _fail(f"{path}.param", "a parameter reference names a parameter (a string)")
            if not _ref_allowed(path):
                raise _fail(
                    path,
                    "a parameter reference stands for a number: a number operand, an indicator "
                    "parameter, or stop_loss / take_profit / trailing_stop / position_size",
                )
            found[path] = name
        elif isinstance(node, Mapping):
            stack.extend((f"{path}.{key}", value) for key, value in node.items())
        elif isinstance(node, list):
            stack.extend((f"{path}[{i}]", value) for i, value in enumerate(node))
    return found


def _bound(raw: Mapping[str, Any], refs: Mapping[str, str], values: Mapping[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(raw))  # a deep copy of plain JSON data
    for path, name in refs.items():
        _set_path(data, path, values[name])
    return data


def _with_parameters(raw: Mapping[str, Any], refs: dict[str, str]) -> StrategySpec:
    declared = raw.get("parameters")
    if declared is None:
        declared = {}
    if not isinstance(declared, Mapping):
        raise _fail("parameters", "parameters is an object: name -> {type, low, high, ...}")
    for name in declared:
        if not re.fullmatch(PARAM_NAME_PATTERN, str(name)):
            raise _fail(
                f"parameters.{str(name)[:40]}",
                "a parameter name is lower-case letters, digits and underscores, starting with a letter "
                "(at most 32 characters)",
            )
    for path, name in sorted(refs.items()):
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise _fail(f"{path}.param", f"unknown parameter {name!r}; declared parameters: {known}")
    unused = sorted(set(declared) - set(refs.values()))
    if unused:
        raise _fail(
            f"parameters.{unused[0]}",
            f"parameter {unused[0]!r} is declared but never used; refer to it as "
            f'{{"param": "{unused[0]}"}} or remove it',
        )
    # The declarations alone first, so their errors name their own fields.
    try:
        StrategySpec.model_validate({**_bound(raw, refs, {n: 1 for n in declared}), "parameters": declared})
    except ValidationError as exc:
        problems = [e for e in exc.errors() if e["loc"] and e["loc"][0] == "parameters"]
        if problems:
            raise _invalid_from_errors(problems) from None
    tunables = _TUNABLES.validate_python(declared)
    for name, tunable in tunables.items():
        _check_range(name, tunable)
    defaults = {name: tunable.initial() for name, tunable in tunables.items()}
    spec = _validated(_bound(raw, refs, defaults))
    for name, tunable in tunables.items():
        # Every choice (few); else both ends of the range (the checks that can fail are bounds).
        values = tunable.grid() if isinstance(tunable, ChoiceTunable) else tunable.extremes()
        for value in sorted(set(values)):
            try:
                _validated(_bound(raw, refs, {**defaults, name: value}))
            except InvalidInput as exc:
                raise _fail(
                    f"parameters.{name}",
                    f"value {value:g} of {name!r}, within its range, is not valid where it is used: "
                    f"{exc.message}",
                ) from None
    spec = spec.model_copy(update={"parameters": tunables})
    spec._refs = dict(sorted(refs.items()))
    return spec


def _check_range(name: str, tunable: IntTunable | FloatTunable | ChoiceTunable) -> None:
    problem = tunable_problem(tunable)
    if problem is not None:
        raise _fail(f"parameters.{name}.{problem[0]}", problem[1])


def tunable_problem(tunable: IntTunable | FloatTunable | ChoiceTunable) -> tuple[str, str] | None:
    """What is wrong with one tunable parameter's own range, as (its field, the message), or None: shared
    by the spec's parameters and a built-in strategy's search space, which name the field each in its
    own way. A range holds at least two values, its step (if any) reaches ``high`` from ``low`` in whole
    steps, and at most ``MAX_VALUES``; the default lies on it."""
    if isinstance(tunable, ChoiceTunable):
        if len(set(tunable.choices)) != len(tunable.choices):
            return "choices", "choices must be different numbers"
        if tunable.default is not None and tunable.default not in tunable.choices:
            return "default", f"default {tunable.default:g} is not one of the choices"
        return None
    low, high, step = tunable.low, tunable.high, tunable.step
    if low >= high:
        return "high", f"the range is empty or inverted (low {low:g}, high {high:g}): low must be below high"
    span = high - low
    if not math.isfinite(span):
        return "high", f"the range from {low:g} to {high:g} is too wide to search"
    if step is not None:
        steps = span / step
        if not math.isfinite(steps) or steps > MAX_VALUES - 1:
            return "step", (
                f"a step of {step:g} puts more than {MAX_VALUES:,} values between {low:g} and {high:g}; "
                "use a larger step"
            )
        if steps < 1 - 1e-9:
            return "step", f"a step of {step:g} is wider than the range from {low:g} to {high:g}"
        whole = round(steps)
        if not math.isclose(steps, whole, rel_tol=1e-9, abs_tol=1e-9):
            below, above = low + math.floor(steps) * step, low + math.ceil(steps) * step
            return "high", (
                f"high {high:g} is not on the grid of step {step:g} from low {low:g}; the nearest values on "
                f"it are {below:g} and {above:g}"
            )
    default = tunable.default
    if default is not None:
        if not low <= default <= high:
            return "default", f"default {default:g} is outside [{low:g}, {high:g}]"
        offset = (default - low) / (step or 1)
        if step is not None and not math.isclose(offset, round(offset), abs_tol=1e-9):
            return "default", f"default {default:g} is not on the grid of step {step:g}"
    return None


def _fail(path: str, message: str) -> InvalidInput:
    return InvalidInput(f"Invalid strategy at {path}: {message}" if path else message, details={"path": path})


def _check_limits(raw: Mapping[str, Any]) -> None:
    """Nesting depth and comparison count, walked iteratively on the raw data (any shape)."""
    comparisons = 0
    stack: list[tuple[str, Any, int]] = [
        (key, raw[key], 1) for key in ("exit", "entry") if isinstance(raw.get(key), Mapping)
    ]
    while stack:
        path, node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidInput(
                f"Invalid strategy at {path}: conditions are nested more than {MAX_DEPTH} levels deep "
                f"(at most {MAX_DEPTH} allowed); flatten the all/any/not groups.",
                details={"path": path, "limit": MAX_DEPTH},
            )
        children: list[tuple[str, Any, int]] = []
        for key in _CONDITION_KEYS:
            child = node.get(key)
            if key == "not" and isinstance(child, Mapping):
                children.append((f"{path}.not", child, depth + 1))
            elif key != "not" and isinstance(child, list):
                children.extend(
                    (f"{path}.{key}[{i}]", c, depth + 1)
                    for i, c in enumerate(child)
                    if isinstance(c, Mapping)
                )
        if not any(key in node for key in _CONDITION_KEYS):
            comparisons += 1
            if comparisons > MAX_COMPARISONS:
                raise InvalidInput(
                    f"Invalid strategy at {path}: more than {MAX_COMPARISONS} comparisons in entry and exit "
                    f"together (at most {MAX_COMPARISONS} allowed).",
                    details={"path": path, "limit": MAX_COMPARISONS},
                )
        stack.extend(reversed(children))


# Fields whose value is a tagged union: pydantic puts the chosen tag into the error location right after
# them (and after each list index, since only all/any hold lists); the dotted path leaves it out.
_UNION_FIELDS = frozenset({"entry", "exit", "not", "left", "right"})
_TAGS = frozenset({"all", "any", "not", "comparison", "number", "price", "indicator"})


def dotted_path(loc: tuple[int | str, ...]) -> str:
    """pydantic's error location as a spec path: ``entry.all[1].right.params.period``."""
    out = ""
    expect_tag = False
    for item in loc:
        if expect_tag and isinstance(item, str) and item in _TAGS:
            expect_tag = False
            continue
        if isinstance(item, int):
            out += f"[{item}]"
            expect_tag = True
        else:
            out += f".{item}" if out else str(item)
            expect_tag = item in _UNION_FIELDS
    return out


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown field (not part of the strategy format)"
    if kind == "missing":
        return "required field is missing"
    if kind == "too_short":
        return "must contain at least one condition"
    return str(error["msg"])


def _invalid_from_pydantic(exc: ValidationError) -> InvalidInput:
    return _invalid_from_errors(exc.errors())


_TUNABLE_TAGS = frozenset({"int", "float", "choice"})


def _location(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    # parameters.<name>.<type tag>.<field>: the tag pydantic adds for the tunable's union is left out.
    if len(loc) >= 3 and loc[0] == "parameters" and loc[2] in _TUNABLE_TAGS:
        return (*loc[:2], *loc[3:])
    return loc


def _invalid_from_errors(raw_errors: list[Any]) -> InvalidInput:
    errors = [
        {
            "path": dotted_path(_location(tuple(e["loc"]))),
            "message": str(e["msg"]) if e["loc"] and e["loc"][0] == "parameters" else _message(e),
        }
        for e in raw_errors
    ]
    first = errors[0]
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    message = f"Invalid strategy at {first['path']}: {first['message']}{more}"
    return InvalidInput(message, details={"path": first["path"], "errors": errors[:20]})


# The spec fields a backtest takes its stops and position size from.
STOP_FIELDS: tuple[str, ...] = ("stop_loss", "take_profit", "trailing_stop", "position_size")


def _semantic_pass(spec: StrategySpec) -> StrategySpec:
    try:  # the engine's own rules on stops and size (e.g. a position too small to simulate)
        BacktestConfig(**{name: getattr(spec, name) for name in STOP_FIELDS})
    except ValueError as exc:
        message = str(exc)
        raise _fail(message.split(" ", 1)[0], message) from None
    if (
        spec.exit is None
        and spec.stop_loss is None
        and spec.take_profit is None
        and spec.trailing_stop is None
    ):
        raise _fail(
            "exit",
            "an exit condition is required unless stop_loss, take_profit or trailing_stop closes positions",
        )
    update: dict[str, Any] = {"entry": _condition(spec.entry, "entry")}
    if spec.exit is not None:
        update["exit"] = _condition(spec.exit, "exit")
    # model_copy keeps private attributes (the test-only lookahead hook) of every node it copies.
    return spec.model_copy(update=update)


def _condition(node: Any, path: str) -> Any:
    # Recursion is bounded by MAX_DEPTH, checked before.
    if isinstance(node, AllCondition):
        return node.model_copy(
            update={"all": [_condition(c, f"{path}.all[{i}]") for i, c in enumerate(node.all)]}
        )
    if isinstance(node, AnyCondition):
        return node.model_copy(
            update={"any": [_condition(c, f"{path}.any[{i}]") for i, c in enumerate(node.any)]}
        )
    if isinstance(node, NotCondition):
        return node.model_copy(update={"not_": _condition(node.not_, f"{path}.not")})
    if isinstance(node.left, float) and isinstance(node.right, float):
        raise _fail(
            path,
            f"compares two numbers ({node.left:g} {node.op} {node.right:g}): the result never changes; "
            "compare a price or an indicator",
        )
    return node.model_copy(
        update={"left": _operand(node.left, f"{path}.left"), "right": _operand(node.right, f"{path}.right")}
    )


def _operand(operand: Any, path: str) -> Any:
    if not isinstance(operand, IndicatorOperand):
        return operand
    spec = INDICATORS.get(operand.indicator)
    if spec is None:
        raise _fail(
            f"{path}.indicator",
            f"unknown indicator {operand.indicator!r}; known: {', '.join(sorted(INDICATORS))}",
        )
    params = _resolve_params(spec, operand.params, path)
    outputs = spec.outputs
    if len(outputs) > 1:
        if operand.output is None:
            raise _fail(
                f"{path}.output",
                f'{spec.name} has {len(outputs)} outputs; choose one with "output": {", ".join(outputs)}',
            )
        if operand.output not in outputs:
            raise _fail(
                f"{path}.output",
                f"unknown output {operand.output!r} of {spec.name}; choose one of: {', '.join(outputs)}",
            )
    elif operand.output is not None:
        raise _fail(f"{path}.output", f'{spec.name} has a single output; remove "output"')
    return operand.model_copy(update={"params": params})


def _resolve_params(spec: IndicatorSpec, given: Mapping[str, Any], path: str) -> dict[str, int | float]:
    known = [p.name for p in spec.params]
    unknown = sorted(set(given) - set(known))
    if unknown:
        allowed = ", ".join(known) if known else "none"
        raise _fail(
            f"{path}.params.{unknown[0]}",
            f"unknown parameter {unknown[0]!r} for {spec.name}; parameters: {allowed}",
        )
    resolved: dict[str, int | float] = {}
    for param in spec.params:
        try:
            resolved[param.name] = param.coerce(given.get(param.name, param.default))
        except ValueError as exc:
            raise _fail(f"{path}.params.{param.name}", str(exc)) from None
    if spec.check is not None:
        try:
            spec.check(resolved)
        except ValueError as exc:
            raise _fail(f"{path}.params", str(exc)) from None
    return resolved
