"""POST /api/optimize and /api/optimizations through the real app, from an empty install: a built-in and a
JSON strategy with tunable parameters, walk-forward, the statistics in the stored result, bad input as a
422 naming the field, cancel leaving nothing, and the same result on a real Dask cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backtester.optimize import service
from main import create_app
from tests.support.dask_cluster import DaskCluster
from tests.support.http import AUTH, ctx_of, wait_for_job
from tests.support.settings import make_settings

SMA_SPACE = {
    "fast": {"type": "int", "low": 5, "high": 40, "step": 5},
    "slow": {"type": "int", "low": 60, "high": 160, "step": 20},
}
BUILTIN = {
    "symbol": "BTCUSDT",
    "interval": "1h",
    "strategy": "sma_crossover",
    "space": SMA_SPACE,
    "start": "2024-01-01",
    "end": "2024-07-01",
    "n_trials": 12,
    "constraints": {"min_trades": 3},
}


def tunable_spec() -> dict[str, Any]:
    return {
        "name": "RSI dip, tunable",
        "symbol": "BTCUSDT",
        "interval": "1h",
        "entry": {
            "left": {"indicator": "rsi", "params": {"period": {"param": "period"}}},
            "op": "<",
            "right": {"param": "low"},
        },
        "exit": {
            "left": {"indicator": "rsi", "params": {"period": {"param": "period"}}},
            "op": ">",
            "right": 60,
        },
        "parameters": {
            "period": {"type": "int", "low": 6, "high": 24, "step": 6, "default": 12},
            "low": {"type": "float", "low": 20, "high": 40, "step": 5, "default": 30},
        },
    }


def _with_parameter(name: str, tunable: dict[str, Any]) -> dict[str, Any]:
    spec = tunable_spec()
    spec["parameters"][name] = tunable
    return spec


def distinct(trials: list[dict[str, Any]]) -> int:
    """How many different sets of values the trials tried."""
    return len({tuple(sorted(t["values"].items())) for t in trials})


def optimise(client: TestClient, **changes: Any) -> dict[str, Any]:
    started = client.post("/api/optimize", json={**BUILTIN, **changes}, headers=AUTH)
    assert started.status_code == 202, started.text
    job = wait_for_job(client, started.json(), timeout=600)
    assert job["status"] == "done", job
    optimization = client.get(f"/api/optimizations/{job['result']['optimization_id']}", headers=AUTH)
    assert optimization.status_code == 200, optimization.text
    body: dict[str, Any] = optimization.json()
    assert job["result"]["winner"] == (body["winner"] or {}).get("values")
    assert job["result"]["verdict"] == body["verdict"]["level"]
    return body


def test_a_built_in_optimisation_carries_its_statistics(client: TestClient) -> None:
    body = optimise(client)
    assert (body["kind"], body["strategy_kind"], body["n_trials"]) == ("search", "builtin", 12)
    assert len(body["trials"]) == 12
    winner = body["winner"]
    assert winner["feasible"] and winner["n_trades"] >= 3
    assert 5 <= winner["values"]["fast"] <= 40 and winner["values"]["slow"] in (60, 80, 100, 120, 140, 160)
    feasible = [t["objective"] for t in body["trials"] if t["feasible"]]
    assert winner["objective"] == max(feasible), "the winner is the best feasible trial"
    stats = body["statistics"]
    assert stats["spread"]["count"] == 12 and stats["spread"]["best"] == pytest.approx(max(feasible))
    assert stats["deflated_sharpe"]["n_trials"] == distinct(body["trials"]), "a repeat is no new trial"
    assert 0.0 <= stats["deflated_sharpe"]["dsr"] <= 1.0
    assert stats["pbo"] is not None and 0.0 <= stats["pbo"]["pbo"] <= 1.0
    hood = stats["neighbourhood"]
    assert (hood["x_param"], hood["y_param"]) == ("fast", "slow")
    assert len(hood["z"]) == len(hood["y_values"]) and all(
        len(row) == len(hood["x_values"]) for row in hood["z"]
    )
    assert all(5 <= x <= 40 for x in hood["x_values"]) and all(60 <= y <= 160 for y in hood["y_values"])
    row = hood["y_values"].index(winner["values"]["slow"])
    column = hood["x_values"].index(winner["values"]["fast"])
    assert hood["z"][row][column] == pytest.approx(winner["objective"]), "centred on the search's winner"
    assert hood["winner_metric"] == pytest.approx(winner["objective"])
    assert (
        body["verdict"]["level"] in ("credible", "doubtful", "likely_overfit") and body["verdict"]["reasons"]
    )
    curve = body["equity_curve"]
    assert curve[-1]["equity"] == pytest.approx(winner["metrics"]["final_equity"])
    listed = client.get("/api/optimizations", headers=AUTH, params={"symbol": "BTCUSDT"}).json()
    assert listed["total"] == 1 and listed["optimizations"][0]["id"] == body["id"]


def test_a_minimised_objective_has_its_own_values_in_the_heatmap(client: TestClient) -> None:
    body = optimise(client, objective="max_drawdown", n_trials=8)
    assert body["direction"] == "minimize"
    winner, hood = body["winner"], body["statistics"]["neighbourhood"]
    feasible = [t["objective"] for t in body["trials"] if t["feasible"]]
    assert winner["objective"] == min(feasible) > 0, "the shallowest drawdown wins"
    row = hood["y_values"].index(winner["values"]["slow"])
    column = hood["x_values"].index(winner["values"]["fast"])
    assert hood["z"][row][column] == pytest.approx(winner["objective"]), "not negated"
    cells = [v for line in hood["z"] for v in line if v is not None]
    assert min(cells) >= 0 and hood["winner_metric"] == pytest.approx(winner["objective"])
    if hood["mean_ratio"] is not None:
        assert hood["mean_ratio"] == pytest.approx(
            winner["objective"] / ((sum(cells) - winner["objective"]) / (len(cells) - 1))
        )


def test_a_json_strategy_is_optimised_walk_forward_over_its_own_parameters(client: TestClient) -> None:
    body = optimise(
        client,
        strategy=tunable_spec(),
        space=None,
        n_trials=6,
        constraints={"min_trades": 1},
        walk_forward={"mode": "anchored", "windows": 3},
    )
    assert (body["kind"], body["strategy_kind"]) == ("walk_forward", "inline")
    wf = body["walk_forward"]
    assert wf["mode"] == "anchored" and len(wf["windows"]) == 3
    starts = [w["in_sample"]["start_time"] for w in wf["windows"]]
    assert len(set(starts)) == 1, "anchored: every in-sample window starts at the first bar"
    for window in wf["windows"]:
        assert window["in_sample"]["end_time"] < window["out_of_sample"]["start_time"], "no overlap"
        if window["winner"] is not None:
            assert set(window["winner"]["values"]) == {"period", "low"}
    curve = body["equity_curve"]
    assert curve[0]["time"] == wf["windows"][0]["out_of_sample"]["start_time"], "out-of-sample bars only"
    assert wf["oos_metrics"]["final_equity"] == pytest.approx(curve[-1]["equity"])
    assert set(wf["stability"]["parameters"]) == {"period", "low"}
    assert body["n_trials"] == 18
    # Statistics on every result: each window's, with its heatmap around its own winner, and at the
    # top the last window's (whose winner is the one to trade).
    for window in wf["windows"]:
        assert window["trials"] == 6 and 1 <= window["statistics"]["deflated_sharpe"]["n_trials"] <= 6
        if window["winner"] is not None:
            hood = window["statistics"]["neighbourhood"]
            assert (hood["x_param"], hood["y_param"]) == ("period", "low")
            row = hood["y_values"].index(window["winner"]["values"]["low"])
            column = hood["x_values"].index(window["winner"]["values"]["period"])
            assert hood["z"][row][column] == pytest.approx(window["winner"]["objective"])
    assert body["statistics"] == wf["windows"][-1]["statistics"]
    assert len(body["trials"]) == 6
    assert body["statistics"]["deflated_sharpe"]["n_trials"] == distinct(body["trials"])
    if body["winner"] is not None:
        feasible = [t["objective"] for t in body["trials"] if t["feasible"]]
        assert body["winner"]["objective"] == max(feasible), "the last window's best trial"
    reasons = " ".join(body["verdict"]["reasons"])
    assert "best of 6 trials" in reasons and "Median over the 3 walk-forward windows" in reasons


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"objective": "luck"}, "objective"),
        ({"n_trials": 0}, "n_trials"),
        ({"n_trials": 100_000}, "n_trials"),
        ({"space": {"fast": {"type": "int", "low": 40, "high": 5}}}, "space.fast.high"),
        ({"space": {"speed": {"type": "int", "low": 1, "high": 5}}}, "space.speed"),
        ({"space": None}, "space"),
        ({"space": {"fast": {"type": "float", "low": 5.0, "high": 15.0}}, "sampler": "grid"}, "sampler"),
        ({"walk_forward": {"windows": 51}}, "walk_forward.windows"),
        ({"walk_forward": {"windows": 3, "out_of_sample": 0.9}}, "walk_forward"),
        ({"walk_forward": {"windows": 3, "in_sample": 0}}, "walk_forward.in_sample"),
        ({"walk_forward": {"windows": 3, "in_sample": 40}}, "walk_forward.in_sample"),
        ({"walk_forward": {"windows": 3, "in_sample": True}}, "walk_forward.in_sample"),
        ({"walk_forward": {"windows": "3"}}, "walk_forward.windows"),
        ({"n_trials": "5"}, "n_trials"),
        ({"n_trials": True}, "n_trials"),
        ({"n_trials": 5.0}, "n_trials"),
        ({"n_trails": 5}, "n_trails"),
        ({"sampler": "grid", "n_trials": 12}, "n_trials"),  # SMA_SPACE's grid has 48 combinations
        ({"constraints": {"min_tradez": 5}}, "constraints.min_tradez"),
        ({"constraints": {"max_drawdown": 2}}, "constraints.max_drawdown"),
        ({"params": {"fast": 10}}, "params.fast"),
        ({"strategy": tunable_spec(), "space": SMA_SPACE}, "space"),
        ({"space": {"fast": {"type": "int", "low": 5, "high": 40, "step": 7}}}, "space.fast.high"),
        ({"space": {"fast": {"type": "int", "low": 5, "high": 40, "step": 100}}}, "space.fast.step"),
        (
            {"space": {"fast": {"type": "int", "low": 5, "high": 40, "step": 5, "default": 7}}},
            "space.fast.default",
        ),
        ({"space": {"fast": {"type": "choice", "choices": [10, 10, 20]}}}, "space.fast.choices"),
        (
            {"space": {"fast": {"type": "float", "low": 5, "high": 1e300, "step": 1e-10}}, "sampler": "grid"},
            "space.fast.step",
        ),
        ({"space": {"fast": {"type": "float", "low": 5, "high": 1e300, "step": 1e-10}}}, "space.fast.step"),
        # No trial could run: fast must stay below slow (60 to 160), and a period is at least 1.
        (
            {"space": {**SMA_SPACE, "fast": {"type": "int", "low": 200, "high": 400, "step": 100}}},
            "space.fast.low",
        ),
        (
            {"space": {**SMA_SPACE, "fast": {"type": "int", "low": 5, "high": 1000, "step": 5}}},
            "space.fast.high",
        ),
        (
            {"space": {**SMA_SPACE, "fast": {"type": "int", "low": -5, "high": 40, "step": 5}}},
            "space.fast.low",
        ),
        (
            {
                "space": None,
                "strategy": _with_parameter(
                    "low", {"type": "float", "low": -1.7e308, "high": 1.7e308, "step": 1}
                ),
            },
            "strategy.parameters.low.high",
        ),
        (
            {"space": None, "strategy": _with_parameter("spare", {"type": "int", "low": 1, "high": 5})},
            "strategy.parameters.spare",
        ),
    ],
)
def test_bad_requests_are_a_422_naming_the_field(
    client: TestClient, changes: dict[str, Any], field: str
) -> None:
    response = client.post("/api/optimize", json={**BUILTIN, **changes}, headers=AUTH)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    details = error["details"]
    # The service's checks name one field; the schema's own name the first and list every one.
    named = [details["field"].removeprefix("body.")]
    named += [e["field"].removeprefix("body.") for e in details.get("errors") or []]
    assert field in named, error
    jobs = client.get("/api/jobs", headers=AUTH, params={"kind": "optimize"}).json()
    assert jobs["total"] == 0, "a refused optimisation queues nothing"


def test_a_continuous_float_parameter_is_searched_over_its_whole_range(client: TestClient) -> None:
    spec = _with_parameter("low", {"type": "float", "low": 20.0, "high": 40.0})
    body = optimise(client, strategy=spec, space=None, n_trials=8, constraints={"min_trades": 0})
    levels = [t["values"]["low"] for t in body["trials"]]
    assert len(levels) == 8 and all(20.0 <= v <= 40.0 for v in levels)
    assert len(set(levels)) > 1 and max(levels) > 21.0, "not pinned to the low end"
    assert body["statistics"]["deflated_sharpe"]["n_trials"] == distinct(body["trials"])


def test_a_tunable_parameter_the_spec_never_uses_is_refused(client: TestClient) -> None:
    spec = tunable_spec()
    spec["parameters"]["spare"] = {"type": "int", "low": 1, "high": 5}
    response = client.post("/api/optimize", json={**BUILTIN, "strategy": spec, "space": None}, headers=AUTH)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"]["path"] == "parameters.spare"


def test_a_cancelled_optimisation_stores_nothing(client: TestClient) -> None:
    import optuna

    ctx = ctx_of(client)
    started = client.post(
        "/api/optimize", json={**BUILTIN, "start": "2023-01-01", "n_trials": 2_000}, headers=AUTH
    ).json()
    study = started["params"]["optimization_id"]
    storage = ctx.settings.storage.database_url

    def running() -> bool:
        job = client.get(f"/api/jobs/{started['id']}", headers=AUTH).json()
        return bool(job["status"] == "running" and job["progress"] > 0.05)

    from tests.support.server import wait_until

    wait_until(running, timeout=300, what="some trials to be told")
    assert client.post(f"/api/jobs/{started['id']}/cancel", headers=AUTH).status_code == 200
    ended = wait_for_job(client, started, timeout=300)
    assert (ended["status"], ended["result"]) == ("cancelled", None)
    assert client.get("/api/optimizations", headers=AUTH).json()["total"] == 0
    names = [
        s.study_name
        for s in optuna.get_all_study_summaries(service._storage(storage), include_best_trial=False)
    ]
    assert study not in names, "its study is removed too"


def test_the_same_optimisation_on_a_dask_cluster_gives_the_same_result(
    dask_cluster: DaskCluster, tmp_path: Path, client: TestClient
) -> None:
    local = optimise(client, n_trials=8)
    settings = make_settings(tmp_path / "on-cluster", compute_scheduler=dask_cluster.address)
    with TestClient(create_app(settings)) as on_cluster:
        assert ctx_of(on_cluster).compute.name == "dask"
        remote = optimise(on_cluster, n_trials=8)
    keys = ("values", "objective", "feasible", "n_trades")
    assert [{k: t[k] for k in keys} for t in remote["trials"]] == [
        {k: t[k] for k in keys} for t in local["trials"]
    ]
    assert remote["winner"]["values"] == local["winner"]["values"]
    assert remote["statistics"] == local["statistics"]


def test_an_optimisation_keeps_its_studies_in_postgresql(pg_url: str, tmp_path: Path) -> None:
    import optuna

    with TestClient(create_app(make_settings(tmp_path, database_url=pg_url))) as on_pg:
        search = optimise(on_pg, n_trials=6)
        walked = optimise(on_pg, n_trials=4, walk_forward={"mode": "rolling", "windows": 2})
    storage = service._storage(pg_url)
    study = optuna.load_study(study_name=search["id"], storage=storage)
    assert [t.params for t in study.trials] == [t["values"] for t in search["trials"]]
    for index in range(2):
        window = optuna.load_study(study_name=f"{walked['id']}-w{index}", storage=storage)
        assert len(window.trials) == walked["walk_forward"]["windows"][index]["trials"] == 4
    assert [t["values"] for t in walked["trials"]] == [
        t.params for t in optuna.load_study(study_name=f"{walked['id']}-w1", storage=storage).trials
    ], "the top-level trials are the last window's"


def test_a_strategy_saved_from_an_optimisation_carries_its_verdict(client: TestClient) -> None:
    from strategy_engine.strategy_health import VERDICT_PENALTIES

    body = optimise(client, strategy=tunable_spec(), space=None, n_trials=6, constraints={"min_trades": 1})
    saved = client.post(
        "/api/strategies/from-optimization", json={"optimization_id": body["id"]}, headers=AUTH
    )
    assert saved.status_code == 201, saved.text
    strategy = saved.json()
    spec = strategy["spec"]
    winner = body["winner"]["values"]
    assert "parameters" not in spec and spec["name"] == "RSI dip, tunable (optimised)"
    assert spec["entry"]["left"]["params"]["period"] == winner["period"]
    assert spec["entry"]["right"] == winner["low"]
    health = strategy["health"]
    assert health["optimisation"]["optimization_id"] == body["id"]
    assert health["optimisation"]["verdict"] == body["verdict"]["level"]
    assert health["optimisation"]["n_trials"] == 6
    assert health["optimisation"]["dsr"] == body["statistics"]["deflated_sharpe"]["dsr"]
    codes = [f["code"] for f in health["findings"]]
    assert "optimisation_verdict" in codes
    plain = client.post("/api/strategies/validate", json=spec, headers=AUTH).json()["health"]
    penalty = VERDICT_PENALTIES[body["verdict"]["level"]]
    assert health["score"] == max(0, plain["score"] - penalty) if plain["score"] else health["score"] == 0
    # A new version that only renames or redescribes it keeps the verdict; one that trades otherwise drops it.
    url = f"/api/strategies/{strategy['id']}"
    described = client.put(url, json={**spec, "description": "the optimised one"}, headers=AUTH).json()
    assert described["version"] == 2 and described["health"]["optimisation"] == health["optimisation"]
    assert "optimisation_verdict" in [f["code"] for f in described["health"]["findings"]]
    changed = client.put(url, json={**spec, "position_size": 0.5}, headers=AUTH).json()
    assert changed["version"] == 3 and changed["health"].get("optimisation") is None


def test_the_saved_winner_is_of_the_version_optimised_not_a_later_edit(client: TestClient) -> None:
    created = client.post("/api/strategies", json=tunable_spec(), headers=AUTH)
    assert created.status_code == 201, created.text
    strategy_id = created.json()["id"]
    body = optimise(client, strategy=strategy_id, space=None, n_trials=4, constraints={"min_trades": 0})
    jobs = client.get("/api/jobs", headers=AUTH, params={"kind": "optimize"}).json()["jobs"]
    assert jobs[0]["params"]["strategy_version"] == 1, "the version is pinned when the job is queued"
    edited = tunable_spec()
    edited["entry"]["op"] = ">"
    edited["exit"]["right"] = 85
    assert client.put(f"/api/strategies/{strategy_id}", json=edited, headers=AUTH).status_code == 200
    saved = client.post(
        "/api/strategies/from-optimization", json={"optimization_id": body["id"]}, headers=AUTH
    )
    assert saved.status_code == 201, saved.text
    spec = saved.json()["spec"]
    assert (spec["entry"]["op"], spec["exit"]["right"]) == ("<", 60), "version 1's logic, as optimised"
    assert spec["entry"]["right"] == body["winner"]["values"]["low"]


def test_only_a_json_strategy_winner_can_be_saved(client: TestClient) -> None:
    body = optimise(client, n_trials=4)
    refused = client.post(
        "/api/strategies/from-optimization", json={"optimization_id": body["id"]}, headers=AUTH
    )
    assert refused.status_code == 422 and refused.json()["error"]["details"]["field"] == "optimization_id"
    unknown = client.post(
        "/api/strategies/from-optimization", json={"optimization_id": "0" * 32}, headers=AUTH
    )
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "optimization_not_found"
    listed = client.get("/api/strategies", headers=AUTH).json()["strategies"]
    assert not [s for s in listed if s["kind"] == "saved"], "nothing was saved"
