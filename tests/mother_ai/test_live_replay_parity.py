"""The live loop and the replay are the same decision loop: driven one closed candle at a time through the
fake Binance (the scheduler's own path: resolve, retrain at the shared retrain points, decide and execute
as paper), and replayed over the same candles with the same settings, every decision and every fill
price are equal, step by step."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from main import create_app
from mother_ai.explain import reason_code
from mother_ai.scheduler import DecisionScheduler
from tests.fakes.fake_binance import FakeBinance
from tests.support.http import AUTH, ctx_of, wait_for_job
from tests.support.settings import make_settings

H = 3_600_000
START = 1_704_067_200_000  # 2024-01-01T00:00:00Z: the first candle of the replayed range
WARMUP = 6000  # bars before the first decision; also the agents' train_bars, so both train on the same window
STEPS = 60  # live decisions
EVERY = 24  # retrain every 24 closed candles: at each UTC midnight
SYMBOLS = ["SOLUSDT", "XRPUSDT"]
COSTS = {"paper_fee_rate": 0.001, "paper_slippage_bps": 2.0, "risk_min_confidence": 0.0}


def _live_decisions(client: TestClient, fake: FakeBinance, settings: Any) -> list[Any]:
    ctx = ctx_of(client)
    assert ctx.mother is not None, "the online paper app builds its Mother AI"
    scheduler = DecisionScheduler.for_mother_ai(
        ctx.mother, settings.scheduler, clock=lambda: fake.now_ms, grace_ms=0, agents=ctx.agents
    )
    decisions = []
    for k in range(STEPS):
        fake.now_ms = START + (WARMUP + 1 + k) * H  # candle WARMUP + k has just closed
        tick = scheduler.run_if_due(fake.now_ms)
        assert tick.status == "ran", tick
        decisions.append(ctx.mother.get_decision(tick.result["decision_id"]))
    return decisions


def _replay_steps(client: TestClient, fake: FakeBinance) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    fake.now_ms += H  # the candle the last live decision filled at has closed: the replay can fill there too
    body = {
        "symbols": SYMBOLS,
        "interval": "1h",
        "start": START,
        "end": START + (WARMUP + STEPS) * H,
        "initial_balance": "10000",
        "warmup": WARMUP,
        "retrain_every": EVERY,
        "retrain_mode": "full",
        "fee_rate": COSTS["paper_fee_rate"],
        "slippage_bps": COSTS["paper_slippage_bps"],
        "risk": {"min_confidence": COSTS["risk_min_confidence"]},
    }
    response = client.post("/api/mother-ai/replay", json=body, headers=AUTH)
    assert response.status_code == 202, response.text
    done = wait_for_job(client, response.json())
    assert done["status"] == "done", done
    replay_id = done["result"]["replay_id"]
    steps = client.get(f"/api/mother-ai/replays/{replay_id}/steps?limit=500", headers=AUTH).json()["steps"]
    summary = client.get(f"/api/mother-ai/replays/{replay_id}", headers=AUTH).json()
    return steps, summary


def test_live_loop_and_replay_make_the_same_decisions_and_fills(tmp_path: Path) -> None:
    with FakeBinance(now_ms=START + WARMUP * H) as fake:
        fake.add_symbol("SOLUSDT", listed_ms=START, base_price=100.0, step_size="0.001")
        fake.add_symbol("XRPUSDT", listed_ms=START, base_price=0.5, tick_size="0.0001", step_size="0.1")
        settings = make_settings(
            tmp_path,
            offline=False,
            binance_api_url=fake.url,
            sample_data=False,
            scheduler_symbols=",".join(SYMBOLS),
            scheduler_execute=True,
            scheduler_retrain_every=EVERY,
            **COSTS,
        )
        with TestClient(create_app(settings, clock=lambda: fake.now_ms)) as client:
            for symbol in SYMBOLS:
                created = client.post(
                    "/api/agents",
                    json={"symbol": symbol, "train_bars": WARMUP, "candidates": ["logreg"], "horizon": 4},
                    headers=AUTH,
                )
                assert created.status_code == 201, created.text
            live = _live_decisions(client, fake, settings)
            steps, summary = _replay_steps(client, fake)

    assert len(steps) == STEPS + 1  # the replay's last step has no next candle to fill at
    retrain_times = sorted({r["time"] for r in summary["retrains"] if r["ok"]})
    assert len(retrain_times) >= 3, "the first step and at least two UTC midnights retrain"
    assert all(t == START + (WARMUP + 1) * H or (t // H) % EVERY == 0 for t in retrain_times)
    for k, (decision, step) in enumerate(zip(live, steps[:STEPS], strict=True)):
        where = f"step {k} ({step['time']})"
        assert int(decision.created_at.timestamp() * 1000) == step["time"], where
        assert decision.action == step["action"], where
        assert decision.symbol == step["symbol"], where
        assert reason_code(decision) == step["reason_code"], where
        stored = decision.to_dict()  # the decision as it is stored and logged, amounts as decimal text
        assert stored["size_quote"] == step["size_quote"], where
        assert stored["quantity"] == step["quantity"], where
        assert [v.agent for v in decision.votes] == [v["agent"] for v in step["votes"]], where
        # Live features come from the latest candles' tail, the replay's from the whole series: equal up
        # to the indicators' seed decay (~1e-9), so probabilities and the weights built from them agree
        # to that precision, and every discrete outcome (action, sizes, quantities, fills) exactly.
        for live_vote, replay_vote in zip(decision.votes, step["votes"], strict=True):
            assert live_vote.prob_up == pytest.approx(replay_vote["prob_up"], abs=1e-7), where
            assert live_vote.weight.value == pytest.approx(replay_vote["weight"]["value"], abs=1e-7), where
            assert live_vote.as_of == replay_vote["as_of"], where
        live_order, replay_order = decision.order, step["order"]
        assert (live_order is None) == (replay_order is None), where
        if live_order is not None:
            assert live_order["status"] == replay_order["status"], where
            assert Decimal(live_order["price"]) == Decimal(replay_order["price"]), where
            assert Decimal(live_order["executed_quantity"]) == Decimal(replay_order["quantity"]), where
            assert Decimal(live_order["fee"]) == Decimal(replay_order["fee"]), where
    actions = [d.action for d in live]
    assert actions.count("buy") >= 1 and actions.count("sell") >= 1, "the loop must trade both ways"
    assert sum(d.executed for d in live) >= 2
    # Weights moved during the run, identically on both sides (checked above), once predictions resolved.
    assert len({round(v.weight.value, 9) for d in live for v in d.votes}) > 2
