"""Saved strategies vote: live (MOTHER_AI_INCLUDE_STRATEGIES) and in a replay (include_strategies), named as
strategy voters in every decision, recorded, resolved and weighted like agents."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from main import create_app
from tests.support.http import AUTH, ctx_of, wait_for_job
from tests.support.install import TrainedInstall
from tests.support.settings import make_settings

EXAMPLES = Path(__file__).resolve().parents[2] / "storage" / "strategies" / "examples"
SPEC = json.loads((EXAMPLES / "rsi_dip_trend.spec.json").read_text())  # BTCUSDT 1h: the sample has it
H = 3_600_000
SAMPLE_START = 1_672_531_200_000
WARMUP, STEPS = 6000, 200


@pytest.fixture(scope="module")
def voting(
    tmp_path_factory: pytest.TempPathFactory, trained_install: TrainedInstall
) -> Iterator[tuple[TestClient, int]]:
    """An offline install with trained agents and one saved strategy that votes (all of them do)."""
    folder = trained_install.copy_to(tmp_path_factory.mktemp("votes"))
    settings = make_settings(folder, mother_ai_include_strategies="all")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        saved = client.post("/api/strategies", json=SPEC, headers=AUTH)
        assert saved.status_code == 201, saved.text
        assert saved.json()["health"]["can_activate"] is True
        yield client, saved.json()["id"]


def test_a_saved_strategy_votes_live_and_is_tracked(voting: tuple[TestClient, int]) -> None:
    client, strategy_id = voting
    voter = f"strategy:{strategy_id}"
    answer = client.post("/api/mother-ai/decide", json={"symbols": ["BTCUSDT"]}, headers=AUTH)
    first = answer.json()["decision"]
    votes = {v["agent"]: v for v in first["votes"]}
    assert set(votes) == {"BTCUSDT", voter}
    assert votes[voter]["kind"] == "strategy" and votes["BTCUSDT"]["kind"] == "agent"
    assert votes[voter]["symbol"] == "BTCUSDT" and votes[voter]["horizon"] == 4
    assert 0 <= votes[voter]["prob_up"] <= 1 and votes[voter]["weight"]["resolved"] == 0
    assert votes[voter]["model_version"].startswith(f"strategy-{strategy_id}-v")
    assert voter in first["reason"]
    # Recorded with the decision like an agent's prediction (resolved later on the same candles).
    ctx = ctx_of(client)
    assert ctx.mother is not None
    rows, total = ctx.mother.tracker.predictions(decision_id=first["id"])
    assert total == 2 and {r.agent for r in rows} == {"BTCUSDT", voter}


def test_a_listed_strategy_that_does_not_exist_is_ignored_with_the_reason(
    tmp_path: Path, trained_install: TrainedInstall
) -> None:
    settings = make_settings(trained_install.copy_to(tmp_path), mother_ai_include_strategies="4242")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        decision = client.post("/api/mother-ai/decide", json={"symbols": ["BTCUSDT"]}, headers=AUTH).json()
        ignored = {i["agent"]: i["code"] for i in decision["decision"]["ignored"]}
        assert ignored == {"strategy:4242": "strategy_not_found"}
        assert [v["agent"] for v in decision["decision"]["votes"]] == ["BTCUSDT"]


def test_a_replay_includes_the_strategy_as_a_voter(voting: tuple[TestClient, int]) -> None:
    client, strategy_id = voting
    voter = f"strategy:{strategy_id}"
    body = {
        "symbols": ["BTCUSDT"],
        "start": SAMPLE_START,
        "end": SAMPLE_START + (WARMUP + STEPS) * H,
        "warmup": WARMUP,
        "retrain_every": 168,
        "include_strategies": [strategy_id],
    }
    started = client.post("/api/mother-ai/replay", json=body, headers=AUTH)
    assert started.status_code == 202, started.text
    job = wait_for_job(client, started.json())
    assert job["status"] == "done", job
    replay = client.get(f"/api/mother-ai/replays/{job['result']['replay_id']}", headers=AUTH).json()
    kinds = {v["voter"]: v["kind"] for v in replay["voters"]}
    assert kinds == {"BTCUSDT": "agent", voter: "strategy"}
    assert voter in replay["comparisons"]["voters_alone"]
    strategy = next(v for v in replay["voters"] if v["voter"] == voter)
    assert strategy["votes"] == STEPS + 1 and strategy["resolved"] >= STEPS - 5
    steps = client.get(f"/api/mother-ai/replays/{replay['id']}/steps?limit=3", headers=AUTH).json()["steps"]
    assert [v["agent"] for v in steps[0]["votes"]] == ["BTCUSDT", voter]
    wrong = client.post("/api/mother-ai/replay", json={**body, "symbols": ["ETHUSDT"]}, headers=AUTH)
    assert wrong.status_code == 422 and wrong.json()["error"]["details"]["field"] == "include_strategies"
