"""Dashboard blocks to spec: the stored examples, round trips (blocks -> spec -> signals) for every block
and operator, every graph error naming its node, and the limits on the unfolded tree."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ml_engine import indicators as ind
from strategy_engine.json_strategy_parser import BLOCK_TYPES, blocks_to_spec, convert_blocks
from strategy_engine.spec import MAX_COMPARISONS, MAX_DEPTH, validate_spec
from strategy_engine.strategy_parser import evaluate
from tests.support.candles import random_candles
from utils.errors import InvalidInput

EXAMPLES = Path(__file__).resolve().parents[2] / "storage" / "strategies" / "examples"
EXAMPLE_NAMES = ["rsi_dip_trend", "macd_bollinger_combo"]
META = {"name": "t", "symbol": "BTCUSDT", "interval": "1h", "stop_loss": 0.5}


def node(node_id: str, kind: str, **data: Any) -> dict[str, Any]:
    return {"id": node_id, "type": kind, "data": data, "position": {"x": 0, "y": 0}}


def edge(source: str, target: str, handle: str | None = "in") -> dict[str, Any]:
    return {"id": f"{source}->{target}", "source": source, "target": target, "targetHandle": handle}


def graph(nodes: list[dict[str, Any]], edges: list[dict[str, Any]], **meta: Any) -> dict[str, Any]:
    return {"meta": {**META, **meta}, "nodes": nodes, "edges": edges}


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_examples_convert_to_their_stored_specs(name: str) -> None:
    blocks = json.loads((EXAMPLES / f"{name}.blocks.json").read_text())
    stored = json.loads((EXAMPLES / f"{name}.spec.json").read_text())
    assert blocks_to_spec(blocks).to_dict() == stored
    assert validate_spec(stored).to_dict() == stored  # the stored spec is canonical


def test_examples_use_every_block_type() -> None:
    used = set()
    for name in EXAMPLE_NAMES:
        used |= {n["type"] for n in json.loads((EXAMPLES / f"{name}.blocks.json").read_text())["nodes"]}
    assert used == set(BLOCK_TYPES)


def compare_graph(op: str, value: float) -> dict[str, Any]:
    nodes = [
        node("c", "price", field="close"),
        node("v", "number", value=value),
        node("cmp", "compare", op=op),
    ]
    nodes.append(node("entry", "entry"))
    edges = [edge("c", "cmp", "left"), edge("v", "cmp", "right"), edge("cmp", "entry")]
    return graph(nodes, edges)


@pytest.mark.parametrize(
    ("op", "func"), [("<", np.less), ("<=", np.less_equal), (">", np.greater), (">=", np.greater_equal)]
)
def test_round_trip_compare(op: str, func: Callable[..., np.ndarray]) -> None:
    candles = random_candles(200, seed=2)
    level = float(np.median(candles.close))
    result = evaluate(blocks_to_spec(compare_graph(op, level)), candles)
    np.testing.assert_array_equal(result.entries, func(candles.close, level))
    assert not result.exits.any()


def cross_graph(direction: str) -> dict[str, Any]:
    nodes = [
        node("fast", "indicator", name="ema", params={"period": 5}),
        node("slow", "indicator", name="sma", params={"period": 20}),
        node("x", "cross", direction=direction),
        node("entry", "entry"),
    ]
    return graph(nodes, [edge("fast", "x", "left"), edge("slow", "x", "right"), edge("x", "entry")])


@pytest.mark.parametrize("direction", ["above", "below"])
def test_round_trip_cross(direction: str) -> None:
    candles = random_candles(400, seed=3)
    spec = blocks_to_spec(cross_graph(direction))
    assert spec.to_dict()["entry"]["op"] == f"crosses_{direction}"
    fast, slow = ind.ema(candles.close, 5), ind.sma(candles.close, 20)
    expected = np.zeros(400, dtype=bool)
    with np.errstate(invalid="ignore"):
        if direction == "above":
            expected[1:] = (fast[:-1] <= slow[:-1]) & (fast[1:] > slow[1:])
        else:
            expected[1:] = (fast[:-1] >= slow[:-1]) & (fast[1:] < slow[1:])
    result = evaluate(spec, candles)
    assert expected.any()
    np.testing.assert_array_equal(result.entries, expected)


def logic_graph() -> dict[str, Any]:
    """entry = and(rsi < 50, or(close > prev close, not(macd hist offset 1 > 0))); exit = bollinger."""
    nodes = [
        node("rsi", "indicator", name="rsi", params={"period": 10}),
        node("fifty", "number", value=50),
        node("weak", "compare", op="<"),
        node("close", "price", field="close"),
        node("prev", "price", field="close", offset=1),
        node("up", "compare", op=">"),
        node("hist", "indicator", name="macd", output="hist", offset=1),
        node("zero", "number", value=0),
        node("positive", "compare", op=">"),
        node("negative", "not"),
        node("either", "or"),
        node("both", "and"),
        node("entry", "entry"),
        node("upper", "indicator", name="bollinger", params={"period": 10, "k": 1.5}, output="upper"),
        node("breakout", "compare", op=">="),
        node("exit", "exit"),
    ]
    edges = [
        edge("rsi", "weak", "left"),
        edge("fifty", "weak", "right"),
        edge("close", "up", "left"),
        edge("prev", "up", "right"),
        edge("hist", "positive", "left"),
        edge("zero", "positive", "right"),
        edge("positive", "negative"),
        edge("up", "either", None),  # and/or/not inputs may come on any handle, or none
        edge("negative", "either", "second"),
        edge("weak", "both"),
        edge("either", "both"),
        edge("both", "entry"),
        edge("close", "breakout", "left"),
        edge("upper", "breakout", "right"),
        edge("breakout", "exit"),
    ]
    return graph(nodes, edges)


def test_round_trip_logic_blocks_offsets_and_outputs() -> None:
    spec = blocks_to_spec(logic_graph())
    assert spec.to_dict()["entry"]["all"][1]["any"][1]["not"]["left"] == {
        "indicator": "macd",
        "params": {"fast": 12, "slow": 26, "signal": 9},
        "output": "hist",
        "offset": 1,
    }
    candles = random_candles(500, seed=8)
    c = candles.close
    prev = np.concatenate(([np.nan], c[:-1]))
    hist = np.concatenate(([np.nan], ind.macd(c)[2][:-1]))
    with np.errstate(invalid="ignore"):
        not_positive = ~np.isnan(hist) & ~(hist > 0)
        expected_entries = (ind.rsi(c, 10) < 50) & ((c > prev) | not_positive)
        expected_exits = c >= ind.bollinger(c, 10, 1.5)[0]
    result = evaluate(spec, candles)
    assert expected_entries.any() and expected_exits.any()
    np.testing.assert_array_equal(result.entries, expected_entries)
    np.testing.assert_array_equal(result.exits, expected_exits)


def test_a_shared_block_is_unfolded_under_each_use_in_edge_order() -> None:
    nodes = [node("c", "price", field="close"), node("v", "number", value=1), node("gt", "compare", op=">")]
    nodes += [node("lt", "compare", op="<"), node("or", "or"), node("entry", "entry")]
    edges = [
        edge("c", "gt", "left"),
        edge("v", "gt", "right"),
        edge("v", "lt", "left"),
        edge("c", "lt", "right"),
    ]
    edges += [edge("lt", "or"), edge("gt", "or"), edge("gt", "or")]
    edges.append(edge("or", "entry"))
    entry = convert_blocks(graph(nodes, edges))["entry"]
    close_gt = {"left": {"price": "close"}, "op": ">", "right": 1}
    assert entry == {"any": [{"left": 1, "op": "<", "right": {"price": "close"}}, close_gt, close_gt]}


def test_meta_settings_reach_the_spec_and_exit_is_optional_with_stops() -> None:
    spec = blocks_to_spec(
        graph(compare_graph("<", 1)["nodes"], compare_graph("<", 1)["edges"], position_size=0.25)
    )
    assert spec.exit is None and spec.stop_loss == 0.5 and spec.position_size == 0.25


def base_graph() -> dict[str, Any]:
    return logic_graph()


def find(g: dict[str, Any], node_id: str) -> dict[str, Any]:
    return next(n for n in g["nodes"] if n["id"] == node_id)


def drop_edge(g: dict[str, Any], source: str, target: str) -> dict[str, Any]:
    g["edges"] = [e for e in g["edges"] if (e["source"], e["target"]) != (source, target)]
    return g


Mutation = Callable[[dict[str, Any]], object]  # what a mutation returns is never used
GRAPH_ERRORS: list[tuple[str, Mutation, str | None, tuple[str, ...]]] = [
    ("unknown block type", lambda g: find(g, "weak").update(type="comparator"), "weak", ("unknown type",)),
    ("duplicate id", lambda g: g["nodes"].append(node("rsi", "number", value=1)), "rsi", ("unique",)),
    (
        "edge to an unknown id",
        lambda g: g["edges"].append(edge("close", "ghost", "left")),
        "ghost",
        ("not a block",),
    ),
    (
        "edge from an unknown id",
        lambda g: g["edges"].append(edge("ghost", "both")),
        "ghost",
        ("not a block",),
    ),
    ("edge out of a root", lambda g: g["edges"].append(edge("entry", "both")), "entry", ("no output",)),
    (
        "cycle",
        lambda g: (
            g["nodes"].append(node("loop", "not")),
            g["edges"].extend([edge("either", "loop"), edge("loop", "either")]),
        ),
        "either",
        ("cycle", "loop"),
    ),
    (
        "unconnected block",
        lambda g: g["nodes"].append(node("lonely", "price", field="open")),
        "lonely",
        ("not connected",),
    ),
    (
        "dead-end condition",
        lambda g: (g["nodes"].append(node("orphan", "not")), g["edges"].append(edge("up", "orphan"))),
        "orphan",
        ("not connected",),
    ),
    (
        "missing entry",
        lambda g: (g["nodes"].remove(find(g, "entry")), drop_edge(g, "both", "entry")),
        None,
        ("no entry",),
    ),
    (
        "second entry",
        lambda g: (g["nodes"].append(node("entry2", "entry")), g["edges"].append(edge("weak", "entry2"))),
        "entry2",
        ("2 entry",),
    ),
    (
        "second exit",
        lambda g: (g["nodes"].append(node("exit2", "exit")), g["edges"].append(edge("weak", "exit2"))),
        "exit2",
        ("2 exit",),
    ),
    ("entry without input", lambda g: drop_edge(g, "both", "entry"), "entry", ("no input",)),
    (
        "number into and",
        lambda g: g["edges"].append(edge("fifty", "both")),
        "both",
        ("needs a boolean", "gives a number"),
    ),
    (
        "number into a root",
        lambda g: (drop_edge(g, "breakout", "exit"), g["edges"].append(edge("close", "exit"))),
        "exit",
        ("needs a boolean",),
    ),
    (
        "boolean into a comparison",
        lambda g: (drop_edge(g, "fifty", "weak"), g["edges"].append(edge("up", "weak", "right"))),
        "weak",
        ("needs a number on 'right'", "gives a boolean"),
    ),
    ("missing right input", lambda g: drop_edge(g, "fifty", "weak"), "weak", ("no input on 'right'",)),
    (
        "two left inputs",
        lambda g: g["edges"].append(edge("close", "weak", "left")),
        "weak",
        ("2 inputs on 'left'",),
    ),
    ("unknown handle", lambda g: g["edges"].append(edge("close", "weak", "middle")), "weak", ("'middle'",)),
    (
        "no handle on a compare",
        lambda g: g["edges"].append(edge("close", "up", None)),
        "up",
        ("handle None",),
    ),
    (
        "input into a price block",
        lambda g: g["edges"].append(edge("fifty", "close", "left")),
        "close",
        ("takes no inputs",),
    ),
    ("not with two inputs", lambda g: g["edges"].append(edge("up", "negative")), "negative", ("2 inputs",)),
    (
        "empty or",
        lambda g: (drop_edge(g, "up", "either"), drop_edge(g, "negative", "either")),
        "either",
        ("no input",),
    ),
    (
        "crossover op on a compare",
        lambda g: find(g, "up")["data"].update(op="crosses_above"),
        "up",
        ("cross blocks",),
    ),
    (
        "cross without direction",
        lambda g: find(g, "up").update(type="cross", data={}),
        "up",
        ("'above' or 'below'",),
    ),
    ("unknown indicator", lambda g: find(g, "rsi")["data"].update(name="rsx"), "rsi", ("unknown indicator",)),
    ("param out of range", lambda g: find(g, "rsi")["data"].update(params={"period": 1}), "rsi", ("period",)),
    ("unknown output", lambda g: find(g, "upper")["data"].update(output="top"), "upper", ("'top'",)),
    ("negative offset", lambda g: find(g, "prev")["data"].update(offset=-1), "prev", ("future",)),
    ("unknown price field", lambda g: find(g, "close")["data"].update(field="mid"), "close", ()),
    ("number without value", lambda g: find(g, "zero")["data"].clear(), "zero", ("operand",)),
    ("data not an object", lambda g: find(g, "zero").update(data=[1]), "zero", ("data",)),
    ("node without id", lambda g: g["nodes"].append({"type": "not"}), None, ("id",)),
]


@pytest.mark.parametrize(
    ("mutate", "node_id", "words"), [c[1:] for c in GRAPH_ERRORS], ids=[c[0] for c in GRAPH_ERRORS]
)
def test_every_graph_error_names_its_node(
    mutate: Mutation, node_id: str | None, words: tuple[str, ...]
) -> None:
    g = copy.deepcopy(base_graph())
    blocks_to_spec(g)  # the unmutated graph is valid
    mutate(g)
    with pytest.raises(InvalidInput) as info:
        blocks_to_spec(g)
    assert type(info.value) is InvalidInput and info.value.code == "invalid_input"  # a 422 at the API
    assert info.value.details["node"] == node_id
    if node_id is not None:
        assert repr(node_id) in info.value.message
    for word in words:
        assert word in info.value.message


def test_spec_errors_in_a_block_carry_the_spec_path_too() -> None:
    g = base_graph()
    find(g, "rsi")["data"]["params"] = {"period": 1}
    with pytest.raises(InvalidInput) as info:
        blocks_to_spec(g)
    assert info.value.details == {"node": "rsi", "path": "entry.all[0].left.params.period"}


def test_cycle_details_list_the_blocks_in_edge_order() -> None:
    g = base_graph()
    g["nodes"] += [node("a", "not"), node("b", "not")]
    g["edges"] += [edge("a", "b"), edge("b", "a"), edge("a", "either")]
    with pytest.raises(InvalidInput) as info:
        blocks_to_spec(g)
    assert info.value.details["cycle"] == ["a", "b", "a"]


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda g: g["meta"].update(symbol="btc"), "meta.symbol"),
        (lambda g: g["meta"].update(leverage=2), "meta.leverage"),
        (lambda g: g["meta"].pop("name"), "meta.name"),
        (lambda g: g.update(meta=[]), "meta"),
    ],
)
def test_meta_errors_name_the_meta_field(mutate: Mutation, path: str) -> None:
    g = base_graph()
    mutate(g)
    with pytest.raises(InvalidInput) as info:
        blocks_to_spec(g)
    assert info.value.details["path"] == path
    assert path in info.value.message


def test_no_exit_and_no_stop_is_an_error() -> None:
    g = compare_graph("<", 1)
    g["meta"]["stop_loss"] = None
    with pytest.raises(InvalidInput) as info:
        blocks_to_spec(g)
    assert info.value.details["path"] == "exit"


@pytest.mark.parametrize("bad", [None, [], "graph", {"edges": []}, {"nodes": {}}, {"nodes": [], "edges": {}}])
def test_graph_must_be_an_object_with_lists(bad: Any) -> None:
    with pytest.raises(InvalidInput):
        blocks_to_spec(bad)


def not_chain(length: int) -> dict[str, Any]:
    """compare -> `length` not blocks -> entry: conditions nested length + 1 levels."""
    g = compare_graph("<", 1)
    g["edges"] = [e for e in g["edges"] if e["target"] != "entry"]
    previous = "cmp"
    for i in range(length):
        g["nodes"].append(node(f"not{i}", "not"))
        g["edges"].append(edge(previous, f"not{i}"))
        previous = f"not{i}"
    g["edges"].append(edge(previous, "entry"))
    return g


def test_depth_limit_names_the_first_block_too_deep() -> None:
    spec = blocks_to_spec(not_chain(MAX_DEPTH - 1))
    assert spec.to_dict()["entry"] == validate_spec(spec.to_dict()).to_dict()["entry"]
    with pytest.raises(InvalidInput) as info:
        blocks_to_spec(not_chain(MAX_DEPTH))
    assert info.value.details["node"] == f"not{MAX_DEPTH - 1}"
    assert info.value.details["limit"] == MAX_DEPTH


def test_a_long_chain_is_refused_without_recursing() -> None:
    with pytest.raises(InvalidInput) as info:
        blocks_to_spec(not_chain(20_000))
    assert info.value.details["limit"] == MAX_DEPTH


def test_fan_out_cannot_unfold_into_an_exponential_spec() -> None:
    # Each `and` takes the previous block twice: 2**k comparisons from k blocks.
    g = compare_graph("<", 1)
    g["edges"] = [e for e in g["edges"] if e["target"] != "entry"]
    previous = "cmp"
    for i in range(20):
        g["nodes"].append(node(f"and{i}", "and"))
        g["edges"] += [edge(previous, f"and{i}"), edge(previous, f"and{i}")]
        previous = f"and{i}"
    g["edges"].append(edge(previous, "entry"))
    with pytest.raises(InvalidInput) as info:
        blocks_to_spec(g)
    assert info.value.details["node"] == "and8"  # 2**9 = 512 > 256
    assert info.value.details["limit"] == MAX_COMPARISONS


def test_comparison_limit_counts_entry_and_exit_together() -> None:
    g = compare_graph("<", 1)
    g["edges"] = [e for e in g["edges"] if e["target"] != "entry"]
    for root, name in (("entry", "entry"), ("exit", "exit")):
        if root == "exit":
            g["nodes"].append(node("exit", "exit"))
        g["nodes"].append(node(f"{root}_or", "or"))
        g["edges"] += [edge("cmp", f"{root}_or") for _ in range(MAX_COMPARISONS // 2 + 1)]
        g["edges"].append(edge(f"{root}_or", name))
    with pytest.raises(InvalidInput) as info:
        blocks_to_spec(g)
    assert info.value.details["node"] == "exit"
