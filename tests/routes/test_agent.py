"""/api/agents end to end on the offline sample data: register, train as a job, predict, activate."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tests.support.http import AUTH, ctx_of, wait_for_job
from tests.support.install import TrainedInstall


def train(client: TestClient, symbol: str) -> dict:
    response = client.post(f"/api/agents/{symbol}/train", headers=AUTH)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["kind"] == "train"
    return wait_for_job(client, job, timeout=300)


def test_btc_and_eth_agents_exist_untrained(client: TestClient) -> None:
    agents = client.get("/api/agents", headers=AUTH).json()["agents"]
    assert [(a["symbol"], a["kind"], a["active_version"]) for a in agents] == [
        ("BTCUSDT", "btc", None),
        ("ETHUSDT", "eth", None),
    ]
    response = client.get("/api/agents/BTCUSDT/predict", headers=AUTH)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "agent_untrained"
    assert "POST /api/agents/BTCUSDT/train" in response.json()["error"]["message"]


def test_unknown_agent_is_404(client: TestClient) -> None:
    for path in ("/api/agents/NOPEUSDT", "/api/agents/NOPEUSDT/predict", "/api/agents/NOPEUSDT/models"):
        response = client.get(path, headers=AUTH)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "agent_not_found"
        message = response.json()["error"]["message"]
        assert message == "No agent for NOPEUSDT. Create one with POST /api/agents."
    assert client.post("/api/agents/NOPEUSDT/train", headers=AUTH).status_code == 404


def test_train_predict_history_and_activation(
    trained_client: TestClient, trained_install: TrainedInstall
) -> None:
    client = trained_client  # a fresh install whose first BTCUSDT training, through this API, is done
    first = client.get(f"/api/jobs/{trained_install.jobs['BTCUSDT']['id']}", headers=AUTH).json()
    assert first["status"] == "done", first
    assert first["progress"] == 1.0
    assert first["result"]["source"] == "sample"
    metrics = first["result"]["metrics"]
    assert {
        "oos_accuracy",
        "oos_auc",
        "oos_log_loss",
        "oos_brier",
        "baseline_accuracy",
        "backtest_total_return",
        "backtest_buy_and_hold_return",
    } <= set(metrics)
    agent = client.get("/api/agents/BTCUSDT", headers=AUTH).json()
    assert agent["active_version"] == first["result"]["version"]
    assert agent["metrics"] == metrics
    assert agent["stale"] is False

    prediction = client.get("/api/agents/BTCUSDT/predict", headers=AUTH).json()
    last = client.get(
        "/api/binance/candles", params={"symbol": "BTCUSDT", "interval": "1h", "limit": 1}, headers=AUTH
    ).json()["candles"][-1]
    assert prediction["as_of"] == last["open_time"]
    assert prediction["model_version"] == first["result"]["version"]
    assert 0 <= prediction["prob_up"] <= 1
    assert prediction["confidence"] == abs(2 * prediction["prob_up"] - 1)
    p = prediction["prob_up"]
    assert prediction["action"] == ("buy" if p > 0.55 else "sell" if p < 0.45 else "hold")
    assert len(prediction["top_features"]) == 5

    second = train(client, "BTCUSDT")
    models = client.get("/api/agents/BTCUSDT/models", headers=AUTH).json()["models"]
    assert [m["version"] for m in models] == [second["result"]["version"], first["result"]["version"]]
    assert [m["active"] for m in models] == [True, False]
    activated = client.post(
        f"/api/agents/BTCUSDT/models/{first['result']['version']}/activate", headers=AUTH
    ).json()
    assert activated["active_version"] == first["result"]["version"]
    again = client.get("/api/agents/BTCUSDT/predict", headers=AUTH).json()
    assert again["model_version"] == first["result"]["version"]
    assert again["prob_up"] == prediction["prob_up"], "same model, same candles, same prediction"


def test_a_tampered_model_is_refused(trained_client: TestClient, trained_install: TrainedInstall) -> None:
    client, done = trained_client, trained_install.jobs["ETHUSDT"]
    models_dir = ctx_of(client).settings.models_dir
    artifact = models_dir / "ETHUSDT" / f"{done['result']['version']}.joblib"
    artifact.write_bytes(artifact.read_bytes() + b"\x00")
    response = client.get("/api/agents/ETHUSDT/predict", headers=AUTH)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "model_checksum_mismatch"


def test_register_a_new_symbol_without_code(client: TestClient) -> None:
    created = client.post(
        "/api/agents", json={"symbol": "SOLUSDT", "horizon": 8, "feature_set": "compact"}, headers=AUTH
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["symbol"], body["kind"], body["horizon"], body["feature_set"]) == (
        "SOLUSDT",
        "generic",
        8,
        "compact",
    )
    assert client.post("/api/agents", json={"symbol": "SOLUSDT"}, headers=AUTH).status_code == 409
    # No SOLUSDT candles offline: the job fails with the reason, nothing is registered.
    failed = train(client, "SOLUSDT")
    assert failed["status"] == "failed"
    assert "SOLUSDT" in failed["message"]
    assert failed["error"]["code"] == "no_data" and failed["result"] is None
    assert client.get("/api/agents/SOLUSDT/models", headers=AUTH).json()["models"] == []


def test_bad_agent_input_is_422(client: TestClient) -> None:
    for body in (
        {"symbol": "sol"},
        {"symbol": "SOLUSDT", "buy_threshold": 0.4},
        {"symbol": "SOLUSDT", "feature_set": "magic"},
        {"symbol": "SOLUSDT", "horizon": 0},
    ):
        response = client.post("/api/agents", json=body, headers=AUTH)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == "validation_error"
    bad_version = client.post("/api/agents/BTCUSDT/models/..%2F..%2Fetc/activate", headers=AUTH)
    assert bad_version.status_code in (404, 422)


def test_the_metadata_json_beside_a_model_is_never_trusted(
    trained_client: TestClient, trained_install: TrainedInstall
) -> None:
    client, done = trained_client, trained_install.jobs["ETHUSDT"]
    before = client.get("/api/agents/ETHUSDT/predict", headers=AUTH).json()
    models_dir = ctx_of(client).settings.models_dir
    (models_dir / "ETHUSDT" / f"{done['result']['version']}.json").write_text("{not json")
    ctx_of(client).agents._agents.clear()  # drop the loaded model
    after = client.get("/api/agents/ETHUSDT/predict", headers=AUTH)
    assert after.status_code == 200, after.text
    assert after.json()["prob_up"] == before["prob_up"]


def test_one_training_at_a_time_per_symbol(client: TestClient) -> None:
    first = client.post("/api/agents/BTCUSDT/train", headers=AUTH)
    second = client.post("/api/agents/BTCUSDT/train", headers=AUTH)
    assert first.status_code == 202
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "training_in_progress"
    assert second.json()["error"]["details"]["job"] == first.json()["id"]
    # However the first ends (cancelled here, so the test need not wait for a whole training), the symbol is
    # free again once it has.
    assert client.post(f"/api/jobs/{first.json()['id']}/cancel", headers=AUTH).status_code == 200
    assert wait_for_job(client, first.json(), timeout=300)["status"] == "cancelled"
    again = client.post("/api/agents/BTCUSDT/train", headers=AUTH)
    assert again.status_code == 202, "free again once the first finished"
    # Accepted is all this test needs of the second training: stop it at its first checkpoint.
    assert client.post(f"/api/jobs/{again.json()['id']}/cancel", headers=AUTH).status_code == 200
    wait_for_job(client, again.json(), timeout=300)


def test_default_agents_use_the_configured_max_model_age(tmp_path: Path) -> None:
    from main import create_app
    from tests.support.settings import make_settings

    with TestClient(create_app(make_settings(tmp_path, agent_max_model_age_hours=12))) as client:
        ages = {
            a["symbol"]: a["max_model_age_hours"]
            for a in client.get("/api/agents", headers=AUTH).json()["agents"]
        }
    assert ages == {"BTCUSDT": 12, "ETHUSDT": 12}
