"""The block palette (strategy_engine/blocks_palette.py) against the code it describes: graphs built from the
palette alone convert (one of each block type, every value of every field's range or choices), exactly the
connections it lists are accepted, its counts and rules hold, the catalogue is the registry; and health
findings of a graph name the blocks they are about."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from ml_engine.indicators import INDICATORS
from strategy_engine.blocks_palette import PaletteField, palette
from strategy_engine.json_strategy_parser import BLOCK_TYPES, META_FIELDS, blocks_to_spec, blocks_to_strategy
from strategy_engine.strategy_health import check
from strategy_engine.strategy_parser import _with_lookahead
from tests.support.candles import random_candles
from utils.errors import InvalidInput

PALETTE = palette()
BLOCKS = {block.type: block for block in PALETTE.blocks}
ALLOWED = {(c.source, c.target, c.target_handle) for c in PALETTE.connections}
INDICATOR = {entry.name: entry for entry in PALETTE.indicators}


def meta_from_palette() -> dict[str, Any]:
    """The required meta settings, with values the palette's own description allows, plus a stop (so an
    exit block is optional)."""
    fields = {f.name: f for f in PALETTE.meta}
    symbol = "BTCUSDT"
    assert fields["symbol"].pattern is not None and re.fullmatch(fields["symbol"].pattern, symbol)
    assert fields["interval"].choices is not None and "1h" in fields["interval"].choices
    stop = fields["stop_loss"]
    assert stop.exclusive_minimum is not None and stop.exclusive_maximum is not None
    return {
        "name": "p" * (fields["name"].min_length or 1),
        "symbol": symbol,
        "interval": "1h",
        "stop_loss": (stop.exclusive_minimum + stop.exclusive_maximum) / 2,
    }


def start_value(field: PaletteField) -> Any:
    if field.default is not None:
        return field.default
    if field.choices:
        return field.choices[0]
    return field.minimum


class Graph:
    """A block graph assembled only from what the palette says: data defaults, handles, connections."""

    def __init__(self) -> None:
        self.nodes: list[dict[str, Any]] = []
        self.edges: list[dict[str, Any]] = []
        # One rotation per wire type through the blocks that may feed it, so one graph uses them all.
        self.rotation = {
            wire: itertools.cycle([b.type for b in PALETTE.blocks if b.output == wire])
            for wire in ("number", "boolean")
        }

    def add(self, kind: str, **data: Any) -> str:
        node_id = f"{kind}_{len(self.nodes)}"
        values = {f.name: start_value(f) for f in BLOCKS[kind].data if f.required}
        self.nodes.append({"id": node_id, "type": kind, "data": {**values, **data}})
        return node_id

    def wire(self, source: str, target: str, handle: str) -> None:
        self.edges.append(
            {"id": f"e{len(self.edges)}", "source": source, "target": target, "targetHandle": handle}
        )

    def feed(self, kind: str, **data: Any) -> str:
        """A block of this type with every input wired to a complete block of an allowed type."""
        node_id = self.add(kind, **data)
        self.fill(node_id, kind)
        return node_id

    def fill(self, node_id: str, kind: str, skip: str | None = None, taken: set[str] | None = None) -> None:
        """Wire every input of `node_id` but `skip`; `taken`: the types already wired into it."""
        taken = set() if taken is None else taken
        for handle in BLOCKS[kind].inputs:
            if handle.name == skip:
                continue
            for _ in range(handle.min_edges):
                source = self.source_for(kind, handle.name, handle.accepts, taken)
                taken.add(source)
                self.wire(self.feed(source), node_id, handle.name)

    def source_for(self, target: str, handle: str, wire: str, taken: set[str]) -> str:
        # Two constants on one comparison never change: avoid numbers facing numbers.
        while True:
            source = next(self.rotation[wire])
            if (source, target, handle) in ALLOWED and not (source == "number" and "number" in taken):
                return source

    def to_root(self, node_id: str) -> None:
        """Wire a boolean block into the entry (there is exactly one)."""
        self.wire(node_id, self.add("entry"), "in")

    def graph(self) -> dict[str, Any]:
        return {"meta": meta_from_palette(), "nodes": self.nodes, "edges": self.edges}


def one_of_each() -> Graph:
    """Every block type at least once: each condition and logic block ANDed into the entry, the exit
    fed by its own block; the rotations bring in each value block."""
    g = Graph()
    conditions = [g.feed(b.type) for b in PALETTE.blocks if b.output == "boolean"]
    both = g.add("and")
    for node_id in conditions:
        g.wire(node_id, both, "in")
    g.wire(both, g.add("entry"), "in")
    for root in (b.type for b in PALETTE.blocks if b.role == "root" and b.type != "entry"):
        g.feed(root)
    return g


def test_a_graph_with_one_of_each_block_type_converts() -> None:
    g = one_of_each()
    assert {n["type"] for n in g.nodes} == set(BLOCK_TYPES)
    spec = blocks_to_spec(g.graph())
    assert spec.exit is not None
    assert {"all"} <= set(spec.to_dict()["entry"])


def field_values(field: PaletteField) -> list[Any]:
    """Every choice, or the default and both ends of the range."""
    if field.choices:
        return list(field.choices)
    values = [start_value(field), field.minimum, field.maximum]
    return [v for v in dict.fromkeys(values) if v is not None]


def data_cases() -> list[tuple[str, str, Any]]:
    cases: list[tuple[str, str, Any]] = []
    for block in PALETTE.blocks:
        for field in block.data:
            if field.type != "params" and field.depends_on is None:
                cases.extend((block.type, field.name, value) for value in field_values(field))
    return cases


@pytest.mark.parametrize(("kind", "name", "value"), data_cases())
def test_every_value_the_palette_allows_for_a_field_converts(kind: str, name: str, value: Any) -> None:
    g = Graph()
    data = {name: value}
    if kind == "indicator" and name == "name" and INDICATOR[value].output_required:
        data["output"] = INDICATOR[value].outputs[0]
    node_id = g.feed(kind, **data)
    if BLOCKS[kind].output == "number":
        other = g.feed("price")
        compare = g.add("compare")
        g.wire(node_id, compare, "left")
        g.wire(other, compare, "right")
        node_id = compare
    if BLOCKS[kind].role != "root":
        g.to_root(node_id)
    elif kind != "entry":
        g.to_root(g.feed("compare"))
    blocks_to_spec(g.graph())


def indicator_cases() -> list[tuple[str, dict[str, Any], str | None, bool]]:
    """(indicator, params, output, whether its rules allow it): each param at its ends, each output."""
    cases: list[tuple[str, dict[str, Any], str | None, bool]] = []
    for entry in PALETTE.indicators:
        outputs: list[str | None] = list(entry.outputs) if entry.output_required else [None]
        cases.extend((entry.name, {}, output, True) for output in outputs)
        for param in entry.params:
            for value in field_values(param):
                params = {p.name: p.default for p in entry.params} | {param.name: value}
                ok = all(params[r.param] <= params[r.other] for r in entry.rules)
                cases.append((entry.name, params, outputs[0], ok))
    return cases


@pytest.mark.parametrize(("name", "params", "output", "ok"), indicator_cases())
def test_every_indicator_output_and_parameter_range_converts(
    name: str, params: dict[str, Any], output: str | None, ok: bool
) -> None:
    g = Graph()
    data: dict[str, Any] = {"name": name, "params": params}
    if output is not None:
        data["output"] = output
    compare = g.add("compare")
    g.wire(g.feed("indicator", **data), compare, "left")
    g.wire(g.feed("price"), compare, "right")
    g.to_root(compare)
    if ok:
        blocks_to_spec(g.graph())
    else:
        with pytest.raises(InvalidInput, match="fast must be <= slow"):
            blocks_to_spec(g.graph())


def edge_cases() -> list[tuple[str, str, str]]:
    """Every (source type, target type, handle): each input handle, and "in" on blocks without inputs."""
    handles = {b.type: [h.name for h in b.inputs] or ["in"] for b in PALETTE.blocks}
    return [(s, t, h) for s in BLOCKS for t in BLOCKS for h in handles[t]]


@pytest.mark.parametrize(("source", "target", "handle"), edge_cases())
def test_exactly_the_listed_connections_are_accepted(source: str, target: str, handle: str) -> None:
    g = Graph()
    target_id = g.add(target)
    g.wire(g.feed(source), target_id, handle)
    if BLOCKS[target].inputs:
        g.fill(target_id, target, skip=handle, taken={source})
        accepts = next(h for h in BLOCKS[target].inputs if h.name == handle)
        for _ in range(accepts.min_edges - 1):
            g.wire(g.feed(g.source_for(target, handle, accepts.accepts, set())), target_id, handle)
    if BLOCKS[target].output == "boolean":
        g.to_root(target_id)
    elif target == "exit" or BLOCKS[target].output == "number":
        g.to_root(g.feed("compare"))
    if (source, target, handle) in ALLOWED:
        blocks_to_spec(g.graph())
    else:
        with pytest.raises(InvalidInput):
            blocks_to_spec(g.graph())


@pytest.mark.parametrize("kind", [b.type for b in PALETTE.blocks if b.min_count or b.max_count is not None])
def test_the_counts_of_root_blocks_hold(kind: str) -> None:
    block = BLOCKS[kind]
    assert block.max_count is not None
    g = Graph()
    for _ in range(block.max_count + 1):
        g.feed(kind)
    if kind != "entry":
        g.to_root(g.feed("compare"))
    with pytest.raises(InvalidInput, match=f"{block.max_count + 1} {kind} blocks"):
        blocks_to_spec(g.graph())
    if block.min_count:
        without = Graph()
        without.feed("compare")
        with pytest.raises(InvalidInput):
            blocks_to_spec(without.graph())


def test_handles_and_connections_agree_with_the_block_types() -> None:
    assert list(BLOCKS) == list(BLOCK_TYPES)
    for connection in PALETTE.connections:
        handle = next(h for h in BLOCKS[connection.target].inputs if h.name == connection.target_handle)
        assert BLOCKS[connection.source].output == handle.accepts
    roles = {b.type: b.role for b in PALETTE.blocks}
    assert roles == {
        "price": "value",
        "number": "value",
        "indicator": "value",
        "compare": "condition",
        "cross": "condition",
        "and": "logic",
        "or": "logic",
        "not": "logic",
        "entry": "root",
        "exit": "root",
    }
    assert [(h.name, h.accepts, h.max_edges) for h in BLOCKS["compare"].inputs] == [
        ("left", "number", 1),
        ("right", "number", 1),
    ]
    assert [(h.name, h.max_edges, h.any_name) for h in BLOCKS["or"].inputs] == [("in", None, True)]
    assert [(h.name, h.max_edges) for h in BLOCKS["not"].inputs] == [("in", 1)]


def test_the_catalogue_is_the_indicator_registry() -> None:
    assert [entry.name for entry in PALETTE.indicators] == sorted(INDICATORS)
    name_field = next(f for f in BLOCKS["indicator"].data if f.name == "name")
    assert name_field.choices == sorted(INDICATORS)
    for name, spec in INDICATORS.items():
        entry = INDICATOR[name]
        assert entry.inputs == list(spec.inputs)
        assert entry.outputs == list(spec.outputs)
        assert entry.output_required == (len(spec.outputs) > 1)
        assert entry.warmup == spec.warmup()
        assert [(p.name, p.type, p.default, p.minimum, p.maximum) for p in entry.params] == [
            (p.name, "integer" if p.kind is int else "number", p.default, p.minimum, p.maximum)
            for p in spec.params
        ]
        assert entry.description
        assert bool(entry.rules) == (spec.check is not None), f"{name}: a registry check needs a palette rule"
        for rule in entry.rules:
            broken = {p.name: p.default for p in spec.params} | {rule.param: 30, rule.other: 20}
            with pytest.raises(ValueError):
                spec.resolve_params(broken)


@pytest.mark.parametrize("dropped", [f.name for f in PALETTE.meta if f.required])
def test_meta_is_the_specs_settings_and_its_required_ones_are_required(dropped: str) -> None:
    assert {f.name for f in PALETTE.meta} == set(META_FIELDS)
    g = Graph()
    g.to_root(g.feed("compare"))
    graph = g.graph()
    blocks_to_spec(graph)
    del graph["meta"][dropped]
    with pytest.raises(InvalidInput, match=f"meta.{dropped}"):
        blocks_to_spec(graph)


# --- health findings name the blocks they are about ----------------------------------------------

NEVER_GRAPH: dict[str, Any] = {
    "meta": {"name": "never", "symbol": "BTCUSDT", "interval": "1h", "stop_loss": 0.05},
    "nodes": [
        {"id": "close", "type": "price", "data": {"field": "close"}},
        {"id": "sma20", "type": "indicator", "data": {"name": "sma", "params": {"period": 20}}},
        {"id": "uptrend", "type": "compare", "data": {"op": ">"}},
        {"id": "huge", "type": "number", "data": {"value": 1e12}},
        {"id": "moonshot", "type": "compare", "data": {"op": ">"}},
        {"id": "buy_when", "type": "and", "data": {}},
        {"id": "go", "type": "entry", "data": {}},
    ],
    "edges": [
        {"source": "close", "target": "uptrend", "targetHandle": "left"},
        {"source": "sma20", "target": "uptrend", "targetHandle": "right"},
        {"source": "close", "target": "moonshot", "targetHandle": "left"},
        {"source": "huge", "target": "moonshot", "targetHandle": "right"},
        {"source": "uptrend", "target": "buy_when", "targetHandle": "in"},
        {"source": "moonshot", "target": "buy_when", "targetHandle": "in"},
        {"source": "buy_when", "target": "go", "targetHandle": "in"},
    ],
}


def test_health_findings_of_a_graph_name_its_blocks() -> None:
    converted = blocks_to_strategy(NEVER_GRAPH)
    assert converted.nodes["entry.all[1]"] == ("moonshot",)
    assert converted.nodes["entry.all[0].right"] == ("sma20",)
    assert converted.nodes["entry"] == ("go", "buy_when")
    candles = random_candles(600, seed=3)
    report = check(converted.spec, candles, nodes=converted.nodes)
    found = {(f.code, f.path): f.node_ids for f in report.findings}
    assert found[("condition_never_true", "entry.all[1]")] == ("moonshot",)
    assert found[("entry_never_true", "entry")] == ("go", "buy_when")
    assert all(f.node_ids == () for f in report.findings if f.path is None)
    as_json = report.to_dict()["findings"]
    assert {"path": "entry.all[1]", "node_ids": ["moonshot"]}.items() <= next(
        f for f in as_json if f["code"] == "condition_never_true"
    ).items()


def test_findings_of_a_spec_written_as_json_name_no_blocks() -> None:
    spec = blocks_to_spec(NEVER_GRAPH)
    report = check(spec, random_candles(600, seed=3))
    assert report.findings and all(f.node_ids == () for f in report.findings)
    assert all(f["node_ids"] == [] for f in report.to_dict()["findings"])


def test_a_lookahead_finding_names_the_leaking_block() -> None:
    converted = blocks_to_strategy(NEVER_GRAPH)
    leaky = _with_lookahead(converted.spec)
    report = check(leaky, random_candles(600, seed=3), nodes=converted.nodes)
    lookahead = next(f for f in report.findings if f.code == "lookahead")
    assert lookahead.path is not None
    assert lookahead.node_ids == converted.nodes[lookahead.path]
    assert len(lookahead.node_ids) == 1 and lookahead.node_ids[0] in {n["id"] for n in NEVER_GRAPH["nodes"]}
