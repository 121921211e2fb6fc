"""Tunable parameters in the JSON spec: declared under ``parameters``, referred to as ``{"param": name}``
where a number stands, checked at their defaults and extremes, kept by ``to_dict`` and bound by ``bind``;
every mistake is an InvalidInput naming the offending field."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from strategy_engine import strategy_parser
from strategy_engine.spec import validate_spec
from tests.support.candles import random_candles
from tests.support.specs import tunable_spec
from utils.errors import InvalidInput


def test_references_are_kept_and_the_fields_hold_the_defaults() -> None:
    spec = validate_spec(tunable_spec())
    assert spec.defaults() == {"fast": 10, "slow": 60, "level": 70.0, "stop": 0.02}
    assert spec.stop_loss == 0.02
    data = spec.to_dict()
    assert data["entry"]["left"]["params"]["period"] == {"param": "fast"}
    assert data["exit"]["right"] == {"param": "level"}
    assert data["stop_loss"] == {"param": "stop"}
    assert validate_spec(data).to_dict() == data, "the canonical form validates to itself"


def test_bind_gives_the_concrete_spec_for_the_chosen_values() -> None:
    spec = validate_spec(tunable_spec())
    bound = spec.bind({"fast": 25, "stop": 0.05})
    data = bound.to_dict()
    assert "parameters" not in data
    assert data["entry"]["left"]["params"]["period"] == 25
    assert data["entry"]["right"]["params"]["period"] == 60, "not given: the default"
    assert (data["exit"]["right"], data["stop_loss"]) == (70.0, 0.05)
    with pytest.raises(InvalidInput) as unknown:
        spec.bind({"nope": 1})
    assert unknown.value.details["path"] == "parameters.nope"


def test_a_spec_with_parameters_trades_as_its_defaults() -> None:
    candles = random_candles(1_000, seed=3)
    spec = validate_spec(tunable_spec())
    got = strategy_parser.evaluate(spec, candles)
    want = strategy_parser.evaluate(spec.bind(spec.defaults()), candles)
    assert np.array_equal(got.entries, want.entries) and np.array_equal(got.exits, want.exits)
    assert got.entries.any(), "the example must trade to mean anything"
    assert strategy_parser.warmup(spec) == strategy_parser.warmup(spec.bind({}))


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


def _drop(path: list[Any]) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        node = data
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return change


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        (_drop(["parameters", "stop"]), "stop_loss.param", "unknown parameter 'stop'"),
        (
            _set(["parameters", "spare"], {"type": "int", "low": 1, "high": 3}),
            "parameters.spare",
            "never used",
        ),
        (_set(["parameters", "fast", "low"], 60), "parameters.fast.high", "empty or inverted"),
        (_set(["parameters", "fast", "high"], 5), "parameters.fast.high", "empty or inverted"),
        (_set(["parameters", "level", "low"], 90), "parameters.level.high", "empty or inverted"),
        (_set(["parameters", "fast", "default"], 7), "parameters.fast.default", "grid"),
        (_set(["parameters", "fast", "default"], 55), "parameters.fast.default", "outside"),
        (_set(["parameters", "stop", "choices"], [0.02, 0.02]), "parameters.stop.choices", "different"),
        (_set(["parameters", "stop", "choices"], [0.02]), "parameters.stop.choices", "at least 2"),
        (_set(["parameters", "fast", "type"], "text"), "parameters.fast", "int"),
        (_set(["parameters", "fast", "step"], 0), "parameters.fast.step", "greater than or equal to 1"),
        (_set(["parameters", "fast", "high"], 200_000), "parameters.fast", "not valid where it is used"),
        (
            _set(["parameters", "fast", "high"], 48),
            "parameters.fast.high",
            "nearest values on it are 45 and 50",
        ),
        (_set(["parameters", "level", "step"], 3), "parameters.level.high", "not on the grid of step 3"),
        (_set(["parameters", "fast", "step"], 100), "parameters.fast.step", "wider than the range"),
        (_set(["parameters", "level", "step"], 1e-10), "parameters.level.step", "more than 1,000,000"),
        (_set(["parameters", "fast", "high"], 10**12), "parameters.fast.step", "more than 1,000,000"),
        (
            _set(["parameters", "level"], {"type": "float", "low": -1.7e308, "high": 1.7e308, "step": 1}),
            "parameters.level.high",
            "too wide",
        ),
        (
            # Continuous: its upper end is checked where it is used as well as its lower one.
            _set(["parameters", "stop"], {"type": "float", "low": 0.01, "high": 5.0}),
            "parameters.stop",
            "value 5 of 'stop'",
        ),
        (
            _set(["parameters", "stop", "choices"], [0.02, 1.5]),
            "parameters.stop",
            "not valid where it is used",
        ),
        (_set(["name"], {"param": "fast"}), "name", "stands for a number"),
        (_set(["entry", "op"], {"param": "fast"}), "entry.op", "stands for a number"),
        (_set(["exit", "right"], {"param": 3}), "exit.right.param", "names a parameter"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_mistakes_are_refused_naming_the_field(
    change: Callable[[dict[str, Any]], None], path: str, words: str
) -> None:
    data = copy.deepcopy(tunable_spec())
    change(data)
    with pytest.raises(InvalidInput) as refused:
        validate_spec(data)
    assert refused.value.details["path"] == path, refused.value.message
    assert words in refused.value.message


def test_too_many_parameters_are_refused() -> None:
    data = tunable_spec()
    data["entry"] = {
        "all": [{"left": {"price": "close"}, "op": ">", "right": {"param": f"p{i}"}} for i in range(9)]
    }
    data["exit"] = {"left": {"price": "close"}, "op": "<", "right": 1.0}
    data["stop_loss"] = 0.05
    data["parameters"] = {f"p{i}": {"type": "float", "low": 1.0, "high": 2.0} for i in range(9)}
    with pytest.raises(InvalidInput) as refused:
        validate_spec(data)
    assert refused.value.details["path"] == "parameters"


def _graph(parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "meta": {"name": "Blocks dip", "symbol": "BTCUSDT", "interval": "1h", "parameters": parameters},
        "nodes": [
            {
                "id": "rsi",
                "type": "indicator",
                "data": {"name": "rsi", "params": {"period": {"param": "period"}}},
            },
            {"id": "level", "type": "number", "data": {"value": {"param": "low"}}},
            {"id": "exit_level", "type": "number", "data": {"value": 70}},
            {"id": "dip", "type": "compare", "data": {"op": "<"}},
            {"id": "high", "type": "compare", "data": {"op": ">"}},
            {"id": "entry", "type": "entry", "data": {}},
            {"id": "exit", "type": "exit", "data": {}},
        ],
        "edges": [
            {"source": "rsi", "target": "dip", "targetHandle": "left"},
            {"source": "level", "target": "dip", "targetHandle": "right"},
            {"source": "rsi", "target": "high", "targetHandle": "left"},
            {"source": "exit_level", "target": "high", "targetHandle": "right"},
            {"source": "dip", "target": "entry", "targetHandle": "in"},
            {"source": "high", "target": "exit", "targetHandle": "in"},
        ],
    }


def test_block_graphs_declare_and_use_tunable_parameters_as_the_palette_says() -> None:
    from strategy_engine.blocks_palette import palette
    from strategy_engine.json_strategy_parser import blocks_to_spec

    described = palette()
    meta = {f.name: f for f in described.meta}
    assert meta["parameters"].type == "parameters" and meta["stop_loss"].accepts_param
    number = next(f for f in _data_fields(described, "number") if f.name == "value")
    assert number.accepts_param
    assert {k.type for k in described.tunable_kinds} == {"int", "float", "choice"}
    declared = {
        "period": {"type": "int", "low": 7, "high": 21, "step": 7, "default": 14},
        "low": {"type": "float", "low": 20, "high": 40, "step": 5},
    }
    spec = blocks_to_spec(_graph(declared))
    assert spec.defaults() == {"period": 14, "low": 20.0}
    data = spec.to_dict()
    assert data["entry"]["left"]["params"]["period"] == {"param": "period"}
    assert data["entry"]["right"] == {"param": "low"}
    with pytest.raises(InvalidInput) as refused:
        blocks_to_spec(_graph({**declared, "spare": {"type": "int", "low": 1, "high": 2}}))
    assert refused.value.details["path"] == "meta.parameters.spare"


def _data_fields(described: Any, kind: str) -> list[Any]:
    return list(next(block for block in described.blocks if block.type == kind).data)
