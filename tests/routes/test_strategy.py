"""/api/strategies end to end: save with health, versions, files on disk, safety, concurrency."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from strategy_engine.spec import json_schema
from tests.support.http import AUTH, ctx_of

EXAMPLES = Path(__file__).resolve().parents[2] / "storage" / "strategies" / "examples"
SPEC = json.loads((EXAMPLES / "rsi_dip_trend.spec.json").read_text())
BLOCKS = json.loads((EXAMPLES / "rsi_dip_trend.blocks.json").read_text())


def strategies_dir(client: TestClient) -> Path:
    return ctx_of(client).settings.strategies_dir


def save(client: TestClient, spec: dict[str, Any] | None = None) -> httpx.Response:
    return client.post("/api/strategies", json=spec or SPEC, headers=AUTH)


def test_save_measures_health_and_writes_a_readable_file(client: TestClient) -> None:
    response = save(client)
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["version"], body["latest_version"], body["slug"]) == (1, 1, "rsi-dip-with-trend-filter")
    health = body["health"]
    assert 0 <= health["score"] <= 100
    assert health["data"]["source"] == "sample"
    assert any(f["code"] == "sample_data" for f in health["findings"])
    on_disk = json.loads((strategies_dir(client) / "BTCUSDT" / "rsi-dip-with-trend-filter.json").read_text())
    assert on_disk["spec"] == body["spec"]
    assert on_disk["version"] == 1
    listed = client.get("/api/strategies", headers=AUTH).json()["strategies"]
    saved = [s for s in listed if s["kind"] == "saved"]
    assert [(s["id"], s["health_score"]) for s in saved] == [(body["id"], health["score"])]
    assert {s["name"] for s in listed if s["kind"] == "builtin"} >= {"sma_crossover", "macd_signal"}


def test_updates_make_versions_and_old_ones_stay_readable(client: TestClient) -> None:
    sid = save(client).json()["id"]
    updated = client.put(f"/api/strategies/{sid}", json={**SPEC, "stop_loss": 0.05}, headers=AUTH).json()
    assert (updated["version"], updated["latest_version"]) == (2, 2)
    assert (
        client.get(f"/api/strategies/{sid}", params={"version": 1}, headers=AUTH).json()["spec"]["stop_loss"]
        == SPEC["stop_loss"]
    )
    assert client.get(f"/api/strategies/{sid}", headers=AUTH).json()["spec"]["stop_loss"] == 0.05
    missing = client.get(f"/api/strategies/{sid}", params={"version": 3}, headers=AUTH)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "version_not_found"
    on_disk = json.loads((strategies_dir(client) / "BTCUSDT" / f"{updated['slug']}.json").read_text())
    assert on_disk["version"] == 2
    other_symbol = client.put(f"/api/strategies/{sid}", json={**SPEC, "symbol": "ETHUSDT"}, headers=AUTH)
    assert other_symbol.status_code == 422


def test_renaming_moves_the_file_and_keeps_names_unique(client: TestClient) -> None:
    alpha = save(client, {**SPEC, "name": "Alpha"}).json()["id"]
    gamma = save(client, {**SPEC, "name": "Gamma"}).json()["id"]
    renamed = client.put(f"/api/strategies/{alpha}", json={**SPEC, "name": "Beta"}, headers=AUTH).json()
    assert (renamed["name"], renamed["slug"], renamed["version"]) == ("Beta", "beta", 2)
    folder = strategies_dir(client) / "BTCUSDT"
    assert sorted(p.name for p in folder.iterdir()) == ["beta.json", "gamma.json"]
    assert save(client, {**SPEC, "name": "Alpha"}).status_code == 201, "the old name is free again"
    clash = client.put(f"/api/strategies/{gamma}", json={**SPEC, "name": "beta"}, headers=AUTH)
    assert clash.status_code == 409
    assert clash.json()["error"]["details"]["id"] == alpha
    assert json.loads((folder / "gamma.json").read_text())["version"] == 1, "a refused rename changes nothing"


def test_duplicate_names_conflict_and_delete_removes_everything(client: TestClient) -> None:
    sid = save(client).json()["id"]
    again = save(client, {**SPEC, "name": "RSI  dip with TREND filter!"})  # same slug
    assert again.status_code == 409
    assert again.json()["error"]["details"]["id"] == sid
    assert client.delete(f"/api/strategies/{sid}", headers=AUTH).status_code == 204
    assert client.get(f"/api/strategies/{sid}", headers=AUTH).status_code == 404
    assert client.delete(f"/api/strategies/{sid}", headers=AUTH).status_code == 404
    assert list((strategies_dir(client) / "BTCUSDT").iterdir()) == []


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("../../etc/passwd", "etc-passwd"),
        ("..\\..\\windows\\system32", "windows-system32"),
        ("/absolute/path.json", "absolute-path-json"),
        ("Ünïcödé Straté gy", "unicode-strate-gy"),
        ("a" * 100, "a" * 80),
    ],
)
def test_names_never_reach_a_path_outside_the_folder(client: TestClient, name: str, slug: str) -> None:
    body = save(client, {**SPEC, "name": name}).json()
    assert body["slug"] == slug
    root = strategies_dir(client).resolve()
    files = [p.resolve() for p in root.rglob("*.json")]
    assert files == [root / "BTCUSDT" / f"{slug}.json"]


def test_a_name_without_letters_is_refused(client: TestClient) -> None:
    response = save(client, {**SPEC, "name": "!!! ..."})
    assert response.status_code == 422
    assert response.json()["error"]["details"]["path"] == "name"


def test_invalid_specs_name_the_path(client: TestClient) -> None:
    bad = json.loads(json.dumps(SPEC))
    bad["entry"]["all"][1]["right"]["params"]["period"] = -5
    response = save(client, bad)
    assert response.status_code == 422
    assert response.json()["error"]["details"]["path"] == "entry.all[1].right.params.period"
    future = json.loads(json.dumps(SPEC))
    future["entry"]["all"][0]["left"]["offset"] = -1
    response = save(client, future)
    assert response.status_code == 422
    assert "future" in response.json()["error"]["message"]
    assert client.get("/api/strategies", headers=AUTH).json()["strategies"][-1]["kind"] == "builtin", (
        "nothing was saved"
    )


def test_body_and_nesting_limits(client: TestClient) -> None:
    huge = {**SPEC, "description": "x" * (300 * 1024)}
    assert save(client, huge).status_code == 413
    deep: dict = {"left": {"price": "close"}, "op": ">", "right": 1}
    for _ in range(40):
        deep = {"not": deep}
    response = save(client, {**SPEC, "entry": deep})
    assert response.status_code == 422
    assert "32" in response.json()["error"]["message"]


def test_a_failed_commit_leaves_no_half_saved_strategy(client: TestClient) -> None:
    sid = save(client).json()["id"]
    path = strategies_dir(client) / "BTCUSDT" / "rsi-dip-with-trend-filter.json"
    before = path.read_bytes()
    sessions = ctx_of(client).sessions

    def crash(_session: object) -> None:
        raise RuntimeError("disk full while committing")

    event.listen(sessions, "before_commit", crash)
    try:
        response = client.put(f"/api/strategies/{sid}", json={**SPEC, "stop_loss": 0.07}, headers=AUTH)
    finally:
        event.remove(sessions, "before_commit", crash)
    assert response.status_code == 500
    assert path.read_bytes() == before, "the file is back to the last committed version"
    current = client.get(f"/api/strategies/{sid}", headers=AUTH).json()
    assert (current["latest_version"], current["spec"]["stop_loss"]) == (1, SPEC["stop_loss"])
    assert [p.name for p in path.parent.iterdir()] == [path.name], "no temp files left behind"


def test_concurrent_saves_of_the_same_strategy(client: TestClient) -> None:
    barrier = threading.Barrier(8)

    def create(_: int) -> int:
        barrier.wait()
        return save(client).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(create, range(8)))
    assert statuses == [201] + [409] * 7
    sid = client.get("/api/strategies", headers=AUTH).json()["strategies"][-1]["id"]

    def update(i: int) -> int:
        barrier.wait()
        return client.put(
            f"/api/strategies/{sid}", json={**SPEC, "take_profit": 0.1 + i / 100}, headers=AUTH
        ).json()["version"]

    with ThreadPoolExecutor(8) as pool:
        versions = sorted(pool.map(update, range(8)))
    assert versions == list(range(2, 10))
    latest = client.get(f"/api/strategies/{sid}", headers=AUTH).json()
    on_disk = json.loads((strategies_dir(client) / "BTCUSDT" / f"{latest['slug']}.json").read_text())
    assert on_disk["version"] == latest["latest_version"] == 9
    assert on_disk["spec"] == latest["spec"]


def test_validate_and_from_blocks_do_not_save(client: TestClient) -> None:
    checked = client.post("/api/strategies/validate", json=SPEC, headers=AUTH).json()
    assert set(checked) == {"spec", "health"}
    converted = client.post("/api/strategies/from-blocks", json=BLOCKS, headers=AUTH).json()
    assert (
        converted["spec"]
        == json.loads((EXAMPLES / "rsi_dip_trend.spec.json").read_text()) | converted["spec"]
    )
    assert converted["spec"]["entry"] == checked["spec"]["entry"]
    assert converted["health"]["score"] == checked["health"]["score"]
    bad_graph = {
        **BLOCKS,
        "nodes": [*BLOCKS["nodes"], {"id": "lonely", "type": "number", "data": {"value": 1}}],
    }
    response = client.post("/api/strategies/from-blocks", json=bad_graph, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["error"]["details"]["node"] == "lonely"
    assert [
        s for s in client.get("/api/strategies", headers=AUTH).json()["strategies"] if s["kind"] == "saved"
    ] == []


def test_schema_is_served(client: TestClient) -> None:
    schema = client.get("/api/strategies/schema", headers=AUTH).json()
    text = json.dumps(schema)
    assert "crosses_above" in text and "offset" in text
    assert schema == json_schema(), "the typed body passes the document through unchanged"


def test_backtests_accept_saved_ids_and_inline_specs_with_their_stops(client: TestClient) -> None:
    sid = save(client).json()["id"]
    by_id = client.post("/api/backtest", json={"symbol": "BTCUSDT", "strategy": sid}, headers=AUTH).json()
    inline = client.post("/api/backtest", json={"symbol": "BTCUSDT", "strategy": SPEC}, headers=AUTH).json()
    assert by_id["metrics"] == inline["metrics"]
    assert (by_id["strategy_kind"], by_id["strategy_id"], by_id["strategy_version"]) == ("saved", sid, 1)
    assert (inline["strategy_kind"], inline["strategy_id"]) == ("inline", None)
    listed = client.get("/api/backtest", params={"strategy_id": sid}, headers=AUTH).json()
    assert [b["id"] for b in listed["backtests"]] == [by_id["id"]]
    assert by_id["config"]["stop_loss"] == SPEC["stop_loss"]
    assert by_id["config"]["take_profit"] == SPEC["take_profit"]
    overridden = client.post(
        "/api/backtest", json={"symbol": "BTCUSDT", "strategy": sid, "stop_loss": 0.2}, headers=AUTH
    ).json()
    assert overridden["config"]["stop_loss"] == 0.2
    missing = client.post("/api/backtest", json={"symbol": "BTCUSDT", "strategy": 999}, headers=AUTH)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "strategy_not_found"


def test_a_tunable_spec_is_answered_with_its_references_where_they_stood(client: TestClient) -> None:
    from tests.support.specs import tunable_spec

    raw = tunable_spec()  # references in an indicator's params, a number operand and stop_loss
    checked = client.post("/api/strategies/validate", json=raw, headers=AUTH)
    assert checked.status_code == 200, checked.text
    spec = checked.json()["spec"]
    assert spec["stop_loss"] == {"param": "stop"}
    assert spec["exit"]["right"] == {"param": "level"}
    assert spec["entry"]["left"]["params"]["period"] == {"param": "fast"}
    created = save(client, raw)
    assert created.status_code == 201, created.text
    read = client.get(f"/api/strategies/{created.json()['id']}", headers=AUTH)
    assert read.status_code == 200, read.text
    assert read.json()["spec"] == created.json()["spec"] == spec
