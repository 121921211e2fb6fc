"""GET /api/strategies/blocks end to end: the palette a strategy editor is built from, a graph built from its
JSON alone accepted by POST /api/strategies/from-blocks, and health findings naming the blocks."""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from main import create_app
from strategy_engine.blocks_palette import palette
from tests.support.http import AUTH
from tests.support.settings import make_settings


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One offline app on the sample data for the module (the tests only add strategies)."""
    settings = make_settings(tmp_path_factory.mktemp("blocks"))
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def get_palette(client: TestClient) -> dict[str, Any]:
    response = client.get("/api/strategies/blocks", headers=AUTH)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_the_palette_is_served_and_not_taken_for_a_strategy_id(client: TestClient) -> None:
    body = get_palette(client)
    assert body == palette().model_dump(mode="json")
    assert [b["type"] for b in body["blocks"]] == [
        "price", "number", "indicator", "compare", "cross", "and", "or", "not", "entry", "exit",
    ]  # fmt: skip
    assert {"sma", "macd", "bollinger"} <= {i["name"] for i in body["indicators"]}
    assert client.get("/api/strategies/blocks").status_code == 401
    assert client.get("/api/strategies/999", headers=AUTH).json()["error"]["code"] == "strategy_not_found"


def test_the_contract_names_the_palette_and_shows_a_real_example(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/api/strategies/blocks"]["get"]
    assert operation["operationId"] == "strategies_blocks"
    content = operation["responses"]["200"]["content"]["application/json"]
    assert content["schema"] == {"$ref": "#/components/schemas/BlocksPalette"}
    whole = palette().model_dump(mode="json", exclude_none=True)  # the document drops nulls
    assert content["example"]["blocks"] == whole["blocks"][:3]
    assert content["example"]["limits"] == whole["limits"]
    assert set(operation["responses"]) == {"200", "401"}


class Builder:
    """A block graph from the palette's JSON alone: each block's required data and integers at `pick` of
    their range (default, minimum or maximum; for a list of choices its first or last), wired only as
    `connections` allow."""

    def __init__(self, body: dict[str, Any], pick: str) -> None:
        self.blocks = {b["type"]: b for b in body["blocks"]}
        self.allowed = {(c["source"], c["target"], c["target_handle"]) for c in body["connections"]}
        self.meta_fields = {f["name"]: f for f in body["meta"]}
        self.pick = pick
        self.nodes: list[dict[str, Any]] = []
        self.edges: list[dict[str, Any]] = []
        self.rotation = {
            wire: itertools.cycle([b["type"] for b in body["blocks"] if b["output"] == wire])
            for wire in ("number", "boolean")
        }

    def value(self, field: dict[str, Any]) -> Any:
        choices = field["choices"]
        if choices:
            return {"default": field["default"] or choices[0], "minimum": choices[0], "maximum": choices[-1]}[
                self.pick
            ]
        chosen = None if self.pick == "default" else field[self.pick]
        return field["default"] if chosen is None else chosen

    def add(self, kind: str) -> str:
        node_id = f"{kind}_{len(self.nodes)}"
        fields = self.blocks[kind]["data"]
        data = {f["name"]: self.value(f) for f in fields if f["required"] or f["type"] == "integer"}
        self.nodes.append({"id": node_id, "type": kind, "position": {"x": 0, "y": 0}, "data": data})
        return node_id

    def feed(self, kind: str) -> str:
        node_id = self.add(kind)
        taken: set[str] = set()
        for handle in self.blocks[kind]["inputs"]:
            for _ in range(handle["min_edges"]):
                source = self.source_for(kind, handle, taken)
                taken.add(source)
                self.edges.append(
                    {"source": self.feed(source), "target": node_id, "targetHandle": handle["name"]}
                )
        return node_id

    def source_for(self, target: str, handle: dict[str, Any], taken: set[str]) -> str:
        while True:
            source = next(self.rotation[handle["accepts"]])
            if (source, target, handle["name"]) in self.allowed and not (
                source == "number" and "number" in taken
            ):
                return source

    def one_of_each(self) -> dict[str, Any]:
        conditions = [self.feed(kind) for kind, b in self.blocks.items() if b["output"] == "boolean"]
        both = self.add("and")
        self.edges += [{"source": c, "target": both, "targetHandle": "in"} for c in conditions]
        entry = self.add("entry")
        self.edges.append({"source": both, "target": entry, "targetHandle": "in"})
        for kind, block in self.blocks.items():
            if block["role"] == "root" and kind != "entry":
                self.feed(kind)
        assert {n["type"] for n in self.nodes} == set(self.blocks)
        return {"meta": self.meta(), "nodes": self.nodes, "edges": self.edges}

    def meta(self) -> dict[str, Any]:
        fields = self.meta_fields
        assert re.fullmatch(fields["symbol"]["pattern"], "BTCUSDT")
        assert "1h" in fields["interval"]["choices"]
        assert [f for f in fields.values() if f["required"]] == [
            fields[k] for k in ("name", "symbol", "interval")
        ]
        return {"name": f"From the palette ({self.pick})", "symbol": "BTCUSDT", "interval": "1h"}


@pytest.mark.parametrize("pick", ["default", "minimum", "maximum"])
def test_a_graph_built_from_the_palette_alone_is_accepted(client: TestClient, pick: str) -> None:
    graph = Builder(get_palette(client), pick).one_of_each()
    response = client.post("/api/strategies/from-blocks", json=graph, headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["spec"]["name"] == graph["meta"]["name"]
    assert "all" in body["spec"]["entry"] and body["spec"]["exit"] is not None
    offsets = [n["data"]["offset"] for n in graph["nodes"] if "offset" in n["data"]]
    assert offsets and set(offsets) == {100_000 if pick == "maximum" else 0}
    assert body["health"]["data"]["source"] == "sample"


NEVER_GRAPH: dict[str, Any] = {
    "meta": {"name": "Moonshot", "symbol": "BTCUSDT", "interval": "1h", "stop_loss": 0.05},
    "nodes": [
        {"id": "close", "type": "price", "data": {"field": "close"}},
        {"id": "sma50", "type": "indicator", "data": {"name": "sma", "params": {"period": 50}}},
        {"id": "uptrend", "type": "compare", "data": {"op": ">"}},
        {"id": "a_trillion", "type": "number", "data": {"value": 1e12}},
        {"id": "moonshot", "type": "compare", "data": {"op": ">"}},
        {"id": "buy_when", "type": "and", "data": {}},
        {"id": "go", "type": "entry", "data": {}},
    ],
    "edges": [
        {"source": "close", "target": "uptrend", "targetHandle": "left"},
        {"source": "sma50", "target": "uptrend", "targetHandle": "right"},
        {"source": "close", "target": "moonshot", "targetHandle": "left"},
        {"source": "a_trillion", "target": "moonshot", "targetHandle": "right"},
        {"source": "uptrend", "target": "buy_when", "targetHandle": "in"},
        {"source": "moonshot", "target": "buy_when", "targetHandle": "in"},
        {"source": "buy_when", "target": "go", "targetHandle": "in"},
    ],
}


def test_health_findings_from_blocks_name_the_blocks(client: TestClient) -> None:
    response = client.post("/api/strategies/from-blocks", json=NEVER_GRAPH, headers=AUTH)
    assert response.status_code == 200, response.text
    findings = response.json()["health"]["findings"]
    by_code = {f["code"]: f for f in findings}
    assert by_code["condition_never_true"]["path"] == "entry.all[1]"
    assert by_code["condition_never_true"]["node_ids"] == ["moonshot"]
    assert by_code["entry_never_true"]["node_ids"] == ["go", "buy_when"]
    assert all(f["node_ids"] == [] for f in findings if f["path"] is None)

    # The same strategy saved as a spec: the findings are the same, but there are no blocks to name.
    saved = client.post("/api/strategies", json=response.json()["spec"], headers=AUTH)
    assert saved.status_code == 201, saved.text
    saved_findings = saved.json()["health"]["findings"]
    assert [(f["code"], f["path"]) for f in saved_findings] == [(f["code"], f["path"]) for f in findings]
    assert all(f["node_ids"] == [] for f in saved_findings)


def test_a_strategy_saved_from_blocks_keeps_the_block_names_in_its_health(client: TestClient) -> None:
    graph = copy.deepcopy(NEVER_GRAPH)
    graph["meta"]["name"] = "Moonshot from blocks"  # the module's client already saved "Moonshot"
    saved = client.post("/api/strategies/from-blocks/save", json=graph, headers=AUTH)
    assert saved.status_code == 201, saved.text
    body = saved.json()
    checked = client.post("/api/strategies/from-blocks", json=graph, headers=AUTH).json()
    assert body["spec"] == checked["spec"]
    assert body["health"]["findings"] == checked["health"]["findings"]
    stored = client.get(f"/api/strategies/{body['id']}", headers=AUTH).json()
    by_code = {f["code"]: f for f in stored["health"]["findings"]}
    assert by_code["condition_never_true"]["node_ids"] == ["moonshot"]
    assert by_code["entry_never_true"]["node_ids"] == ["go", "buy_when"]
    # A new version written as a JSON spec has no blocks behind it.
    updated = client.put(f"/api/strategies/{body['id']}", json=body["spec"], headers=AUTH).json()
    assert updated["version"] == 2 and all(f["node_ids"] == [] for f in updated["health"]["findings"])
    again = client.post("/api/strategies/from-blocks/save", json=graph, headers=AUTH)
    assert again.status_code == 409 and again.json()["error"]["code"] == "strategy_exists"


def _tunable_stop_graph(**meta: Any) -> dict[str, Any]:
    graph = copy.deepcopy(NEVER_GRAPH)
    graph["meta"].update(meta)
    return graph


def test_a_stop_given_by_a_tunable_parameter_goes_through(client: TestClient) -> None:
    graph = _tunable_stop_graph(
        take_profit={"param": "tp"}, parameters={"tp": {"type": "choice", "choices": [0.03, 0.06]}}
    )
    response = client.post("/api/strategies/from-blocks", json=graph, headers=AUTH)
    assert response.status_code == 200, response.text
    spec = response.json()["spec"]
    assert spec["take_profit"] == {"param": "tp"} and spec["stop_loss"] == 0.05


@pytest.mark.parametrize(
    ("meta", "field"),
    [
        ({"stop_loss": "0.03"}, "stop_loss"),  # a string is not converted into a number on the way
        ({"take_profit": True}, "take_profit"),
        ({"name": 7}, "name"),
    ],
)
def test_settings_of_the_wrong_type_are_refused_not_converted(
    client: TestClient, meta: dict[str, Any], field: str
) -> None:
    response = client.post("/api/strategies/from-blocks", json=_tunable_stop_graph(**meta), headers=AUTH)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    named = [error["details"].get("field") or "", error["details"].get("path") or ""]
    assert any(field in place for place in named), error
