"""The canonical spec: shape and semantic validation, error paths, limits, canonical form and JSON Schema."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from ml_engine.indicators import INDICATORS
from strategy_engine.spec import (
    MAX_COMPARISONS,
    MAX_DEPTH,
    OPERATORS,
    StrategySpec,
    dotted_path,
    json_schema,
    validate_spec,
)
from tests.support.specs import tunable_spec
from utils.errors import InvalidInput


def base_spec() -> dict[str, Any]:
    """The issue's example spec."""
    return {
        "name": "RSI dip with trend filter",
        "description": "optional text",
        "symbol": "BTCUSDT",
        "interval": "1h",
        "entry": {
            "all": [
                {"left": {"indicator": "rsi", "params": {"period": 14}}, "op": "<", "right": 30},
                {
                    "left": {"price": "close"},
                    "op": ">",
                    "right": {"indicator": "sma", "params": {"period": 200}},
                },
            ]
        },
        "exit": {
            "any": [
                {"left": {"indicator": "rsi", "params": {"period": 14}}, "op": ">", "right": 70},
                {
                    "left": {"indicator": "ema", "params": {"period": 12}},
                    "op": "crosses_below",
                    "right": {"indicator": "ema", "params": {"period": 26}},
                },
            ]
        },
        "stop_loss": 0.03,
        "take_profit": 0.08,
        "trailing_stop": None,
        "position_size": 1.0,
    }


def comparison(left: Any = None, op: str = "<", right: Any = 1.0) -> dict[str, Any]:
    return {"left": left if left is not None else {"price": "close"}, "op": op, "right": right}


def with_entry(entry: Any, **top: Any) -> dict[str, Any]:
    spec = base_spec()
    spec["entry"] = entry
    spec.update(top)
    return spec


def test_issue_example_validates_and_is_explicit() -> None:
    spec = validate_spec(base_spec())
    assert isinstance(spec, StrategySpec)
    data = spec.to_dict()
    assert data["entry"]["all"][0] == {
        "left": {"indicator": "rsi", "params": {"period": 14}},
        "op": "<",
        "right": 30.0,
    }
    # Canonical form is a fixed point: validating it again changes nothing.
    assert validate_spec(data).to_dict() == data
    assert json.loads(json.dumps(data)) == data


def test_defaults_are_filled_in_and_types_normalised() -> None:
    spec = validate_spec(
        with_entry(
            {
                "all": [
                    comparison({"indicator": "rsi"}, "<", 30),
                    comparison({"indicator": "bollinger", "params": {"k": 3}, "output": "upper"}, ">", 1),
                    comparison({"indicator": "macd", "params": {"fast": 5.0}, "output": "hist"}, ">", 0),
                ]
            }
        )
    ).to_dict()
    rsi, boll, macd = (c["left"] for c in spec["entry"]["all"])
    expected_rsi = {p.name: p.default for p in INDICATORS["rsi"].params}
    assert rsi == {"indicator": "rsi", "params": expected_rsi}
    assert boll["params"] == {"period": 20, "k": 3.0} and isinstance(boll["params"]["k"], float)
    assert macd["params"] == {"fast": 5, "slow": 26, "signal": 9} and isinstance(macd["params"]["fast"], int)


def test_offsets_and_outputs_survive_and_zero_offset_is_omitted() -> None:
    spec = validate_spec(
        with_entry(
            comparison(
                {"price": "close", "offset": 0}, ">", {"indicator": "macd", "output": "signal", "offset": 3}
            )
        )
    ).to_dict()
    assert spec["entry"]["left"] == {"price": "close"}
    assert spec["entry"]["right"]["output"] == "signal" and spec["entry"]["right"]["offset"] == 3


def test_exit_is_optional_only_with_a_stop_or_target() -> None:
    for stops in ({"stop_loss": 0.05}, {"take_profit": 0.1}, {"trailing_stop": 0.02}):
        raw = {**base_spec(), "exit": None, "stop_loss": None, "take_profit": None, **stops}
        assert validate_spec(raw).exit is None
    raw = base_spec()
    del raw["exit"]
    raw.update(stop_loss=None, take_profit=None)
    with pytest.raises(InvalidInput) as info:
        validate_spec(raw)
    assert info.value.details["path"] == "exit"
    assert "stop_loss" in info.value.message


# Each case: a mutation of the base spec, the path the error must name, and words the message must contain.
Mutation = Callable[[dict[str, Any]], None]
ERROR_CASES: list[tuple[str, Mutation, str, tuple[str, ...]]] = [
    (
        "param out of range",
        lambda s: s["entry"]["all"][1]["right"]["params"].update(period=0),
        "entry.all[1].right.params.period",
        ("between 1 and",),
    ),
    (
        "param wrong type",
        lambda s: s["entry"]["all"][1]["right"]["params"].update(period="200"),
        "entry.all[1].right.params.period",
        ("must be a number",),
    ),
    (
        "param not an integer",
        lambda s: s["entry"]["all"][0]["left"]["params"].update(period=14.5),
        "entry.all[0].left.params.period",
        ("integer",),
    ),
    (
        "param bool",
        lambda s: s["entry"]["all"][0]["left"]["params"].update(period=True),
        "entry.all[0].left.params.period",
        ("number",),
    ),
    (
        "unknown param",
        lambda s: s["exit"]["any"][1]["right"]["params"].update(length=3),
        "exit.any[1].right.params.length",
        ("unknown parameter", "period"),
    ),
    (
        "params that contradict each other",
        lambda s: s["exit"]["any"].append(
            comparison({"indicator": "macd", "params": {"fast": 30}, "output": "macd"})
        ),
        "exit.any[2].left.params",
        ("fast must be <= slow",),
    ),
    (
        "unknown indicator",
        lambda s: s["entry"]["all"][0]["left"].update(indicator="supertrend"),
        "entry.all[0].left.indicator",
        ("unknown indicator", "rsi", "sma", "macd"),
    ),
    (
        "missing output",
        lambda s: s["entry"]["all"].append(comparison({"indicator": "bollinger"})),
        "entry.all[2].left.output",
        ("upper", "middle", "lower"),
    ),
    (
        "unknown output",
        lambda s: s["entry"]["all"].append(comparison({"indicator": "stochastic", "output": "j"})),
        "entry.all[2].left.output",
        ("'j'", "k, d"),
    ),
    (
        "output on a single-output indicator",
        lambda s: s["entry"]["all"][0]["left"].update(output="value"),
        "entry.all[0].left.output",
        ("single output",),
    ),
    (
        "negative offset",
        lambda s: s["entry"]["all"][1]["left"].update(offset=-1),
        "entry.all[1].left.offset",
        ("future",),
    ),
    (
        "negative indicator offset",
        lambda s: s["exit"]["any"][0]["left"].update(offset=-5),
        "exit.any[0].left.offset",
        ("future", "5 bar"),
    ),
    (
        "float offset",
        lambda s: s["entry"]["all"][1]["left"].update(offset=1.5),
        "entry.all[1].left.offset",
        (),
    ),
    (
        "two numbers",
        lambda s: s["entry"]["all"].append({"left": 3, "op": "<", "right": 5}),
        "entry.all[2]",
        ("two numbers",),
    ),
    ("empty all", lambda s: s["entry"].update(all=[]), "entry.all", ("at least one",)),
    ("empty any", lambda s: s["exit"].update(any=[]), "exit.any", ("at least one",)),
    (
        "unknown operator",
        lambda s: s["entry"]["all"][0].update(op="=="),
        "entry.all[0].op",
        ("crosses_above",),
    ),
    (
        "unknown price field",
        lambda s: s["entry"]["all"][1]["left"].update(price="hl2"),
        "entry.all[1].left.price",
        (),
    ),
    (
        "extra key on an operand",
        lambda s: s["entry"]["all"][1]["left"].update(ofset=1),
        "entry.all[1].left.ofset",
        ("unknown field",),
    ),
    (
        "operand of no kind",
        lambda s: s["entry"]["all"][0].update(right="30"),
        "entry.all[0].right",
        ("operand",),
    ),
    ("bool operand", lambda s: s["entry"]["all"][0].update(right=True), "entry.all[0].right", ("operand",)),
    (
        "NaN operand",
        lambda s: s["entry"]["all"][0].update(right=float("nan")),
        "entry.all[0].right",
        ("finite",),
    ),
    ("condition of no kind", lambda s: s["entry"]["all"].append({"when": 1}), "entry.all[2]", ("condition",)),
    ("missing right", lambda s: s["entry"]["all"][0].pop("right"), "entry.all[0].right", ("missing",)),
    (
        "inside not",
        lambda s: s.update(exit={"not": {"not": comparison({"indicator": "nope"})}}),
        "exit.not.not.left.indicator",
        ("unknown indicator",),
    ),
    ("bad symbol", lambda s: s.update(symbol="btc-usdt"), "symbol", ()),
    ("bad interval", lambda s: s.update(interval="2d"), "interval", ("1h",)),
    ("stop_loss of 100%", lambda s: s.update(stop_loss=1.0), "stop_loss", ()),
    ("take_profit zero", lambda s: s.update(take_profit=0), "take_profit", ()),
    ("position_size above 1", lambda s: s.update(position_size=1.5), "position_size", ()),
    # Found by the API fuzzer: the engine cannot simulate a position this small (once a 500).
    ("position_size denormal", lambda s: s.update(position_size=5e-324), "position_size", ("1e-6",)),
    ("stop as a string", lambda s: s.update(stop_loss="0.03"), "stop_loss", ()),
    ("empty name", lambda s: s.update(name="  "), "name", ()),
    ("unknown top-level field", lambda s: s.update(leverage=3), "leverage", ("unknown field",)),
]


@pytest.mark.parametrize(
    ("mutate", "path", "words"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_every_error_names_its_path(mutate: Mutation, path: str, words: tuple[str, ...]) -> None:
    raw = copy.deepcopy(base_spec())
    mutate(raw)
    with pytest.raises(InvalidInput) as info:
        validate_spec(raw)
    error = info.value
    assert type(error) is InvalidInput and error.code == "invalid_input"  # a 422 at the API
    assert error.details["path"] == path
    assert path in error.message
    for word in words:
        assert word in error.message


def test_pydantic_errors_list_every_problem_with_paths() -> None:
    raw = base_spec()
    raw["entry"]["all"][0]["op"] = "=="
    raw["symbol"] = "x"
    with pytest.raises(InvalidInput) as info:
        validate_spec(raw)
    paths = {e["path"] for e in info.value.details["errors"]}
    assert paths == {"entry.all[0].op", "symbol"}
    assert "1 more problem" in info.value.message


@pytest.mark.parametrize("raw", [None, [], "spec", 3])
def test_a_spec_must_be_an_object(raw: Any) -> None:
    with pytest.raises(InvalidInput):
        validate_spec(raw)


LOC_CASES = [
    (
        ("entry", "all", "all", 1, "comparison", "right", "indicator", "params", "period"),
        "entry.all[1].right.params.period",
    ),
    (("entry", "not", "not", "not", "not", "comparison", "left"), "entry.not.not.left"),
    (("exit", "any", "any", 0, "all", "all", 2, "comparison", "op"), "exit.any[0].all[2].op"),
    (("entry", "comparison", "left", "price", "price"), "entry.left.price"),
    (
        ("entry", "comparison", "left", "price", "indicator"),
        "entry.left.indicator",
    ),  # an extra key named like a tag
    (("symbol",), "symbol"),
]


@pytest.mark.parametrize(("loc", "path"), LOC_CASES)
def test_pydantic_locations_become_spec_paths(loc: tuple[int | str, ...], path: str) -> None:
    assert dotted_path(loc) == path


def nested_nots(depth: int) -> dict[str, Any]:
    """A comparison under depth - 1 nots: conditions nested ``depth`` levels."""
    node: dict[str, Any] = comparison()
    for _ in range(depth - 1):
        node = {"not": node}
    return node


def test_depth_limit() -> None:
    assert validate_spec(with_entry(nested_nots(MAX_DEPTH)))
    with pytest.raises(InvalidInput) as info:
        validate_spec(with_entry(nested_nots(MAX_DEPTH + 1)))
    assert info.value.details["limit"] == MAX_DEPTH
    assert str(MAX_DEPTH) in info.value.message
    assert info.value.details["path"] == "entry" + ".not" * MAX_DEPTH


def test_absurd_nesting_is_refused_without_recursing() -> None:
    # Far beyond Python's recursion limit: the check must be iterative and come before pydantic.
    with pytest.raises(InvalidInput) as info:
        validate_spec(with_entry(nested_nots(50_000)))
    assert info.value.details["limit"] == MAX_DEPTH


def test_comparison_limit_counts_entry_and_exit_together() -> None:
    exit_count = 2  # the base spec's exit has two comparisons
    ok = with_entry({"any": [comparison() for _ in range(MAX_COMPARISONS - exit_count)]})
    assert validate_spec(ok)
    too_many = with_entry({"any": [comparison() for _ in range(MAX_COMPARISONS - exit_count + 1)]})
    with pytest.raises(InvalidInput) as info:
        validate_spec(too_many)
    assert info.value.details["limit"] == MAX_COMPARISONS
    assert str(MAX_COMPARISONS) in info.value.message


def test_validating_a_model_runs_the_semantic_checks() -> None:
    model = StrategySpec.model_validate(with_entry(comparison({"indicator": "nope"})))
    with pytest.raises(InvalidInput) as info:
        validate_spec(model)
    assert info.value.details["path"] == "entry.left.indicator"


def test_json_schema_is_generated_and_describes_the_format() -> None:
    schema = json_schema()
    text = json.dumps(schema)
    for op in OPERATORS:
        assert f'"{op}"' in text
    defs = schema["$defs"]
    assert {
        "Comparison",
        "AllCondition",
        "AnyCondition",
        "NotCondition",
        "PriceOperand",
        "IndicatorOperand",
    } <= set(defs)
    assert defs["NotCondition"]["required"] == ["not"]
    assert defs["AllCondition"]["properties"]["all"]["minItems"] == 1
    assert defs["PriceOperand"]["properties"]["offset"]["minimum"] == 0
    indicator = defs["IndicatorOperand"]
    assert indicator["properties"]["indicator"]["enum"] == sorted(INDICATORS)
    assert indicator["x-indicators"]["macd"]["outputs"] == ["macd", "signal", "hist"]
    assert indicator["x-indicators"]["rsi"]["params"]["period"]["default"] == 14
    assert schema["properties"]["symbol"]["pattern"] == "^[A-Z0-9]{5,20}$"
    assert set(schema["required"]) == {"name", "symbol", "interval", "entry"}


def test_the_schema_accepts_canonical_specs_and_rejects_shape_errors() -> None:
    # jsonschema_rs comes with schemathesis (a test dependency); the schema is what an editor validates with.
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    validator = jsonschema_rs.validator_for(json_schema())
    canonical = validate_spec(base_spec()).to_dict()
    assert validator.is_valid(canonical)
    assert validator.is_valid(validate_spec(with_entry(nested_nots(5))).to_dict())
    for mutate in (
        lambda s: s["entry"]["all"][0].update(op="=="),
        lambda s: s["entry"]["all"][1]["left"].update(offset=-1),
        lambda s: s["entry"]["all"][0].update(right="30"),
        lambda s: s["entry"].update(all=[]),
        lambda s: s.update(interval="2d"),
        lambda s: s["entry"]["all"][0]["left"].update(indicator="supertrend"),
    ):
        broken = copy.deepcopy(canonical)
        mutate(broken)
        assert not validator.is_valid(broken)


def test_the_schema_accepts_parameter_references_where_validation_does() -> None:
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    validator = jsonschema_rs.validator_for(json_schema())
    raw = tunable_spec()  # references in an indicator's params, a number operand and stop_loss
    raw["position_size"] = {"param": "size"}
    raw["parameters"]["size"] = {"type": "choice", "choices": [0.5, 1.0]}
    canonical = validate_spec(raw).to_dict()
    assert validator.is_valid(canonical), list(validator.iter_errors(canonical))
    for mutate in (
        lambda s: s.update(name={"param": "fast"}),  # validation refuses a reference there too
        lambda s: s["entry"].update(op={"param": "fast"}),
        lambda s: s["exit"].update(right={"param": 3}),
        lambda s: s["exit"].update(right={"param": "level", "extra": 1}),
    ):
        broken = copy.deepcopy(canonical)
        mutate(broken)
        assert not validator.is_valid(broken)
        with pytest.raises(InvalidInput):
            validate_spec(broken)
