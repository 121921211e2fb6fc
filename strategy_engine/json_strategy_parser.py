"""Dashboard blocks to spec: converts the strategy editor's node graph into the canonical strategy spec.

The graph (React Flow style; other keys on the graph, its nodes and edges, such as ``position``,
``viewport``, an edge's ``id`` or ``sourceHandle``, or UI fields inside ``data``, are ignored)::

    {"meta": {"name": "...", "description"?: "...", "symbol": "BTCUSDT", "interval": "1h",
              "stop_loss"?: 0.03, "take_profit"?: 0.08, "trailing_stop"?: null, "position_size"?: 1.0},
     "nodes": [{"id": "rsi", "type": "indicator", "data": {"name": "rsi", "params": {"period": 14}}}, ...],
     "edges": [{"source": "rsi", "target": "dip", "targetHandle": "left"}, ...]}

``meta`` holds every spec field except the conditions (same names and rules as the spec), tunable
``parameters`` included: a number block's ``value``, an indicator block's ``params`` values and the
meta's stop fields may then be ``{"param": name}``. An edge carries its source block's output into one
input (``targetHandle``) of its target block.

Block vocabulary:

=========  ==============================================  ==========================  ===========
type       data                                            inputs (targetHandle)       output
=========  ==============================================  ==========================  ===========
price      field: open|high|low|close|volume, offset?: n   none                        number
number     value: a number                                 none                        number
indicator  name, params?: {...}, output?: name (only for   none                        number
           multi-output indicators), offset?: n
compare    op: ``<`` ``<=`` ``>`` ``>=``                   left, right: a number each  boolean
cross      direction: above|below (left crosses right)     left, right: a number each  boolean
and        (none)                                          one or more booleans, any   boolean
                                                           handle name (e.g. "in")
or         (none)                                          one or more booleans        boolean
not        (none)                                          exactly one boolean         boolean
entry      (none)                                          exactly one boolean         root
exit       (none)                                          exactly one boolean         root
=========  ==============================================  ==========================  ===========

A graph has exactly one ``entry`` and at most one ``exit`` (without one, the meta must give a stop or
target). Names, params and outputs of indicators are exactly those of ``ml_engine.indicators``; offsets
are bars ago (>= 0).

Conversion: each root's input is unfolded into a tree (a block feeding several blocks appears under each
of them); ``and``/``or`` members keep the order of their edges in ``edges``.

* price -> ``{"price", "offset"?}``; number -> the value;
* indicator -> ``{"indicator", "params", "output"?, "offset"?}``;
* compare -> ``{"left", "op", "right"}``; cross -> the same with op ``crosses_above``/``crosses_below``;
* and -> ``{"all": [...]}``; or -> ``{"any": [...]}``; not -> ``{"not": ...}``.

The result goes through ``spec.validate_spec``, so the returned spec is canonical. Examples:
``storage/strategies/examples/*.blocks.json`` and the spec each converts to (``*.spec.json``).

Errors are ``InvalidInput`` with ``details["node"]``, the id of the block at fault (None when the graph
lacks something, such as an entry block): unknown block types, duplicate ids, edges from or to unknown
ids (``details["edge"]`` too), edges out of a root, cycles, blocks not connected to a root, a missing or a
second entry (or a second exit), a boolean where a number is needed or the reverse, missing, extra or
unknown inputs on a handle, a compare/cross without a valid op/direction, and more than the spec's
nesting or comparison limits once unfolded. Errors the spec finds in a block's data (an unknown indicator,
a parameter out of range...) carry both the spec ``path`` and the ``node`` it came from.

``blocks_to_strategy`` also returns, for every spec path the graph produced, the blocks behind it (a root's
path ``entry``/``exit`` names the root block and the block feeding it), so the health check's findings can
name blocks. ``strategy_engine.blocks_palette`` publishes this vocabulary for editors, from the tables here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from strategy_engine.spec import MAX_COMPARISONS, MAX_DEPTH, StrategySpec, validate_spec
from utils.errors import InvalidInput

__all__ = [
    "BLOCK_TYPES",
    "BOOLEAN",
    "COMPARE_OPS",
    "CROSS_DIRECTIONS",
    "MAX_EDGES",
    "MAX_NODES",
    "META_FIELDS",
    "NUMBER",
    "PAIR_HANDLES",
    "ROOT_COUNTS",
    "BlockStrategy",
    "Wire",
    "blocks_to_spec",
    "blocks_to_strategy",
    "convert_blocks",
]

Wire = Literal["number", "boolean"]  # what an edge carries
NUMBER: Final = "number"
BOOLEAN: Final = "boolean"


@dataclass(frozen=True, slots=True)
class _BlockType:
    output: Wire | None  # None for a root
    inputs: Literal["none", "pair", "many", "one"]  # pair: left/right numbers; many: >= 1, one: 1 boolean


BLOCK_TYPES: dict[str, _BlockType] = {
    "price": _BlockType(NUMBER, "none"),
    "number": _BlockType(NUMBER, "none"),
    "indicator": _BlockType(NUMBER, "none"),
    "compare": _BlockType(BOOLEAN, "pair"),
    "cross": _BlockType(BOOLEAN, "pair"),
    "and": _BlockType(BOOLEAN, "many"),
    "or": _BlockType(BOOLEAN, "many"),
    "not": _BlockType(BOOLEAN, "one"),
    "entry": _BlockType(None, "one"),
    "exit": _BlockType(None, "one"),
}
COMPARE_OPS: tuple[str, ...] = ("<", "<=", ">", ">=")
CROSS_DIRECTIONS: dict[str, str] = {"above": "crosses_above", "below": "crosses_below"}
PAIR_HANDLES: tuple[str, ...] = ("left", "right")
# What `_roots` enforces, as data for editors: blocks of each root type in a graph, (at least, at most).
ROOT_COUNTS: dict[str, tuple[int, int]] = {"entry": (1, 1), "exit": (0, 1)}
# Size caps of one graph (the web layer enforces them on the request body).
MAX_NODES = 2000
MAX_EDGES = 4000
META_FIELDS = frozenset(
    {
        "name",
        "description",
        "symbol",
        "interval",
        "stop_loss",
        "take_profit",
        "trailing_stop",
        "position_size",
        "parameters",  # tunable parameters, as in the spec; blocks refer to them as {"param": name}
    }
)


@dataclass(frozen=True, slots=True)
class _Node:
    id: str
    type: str
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class _Input:
    handle: str | None
    source: str


@dataclass(frozen=True, slots=True)
class BlockStrategy:
    """A graph's validated spec and, per spec path it produced, the ids of the blocks behind that path."""

    spec: StrategySpec
    nodes: dict[str, tuple[str, ...]]


def blocks_to_spec(graph: Mapping[str, Any]) -> StrategySpec:
    """The validated canonical spec of a graph (``.to_dict()`` for JSON), or InvalidInput naming the node."""
    return blocks_to_strategy(graph).spec


def blocks_to_strategy(graph: Mapping[str, Any]) -> BlockStrategy:
    """``blocks_to_spec`` plus the blocks behind each spec path (see ``BlockStrategy``)."""
    converter = _Converter(graph)
    raw, origins = converter.convert()
    spec = _validated(raw, origins)
    nodes: dict[str, tuple[str, ...]] = {path: (node,) for path, node in origins.items()}
    for path, root in converter.roots.items():
        # A finding about "entry" is about the entry block and the condition wired into it.
        nodes[path] = (root, *nodes[path])
    return BlockStrategy(spec, nodes)


def _validated(raw: Mapping[str, Any], origins: Mapping[str, str]) -> StrategySpec:
    try:
        return validate_spec(raw)
    except InvalidInput as exc:
        details = dict(exc.details) if isinstance(exc.details, Mapping) else {}
        path = str(details.get("path", ""))
        node = _origin(origins, path)
        if node is not None:
            details["node"] = node
            raise InvalidInput(f"Block {node!r}: {exc.message}", details=details) from None
        if path.split(".", 1)[0] in META_FIELDS:
            # Settings live in the graph's meta object: say so in the path the editor gets.
            details["path"] = f"meta.{path}"
            message = exc.message.replace(f" at {path}", f" at meta.{path}", 1)
            raise InvalidInput(message, details={**details, "node": None}) from None
        raise InvalidInput(exc.message, details={**details, "node": None}) from None


def convert_blocks(graph: Mapping[str, Any]) -> dict[str, Any]:
    """The raw spec dict of a block graph, before the spec's own validation (graph errors still raise)."""
    raw, _ = _Converter(graph).convert()
    return raw


def _origin(origins: Mapping[str, str], path: str) -> str | None:
    """The block behind the longest converted path that contains ``path``."""
    containing = [p for p in origins if path == p or path.startswith((f"{p}.", f"{p}["))]
    return origins[max(containing, key=len)] if containing else None


def _error(message: str, node: str | None, **extra: Any) -> InvalidInput:
    return InvalidInput(message, details={"node": node, **extra})


class _Converter:
    def __init__(self, graph: Mapping[str, Any]) -> None:
        if not isinstance(graph, Mapping):
            raise _error("A block graph must be a JSON object with nodes and edges.", None)
        self.graph = graph
        self.nodes: dict[str, _Node] = {}
        self.inputs: dict[str, list[_Input]] = {}
        self.origins: dict[str, str] = {}
        self.roots: dict[str, str] = {}  # "entry"/"exit" -> the root block's id

    def convert(self) -> tuple[dict[str, Any], dict[str, str]]:
        self._read_nodes()
        self._read_edges()
        for node in self.nodes.values():
            self._check_inputs(node)
        order = self._topological_order()
        entry, exit_ = self._roots()
        self._check_connected(entry, exit_)
        self._check_limits(order, entry, exit_)
        raw: dict[str, Any] = self._meta()
        raw["entry"] = self._build(self.inputs[entry][0].source, "entry")
        self.roots["entry"] = entry
        if exit_ is not None:
            raw["exit"] = self._build(self.inputs[exit_][0].source, "exit")
            self.roots["exit"] = exit_
        return raw, self.origins

    # ------------------------------------------------------------------------------------------ reading

    def _read_nodes(self) -> None:
        nodes = self.graph.get("nodes")
        if not isinstance(nodes, list):
            raise _error('A block graph needs a "nodes" list.', None)
        for index, item in enumerate(nodes):
            if not isinstance(item, Mapping) or not isinstance(item.get("id"), str) or not item["id"]:
                raise _error(f"Node {index} needs a non-empty string id.", None, index=index)
            node_id = item["id"]
            if node_id in self.nodes:
                raise _error(f"Two blocks have the id {node_id!r}; ids must be unique.", node_id)
            kind = item.get("type")
            if not isinstance(kind, str) or kind not in BLOCK_TYPES:
                raise _error(
                    f"Block {node_id!r} has unknown type {kind!r}; known types: {', '.join(BLOCK_TYPES)}.",
                    node_id,
                )
            data = item.get("data", {})
            if data is None:
                data = {}
            if not isinstance(data, Mapping):
                raise _error(f"Block {node_id!r}: data must be an object.", node_id)
            self.nodes[node_id] = _Node(node_id, kind, data)
            self.inputs[node_id] = []

    def _read_edges(self) -> None:
        edges = self.graph.get("edges", [])
        if not isinstance(edges, list):
            raise _error('"edges" must be a list.', None)
        for index, edge in enumerate(edges):
            if not isinstance(edge, Mapping):
                raise _error(f"Edge {index} must be an object with source and target.", None, edge=index)
            label = edge.get("id", index)
            source, target = edge.get("source"), edge.get("target")
            for end, value in (("source", source), ("target", target)):
                if not isinstance(value, str) or value not in self.nodes:
                    raise _error(
                        f"Edge {label!r} has {end} {value!r}, which is not a block in the graph.",
                        value if isinstance(value, str) else None,
                        edge=label,
                    )
            assert isinstance(source, str) and isinstance(target, str)
            if BLOCK_TYPES[self.nodes[source].type].output is None:
                raise _error(
                    f"Edge {label!r} starts at the {self.nodes[source].type} block {source!r}, which has no "
                    "output.",
                    source,
                    edge=label,
                )
            handle = edge.get("targetHandle")
            self.inputs[target].append(_Input(handle if isinstance(handle, str) else None, source))

    # ----------------------------------------------------------------------------------------- checking

    def _describe(self, node_id: str) -> str:
        return f"{self.nodes[node_id].type} block {node_id!r}"

    def _check_inputs(self, node: _Node) -> None:
        kind = BLOCK_TYPES[node.type]
        inputs = self.inputs[node.id]
        name = self._describe(node.id)
        if kind.inputs == "none":
            if inputs:
                raise _error(f"The {name} takes no inputs, but {len(inputs)} edge(s) lead into it.", node.id)
            return
        if kind.inputs == "pair":
            for item in inputs:
                if item.handle not in PAIR_HANDLES:
                    raise _error(
                        f"The {name} has an input on handle {item.handle!r}; its inputs are 'left' and "
                        "'right'.",
                        node.id,
                    )
            for handle in PAIR_HANDLES:
                count = sum(1 for item in inputs if item.handle == handle)
                if count != 1:
                    problem = "no input" if count == 0 else f"{count} inputs"
                    raise _error(f"The {name} has {problem} on {handle!r}; it needs exactly one.", node.id)
            wanted = NUMBER
        elif kind.inputs == "one":
            if len(inputs) != 1:
                problem = "no input" if not inputs else f"{len(inputs)} inputs"
                raise _error(f"The {name} has {problem}; it needs exactly one condition.", node.id)
            wanted = BOOLEAN
        else:
            if not inputs:
                raise _error(f"The {name} has no input; it needs at least one condition.", node.id)
            wanted = BOOLEAN
        for item in inputs:
            given = BLOCK_TYPES[self.nodes[item.source].type].output
            if given != wanted:
                where = f" on {item.handle!r}" if kind.inputs == "pair" else ""
                raise _error(
                    f"The {name} needs a {wanted}{where}, but the {self._describe(item.source)} gives a "
                    f"{given}.",
                    node.id,
                )

    def _topological_order(self) -> list[str]:
        """Sources before targets (Kahn's algorithm); a cycle is an error naming a block on it."""
        remaining = {node_id: len(inputs) for node_id, inputs in self.inputs.items()}
        targets: dict[str, list[str]] = {node_id: [] for node_id in self.nodes}
        for node_id, inputs in self.inputs.items():
            for item in inputs:
                targets[item.source].append(node_id)
        ready = [node_id for node_id in self.nodes if remaining[node_id] == 0]
        order: list[str] = []
        while ready:
            node_id = ready.pop()
            order.append(node_id)
            for target in targets[node_id]:
                remaining[target] -= 1
                if remaining[target] == 0:
                    ready.append(target)
        if len(order) < len(self.nodes):
            cycle = self._find_cycle({node_id for node_id, count in remaining.items() if count > 0})
            raise _error(
                f"The blocks form a cycle: {' -> '.join(map(repr, cycle))}; a condition cannot depend on "
                "itself.",
                cycle[0],
                cycle=cycle,
            )
        return order

    def _find_cycle(self, stuck: set[str]) -> list[str]:
        # Every stuck block has an input from another stuck block, so walking inputs backwards must repeat.
        node_id = min(stuck)
        seen: dict[str, int] = {}
        walk: list[str] = []
        while node_id not in seen:
            seen[node_id] = len(walk)
            walk.append(node_id)
            node_id = next(item.source for item in self.inputs[node_id] if item.source in stuck)
        cycle = walk[seen[node_id] :]
        cycle.reverse()  # in the direction of the edges
        start = cycle.index(min(cycle))  # a stable report: the same cycle always starts at the same block
        cycle = cycle[start:] + cycle[:start]
        return [*cycle, cycle[0]]

    def _roots(self) -> tuple[str, str | None]:
        entries = [node_id for node_id, node in self.nodes.items() if node.type == "entry"]
        exits = [node_id for node_id, node in self.nodes.items() if node.type == "exit"]
        if not entries:
            raise _error("The graph has no entry block; add one and connect the entry condition to it.", None)
        if len(entries) > 1:
            raise _error(
                f"The graph has {len(entries)} entry blocks ({', '.join(map(repr, entries))}); exactly "
                "one is allowed.",
                entries[1],
            )
        if len(exits) > 1:
            raise _error(
                f"The graph has {len(exits)} exit blocks ({', '.join(map(repr, exits))}); at most one is "
                "allowed.",
                exits[1],
            )
        return entries[0], exits[0] if exits else None

    def _check_connected(self, entry: str, exit_: str | None) -> None:
        reached = {entry} | ({exit_} if exit_ else set())
        stack = list(reached)
        while stack:
            for item in self.inputs[stack.pop()]:
                if item.source not in reached:
                    reached.add(item.source)
                    stack.append(item.source)
        for node_id in self.nodes:
            if node_id not in reached:
                raise _error(
                    f"The {self._describe(node_id)} is not connected to the entry or exit block.", node_id
                )

    def _check_limits(self, order: list[str], entry: str, exit_: str | None) -> None:
        """The spec's depth and comparison limits, on the tree the graph unfolds into (a shared block counts
        once per use), computed without unfolding it."""
        depth: dict[str, int] = {}
        count: dict[str, int] = {}
        for node_id in order:
            kind = BLOCK_TYPES[self.nodes[node_id].type]
            if kind.output != BOOLEAN:
                continue
            sources = [item.source for item in self.inputs[node_id]]
            if kind.inputs == "pair":
                depth[node_id], count[node_id] = 1, 1
            else:
                depth[node_id] = 1 + max(depth[s] for s in sources)
                # Capped: fan-out can make the unfolded size exponential in the number of blocks.
                count[node_id] = min(sum(count[s] for s in sources), MAX_COMPARISONS + 1)
            if depth[node_id] > MAX_DEPTH:
                raise _error(
                    f"Conditions are nested more than {MAX_DEPTH} levels deep at the "
                    f"{self._describe(node_id)} (at most {MAX_DEPTH} allowed).",
                    node_id,
                    limit=MAX_DEPTH,
                )
            if count[node_id] > MAX_COMPARISONS:
                raise _error(
                    f"The {self._describe(node_id)} unfolds into more than {MAX_COMPARISONS} comparisons "
                    f"(at most {MAX_COMPARISONS} allowed in entry and exit together).",
                    node_id,
                    limit=MAX_COMPARISONS,
                )
        total = sum(count[self.inputs[root][0].source] for root in (entry, exit_) if root is not None)
        if total > MAX_COMPARISONS:
            raise _error(
                f"Entry and exit together unfold into more than {MAX_COMPARISONS} comparisons "
                f"(at most {MAX_COMPARISONS} allowed).",
                exit_,
                limit=MAX_COMPARISONS,
            )

    # ----------------------------------------------------------------------------------------- building

    def _meta(self) -> dict[str, Any]:
        meta = self.graph.get("meta", {})
        if not isinstance(meta, Mapping):
            raise InvalidInput(
                '"meta" must be an object with name, symbol, interval and stops.', details={"path": "meta"}
            )
        for key in meta:
            if key not in META_FIELDS:
                raise InvalidInput(
                    f"meta.{key} is not a strategy setting; allowed: {', '.join(sorted(META_FIELDS))}.",
                    details={"path": f"meta.{key}"},
                )
        return dict(meta)

    def _build(self, node_id: str, path: str) -> Any:
        # Recursion depth is bounded by MAX_DEPTH, checked in _check_limits.
        self.origins[path] = node_id
        node = self.nodes[node_id]
        data = node.data
        inputs = self.inputs[node_id]
        if node.type == "price":
            return _with_offset({"price": data.get("field")}, data)
        if node.type == "number":
            return data.get("value")
        if node.type == "indicator":
            operand: dict[str, Any] = {"indicator": data.get("name"), "params": data.get("params") or {}}
            if data.get("output") is not None:
                operand["output"] = data["output"]
            return _with_offset(operand, data)
        if node.type in ("compare", "cross"):
            op = self._operator(node)
            by_handle = {item.handle: item.source for item in inputs}
            return {
                "left": self._build(by_handle["left"], f"{path}.left"),
                "op": op,
                "right": self._build(by_handle["right"], f"{path}.right"),
            }
        if node.type == "not":
            return {"not": self._build(inputs[0].source, f"{path}.not")}
        key = "all" if node.type == "and" else "any"
        return {key: [self._build(item.source, f"{path}.{key}[{i}]") for i, item in enumerate(inputs)]}

    def _operator(self, node: _Node) -> str:
        if node.type == "compare":
            op = node.data.get("op")
            if op not in COMPARE_OPS:
                raise _error(
                    f"The compare block {node.id!r} has op {op!r}; use one of {' '.join(COMPARE_OPS)} "
                    "(crossovers are cross blocks).",
                    node.id,
                )
            return str(op)
        direction = node.data.get("direction")
        if not isinstance(direction, str) or direction not in CROSS_DIRECTIONS:
            raise _error(
                f"The cross block {node.id!r} has direction {direction!r}; use 'above' or 'below'.", node.id
            )
        return CROSS_DIRECTIONS[str(direction)]


def _with_offset(operand: dict[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    if data.get("offset") is not None:
        operand["offset"] = data["offset"]
    return operand
