"""The replay through the real app, offline on the sample data, from an empty install: it trades, resolves
predictions and moves weights; it leaves the running account exactly as it was; bad input is a 422 naming
the field; a cancelled replay stores nothing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from db.models import EquitySnapshot, ModelVersion, PredictionRecord, ReplayChunk, ReplayRun, RiskDay
from main import create_app
from tests.support.http import AUTH, ctx_of, wait_for_job
from tests.support.install import TrainedInstall
from tests.support.settings import make_settings

H = 3_600_000
SAMPLE_START = 1_672_531_200_000  # 2023-01-01T00:00:00Z, the sample series' first candle
WARMUP = 6000
STEPS = 400
# Costs off and no confidence floor, so the sample's small edges become trades the test can check.
TRADING = {"paper_fee_rate": 0.0, "paper_slippage_bps": 0.0, "risk_min_confidence": 0.0}
BODY: dict[str, Any] = {
    "symbols": ["BTCUSDT", "ETHUSDT"],
    "interval": "1h",
    "start": "2023-01-01T00:00:00Z",
    "end": SAMPLE_START + (WARMUP + STEPS) * H,
    "warmup": WARMUP,
    "retrain_every": 168,
    "fee_rate": 0.0,
    "slippage_bps": 0.0,
    "risk": {"min_confidence": 0.0},
}


@dataclass
class Replayed:
    client: TestClient
    job: dict[str, Any]
    replay: dict[str, Any]
    steps: list[dict[str, Any]]
    before: dict[str, Any]
    after: dict[str, Any]


def account_state(client: TestClient) -> dict[str, Any]:
    """Everything of the running account a replay must not touch, as the API and the tables show it."""
    ctx = ctx_of(client)
    with ctx.sessions() as session:
        counts = {
            model.__tablename__: session.scalar(select(func.count()).select_from(model))
            for model in (PredictionRecord, EquitySnapshot, RiskDay, ModelVersion)
        }
        risk_days = [
            (r.mode, r.day, str(r.baseline_equity), r.breached_at) for r in session.scalars(select(RiskDay))
        ]
    portfolio = client.get("/api/portfolio", headers=AUTH).json()
    portfolio.pop("as_of", None)
    return {
        "portfolio": portfolio,
        "trades": client.get("/api/orders?limit=500", headers=AUTH).json(),
        "decisions": client.get("/api/mother-ai/decisions?limit=500", headers=AUTH).json(),
        "agents": [
            (a["symbol"], a["active_version"])
            for a in client.get("/api/agents", headers=AUTH).json()["agents"]
        ],
        "halted": ctx.kill_switch.state().halted,
        "counts": counts,
        "risk_days": risk_days,
    }


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory, trained_install: TrainedInstall) -> Iterator[Replayed]:
    """An offline install with a paper account in use (trained agents, executed decisions, a halt),
    then one replay over the sample data, with the account's state before and after it."""
    settings = make_settings(trained_install.copy_to(tmp_path_factory.mktemp("replay")), **TRADING)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        for _ in range(2):
            decided = client.post("/api/mother-ai/decide", json={"execute": True}, headers=AUTH)
            assert decided.status_code == 200, decided.text
        assert client.post("/api/mother-ai/halt", json={"reason": "test"}, headers=AUTH).status_code == 200
        before = account_state(client)
        started = client.post("/api/mother-ai/replay", json=BODY, headers=AUTH)
        assert started.status_code == 202, started.text
        job = wait_for_job(client, started.json())
        assert job["status"] == "done", job
        replay_id = job["result"]["replay_id"]
        after = account_state(client)
        replay = client.get(f"/api/mother-ai/replays/{replay_id}?series=true", headers=AUTH).json()
        steps = client.get(f"/api/mother-ai/replays/{replay_id}/steps?limit=500", headers=AUTH).json()[
            "steps"
        ]
        yield Replayed(client, job, replay, steps, before, after)


def test_a_replay_never_touches_the_running_account(replayed: Replayed) -> None:
    assert replayed.before["decisions"]["total"] == 2 and replayed.before["halted"] is True
    assert replayed.before["counts"]["model_versions"] >= 1
    for key in replayed.before:
        assert replayed.after[key] == replayed.before[key], key


def test_the_offline_sample_replay_trades_resolves_and_moves_weights(replayed: Replayed) -> None:
    replay, steps = replayed.replay, replayed.steps
    assert replay["n_steps"] == len(steps) == STEPS + 1  # the range's candles after the warm-up
    assert replay["sample_data"] is True and set(replay["sources"].values()) == {"sample"}
    assert replay["counts"]["fills"] > 0 and {"buy", "sell"} <= {s["action"] for s in steps}
    assert [s["step"] for s in steps] == list(range(len(steps)))
    assert all(b["time"] - a["time"] == H for a, b in pairwise(steps))
    # Predictions resolved on the replay clock and the weights moved away from the prior.
    for voter in replay["voters"]:
        assert voter["resolved"] >= STEPS - 10 and voter["votes"] == len(steps)
        weights = replay["series"]["voters"][voter["voter"]]["weight"]
        assert weights[0] == pytest.approx(0.2) and len(set(weights)) > 10
    # The first decision's votes come from models trained at that step, with the weight of a new voter.
    first = steps[0]
    assert [v["agent"] for v in first["votes"]] == ["BTCUSDT", "ETHUSDT"]
    assert all(v["weight"]["value"] == pytest.approx(0.2) for v in first["votes"])


def test_the_replay_reports_comparisons_metrics_and_retrains(replayed: Replayed) -> None:
    replay = replayed.replay
    comparisons = replay["comparisons"]
    assert set(comparisons["voters_alone"]) == {"BTCUSDT", "ETHUSDT"}
    assert set(comparisons["buy_and_hold"]) == {"BTCUSDT", "ETHUSDT"}
    assert comparisons["mother_ai"]["final_equity"] == pytest.approx(replay["final_equity"])
    assert replay["metrics"]["final_equity"] == pytest.approx(replay["series"]["equity"][-1], rel=1e-9)
    assert comparisons["beats_equal_weights"] == (
        comparisons["mother_ai"]["final_equity"] > comparisons["equal_weights"]["final_equity"]
    )
    series = replay["series"]
    assert len(series["equity"]) == len(series["drawdown"]) == len(series["step_times"]) == replay["n_steps"]
    assert set(series["comparison_equity"]) == {
        "mother_ai",
        "alone:BTCUSDT",
        "alone:ETHUSDT",
        "equal_weights",
        "buy_and_hold:BTCUSDT",
        "buy_and_hold:ETHUSDT",
    }
    assert len(series["fills"]) == replay["counts"]["fills"]
    retrains = replay["retrains"]
    assert {r["voter"] for r in retrains} == {"BTCUSDT", "ETHUSDT"}
    modes = [r["mode"] for r in retrains if r["voter"] == "BTCUSDT" and r["ok"]]
    assert modes[0] == "full" and set(modes[1:]) == {"refit"} and len(modes) >= 3
    assert all(r["window_end_time"] < r["time"] for r in retrains if r["ok"])


def test_replays_are_listed_and_paged(replayed: Replayed) -> None:
    client, replay = replayed.client, replayed.replay
    listed = client.get("/api/mother-ai/replays", headers=AUTH).json()
    assert listed["total"] == 1 and listed["replays"][0]["id"] == replay["id"]
    assert "series" not in listed["replays"][0]
    page = client.get(f"/api/mother-ai/replays/{replay['id']}/steps?offset=398&limit=5", headers=AUTH).json()
    assert page["total"] == STEPS + 1 and [s["step"] for s in page["steps"]] == [398, 399, 400]
    assert page["steps"] == replayed.steps[398:]
    missing = client.get(f"/api/mother-ai/replays/{'0' * 32}", headers=AUTH)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "replay_not_found"
    assert client.get(f"/api/mother-ai/replays/{replay['id']}").status_code == 401


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"end": "2022-06-01T00:00:00Z"}, "end"),
        ({"end": SAMPLE_START + (WARMUP + 100) * H}, "start"),  # fewer candles than warm-up + one window
        ({"retrain_every": 5}, "retrain_every"),
        ({"warmup": 500}, "warmup"),
        ({"symbols": ["XRPUSDT"]}, "symbols"),
        ({"include_strategies": [12345]}, "include_strategies"),
        ({"interval": "1M"}, "interval"),
        ({"initial_balance": "-5"}, "initial_balance"),
        ({"risk": {"max_open_positions": 0}}, "risk"),
        ({"risk": {"leverage": 3}}, "risk"),
    ],
)
def test_bad_replay_requests_are_422_naming_the_field(
    replayed: Replayed, change: dict[str, Any], field: str
) -> None:
    response = replayed.client.post("/api/mother-ai/replay", json={**BODY, **change}, headers=AUTH)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] in ("invalid_input", "validation_error")
    assert field in str(error.get("details")) or field in error["message"], error


def test_a_cancelled_replay_ends_cancelled_and_stores_nothing(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path)), raise_server_exceptions=False) as client:
        started = client.post("/api/mother-ai/replay", json=BODY, headers=AUTH)
        assert started.status_code == 202, started.text
        job = started.json()
        cancelled = client.post(f"/api/jobs/{job['id']}/cancel", headers=AUTH)
        assert cancelled.status_code == 200, cancelled.text
        done = wait_for_job(client, job)
        assert done["status"] == "cancelled" and done["result"] is None
        again = client.post(f"/api/jobs/{job['id']}/cancel", headers=AUTH)
        assert again.status_code == 409 and again.json()["error"]["code"] == "job_finished"
        ctx = ctx_of(client)
        with ctx.sessions() as session:
            assert session.scalar(select(func.count()).select_from(ReplayRun)) == 0
            assert session.scalar(select(func.count()).select_from(ReplayChunk)) == 0
        assert client.get("/api/mother-ai/replays", headers=AUTH).json()["total"] == 0
