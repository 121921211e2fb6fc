"""Crash consistency against the real server: each test starts `uvicorn main:app` as its own process with a
crash point (utils/crash.py), makes the request that reaches it, lets the process die there as a kill -9
would, restarts it without the crash point, and checks that the start-up reconciliation left every
acknowledged write in place, files equal to their rows, nothing orphaned and nothing pending."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from db import storage
from db.models import TradeOrder
from main import create_app
from mother_ai.live_executor import LIVE_TRADING_CONFIRM_PHRASE
from mother_ai.recovery import IN_FLIGHT_GRACE_MS, NOT_PLACED
from tests.fakes.fake_binance import FakeBinance
from tests.support.install import TrainedInstall
from tests.support.process import ENDED, install_env, run_to_crash, server_process
from tests.support.server import wait_until
from tests.support.settings import API_KEY, make_settings

SPEC: dict[str, Any] = json.loads(
    (
        Path(__file__).resolve().parents[1]
        / "storage"
        / "strategies"
        / "examples"
        / "rsi_dip_trend.spec.json"
    ).read_text()
)
# No fees, slippage or confidence floor: the trained sample agents then buy BTCUSDT (as in the route tests).
TRADING = {"paper_fee_rate": "0", "paper_slippage_bps": "0", "risk_min_confidence": "0"}
DEAD_PID = 4_194_999  # above Linux's largest pid: never a running process


def crashing_request(server_url: str, method: str, path: str, **kwargs: Any) -> None:
    """Send a request the server dies in the middle of: no answer ever comes."""
    headers = {"Authorization": "Bearer test-api-key-0123456789abcdef"}
    with pytest.raises(httpx.TransportError):
        httpx.request(method, f"{server_url}{path}", headers=headers, timeout=120, **kwargs)


def strategy_files(root: Path) -> dict[str, dict[str, Any]]:
    return {str(p.relative_to(root)): json.loads(p.read_text()) for p in sorted(root.glob("*/*.json"))}


def test_a_strategy_committed_before_its_file_gets_its_file_and_orphans_go(tmp_path: Path) -> None:
    env = install_env(tmp_path, sample_data="false")
    strategies = tmp_path / "strategies"
    with server_process({**env, "CRASH_POINT": "strategy_committed"}, tmp_path / "server.log") as server:
        crashing_request(server.url, "POST", "/api/strategies", json=SPEC)
        server.wait_for_crash()
    assert strategy_files(strategies) == {}, "the crash came after the commit and before the file"
    # Debris of earlier crashes, and things that are not the store's to touch.
    (strategies / "BTCUSDT").mkdir(parents=True, exist_ok=True)
    (strategies / "BTCUSDT" / "ghost.json").write_text('{"id": 99}')
    temp = strategies / "BTCUSDT" / f".ghost.json.{DEAD_PID}~abc123.tmp"
    temp.write_text("{")
    (strategies / "examples").mkdir()
    (strategies / "examples" / "mine.json").write_text("{}")

    with server_process(env, tmp_path / "server.log") as server, server.client() as client:
        saved = [s for s in client.get("/api/strategies").json()["strategies"] if s["kind"] == "saved"]
        assert [(s["name"], s["version"]) for s in saved] == [(SPEC["name"], 1)]
        full = client.get(f"/api/strategies/{saved[0]['id']}").json()
    files = strategy_files(strategies)
    assert list(files) == ["BTCUSDT/rsi-dip-with-trend-filter.json", "examples/mine.json"]
    document = files["BTCUSDT/rsi-dip-with-trend-filter.json"]
    assert (document["id"], document["version"], document["spec"]) == (full["id"], 1, full["spec"])
    assert not temp.exists()
    log = (tmp_path / "server.log").read_text()
    assert "start-up repair: strategy_file BTCUSDT/ghost.json: removed" in log
    assert "start-up repair: strategy_file BTCUSDT/rsi-dip-with-trend-filter.json: written" in log


def test_a_rename_killed_before_the_old_file_goes_leaves_only_the_new_file(tmp_path: Path) -> None:
    env = install_env(tmp_path, sample_data="false")
    strategies = tmp_path / "strategies"
    with server_process(env, tmp_path / "server.log") as server, server.client() as client:
        created = client.post("/api/strategies", json=SPEC)
        assert created.status_code == 201, created.text
    sid = created.json()["id"]
    renamed = {**SPEC, "name": "Renamed dip"}
    with server_process({**env, "CRASH_POINT": "strategy_renamed"}, tmp_path / "server.log") as server:
        crashing_request(server.url, "PUT", f"/api/strategies/{sid}", json=renamed)
        server.wait_for_crash()
    assert sorted(strategy_files(strategies)) == [
        "BTCUSDT/renamed-dip.json",
        "BTCUSDT/rsi-dip-with-trend-filter.json",
    ]
    with server_process(env, tmp_path / "server.log") as server, server.client() as client:
        body = client.get(f"/api/strategies/{sid}").json()
    assert (body["name"], body["version"], body["slug"]) == ("Renamed dip", 2, "renamed-dip")
    files = strategy_files(strategies)
    assert list(files) == ["BTCUSDT/renamed-dip.json"]
    assert files["BTCUSDT/renamed-dip.json"]["version"] == 2


def test_a_training_killed_at_its_artifact_is_run_again_and_leaves_one_model(tmp_path: Path) -> None:
    env = install_env(tmp_path)
    models = tmp_path / "models" / "BTCUSDT"
    with server_process({**env, "CRASH_POINT": "model_files_written"}, tmp_path / "server.log") as server:
        with server.client() as client:
            started = client.post("/api/agents/BTCUSDT/train")
            assert started.status_code == 202, started.text
        server.wait_for_crash(timeout=300)
    orphans = sorted(p.name for p in models.iterdir())
    assert sorted(Path(name).suffix for name in orphans) == [".joblib", ".json"], "written, never registered"
    with server_process(env, tmp_path / "server.log") as server, server.client() as client:
        job_url = f"/api/jobs/{started.json()['id']}"
        wait_until(lambda: client.get(job_url).json()["status"] in ENDED, timeout=300, what="the rerun")
        job = client.get(job_url).json()
        agent = client.get("/api/agents/BTCUSDT").json()
        versions = client.get("/api/agents/BTCUSDT/models").json()
    # The job was queued again at the restart (its process was gone) and ran to the end this time.
    assert (job["status"], job["attempts"]) == ("done", 2), job
    assert versions["total"] == 1
    assert agent["active_version"] == job["result"]["version"] == versions["models"][0]["version"]
    version = agent["active_version"]
    assert sorted(p.name for p in models.iterdir()) == [f"{version}.joblib", f"{version}.json"]
    assert not set(orphans) & {f"{version}.joblib", f"{version}.json"}, "the crashed run's files are gone"


def test_a_training_is_registered_activated_and_done_in_one_commit(tmp_path: Path) -> None:
    env = install_env(tmp_path)
    with server_process(env, tmp_path / "server.log") as server, server.client() as client:
        started = client.post("/api/agents/BTCUSDT/train").json()
        wait_until(
            lambda: client.get(f"/api/jobs/{started['id']}").json()["status"] in ENDED,
            timeout=300,
            what="the training to end",
        )
        job = client.get(f"/api/jobs/{started['id']}").json()
        agent = client.get("/api/agents/BTCUSDT").json()
        versions = client.get("/api/agents/BTCUSDT/models").json()
    assert job["status"] == "done"
    assert agent["active_version"] == job["result"]["version"]
    assert [m["version"] for m in versions["models"]] == [job["result"]["version"]]
    names = sorted(p.name for p in (tmp_path / "models" / "BTCUSDT").iterdir())
    assert names == [f"{job['result']['version']}.joblib", f"{job['result']['version']}.json"]


def _decide_and_crash(
    trained_install: TrainedInstall, tmp_path: Path, point: str
) -> tuple[dict[str, str], Path]:
    """A copy of the trained install whose server dies at `point` inside an executed decision; its
    environment (without the crash point) and log, for the restart."""
    env = install_env(trained_install.copy_to(tmp_path / "install"), **TRADING)
    log = tmp_path / "server.log"
    with server_process({**env, "CRASH_POINT": point}, log) as server:
        crashing_request(server.url, "POST", "/api/mother-ai/decide", json={"execute": True})
        server.wait_for_crash()
    return env, log


def _log_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line)["data"] for line in path.read_text().splitlines()] if path.exists() else []


def test_a_paper_fill_killed_before_its_decision_is_finalised_and_logged(
    trained_install: TrainedInstall, tmp_path: Path
) -> None:
    env, log = _decide_and_crash(trained_install, tmp_path, "order_committed")
    logs = tmp_path / "install" / "logs"
    assert _log_lines(logs / "trades.jsonl") == [], "the crash came before the trade log line"
    with server_process(env, log) as server, server.client() as client:
        (decision,) = client.get("/api/mother-ai/decisions").json()["decisions"]
        (order,) = client.get("/api/orders").json()["orders"]
        portfolio = client.get("/api/portfolio").json()
    assert (decision["order_status"], decision["executed"], decision["order_id"]) == (
        "FILLED",
        True,
        order["id"],
    )
    assert order["status"] == "FILLED" and order["decision_id"] == decision["id"]
    usdt = next(b for b in portfolio["balances"] if b["asset"] == "USDT")
    spent = Decimal(order["quote_quantity"]) + Decimal(order["fee"])
    assert Decimal(usdt["amount"]) == Decimal(10_000) - spent
    trades = _log_lines(logs / "trades.jsonl")
    assert [(t["id"], t["status"]) for t in trades] == [(order["id"], "FILLED")]
    decisions = _log_lines(logs / "decisions.jsonl")
    assert [(d["id"], d["order_status"]) for d in decisions] == [(decision["id"], "FILLED")]


def test_a_decision_killed_before_its_order_records_that_nothing_was_placed(
    trained_install: TrainedInstall, tmp_path: Path
) -> None:
    env, log = _decide_and_crash(trained_install, tmp_path, "decision_recorded")
    with server_process(env, log) as server, server.client() as client:
        (decision,) = client.get("/api/mother-ai/decisions").json()["decisions"]
        orders = client.get("/api/orders").json()
        portfolio = client.get("/api/portfolio").json()
    assert decision["action"] == "buy"
    assert (decision["order_status"], decision["executed"], decision["order_error"]) == (
        None,
        False,
        NOT_PLACED,
    )
    assert orders["total"] == 0
    assert next(b for b in portfolio["balances"] if b["asset"] == "USDT")["amount"] == "10000"
    decisions = _log_lines(tmp_path / "install" / "logs" / "decisions.jsonl")
    assert [d["id"] for d in decisions] == [decision["id"]]


def test_a_candle_write_killed_before_its_rename_leaves_no_temp_file(tmp_path: Path) -> None:
    env = install_env(tmp_path)
    store = tmp_path / "data" / "store"
    log = tmp_path / "server.log"
    # The first start writes the sample candles: it dies at the first file's temp copy.
    crashing = server_process({**env, "CRASH_POINT": "candles_temp_written"}, log)
    with pytest.raises(AssertionError, match="exited with 86"), crashing:
        pass
    (temp,) = [p for p in store.rglob(".*") if p.is_file()]
    assert temp.stat().st_size > 0 and temp.name.endswith(".tmp")
    with server_process(env, log) as server, server.client() as client:
        candles = client.get(
            "/api/binance/candles", params={"symbol": "BTCUSDT", "interval": "1h", "limit": 5}
        )
    assert candles.status_code == 200 and len(candles.json()["candles"]) == 5
    assert [p for p in store.rglob(".*") if p.is_file()] == []
    assert f"start-up repair: temp_file {temp.relative_to(store)}: removed" in log.read_text()


def test_a_live_order_binance_accepted_before_the_process_died_is_settled_at_the_next_start(
    tmp_path: Path, fake_binance: FakeBinance
) -> None:
    """Crash point live_order_sent: Binance has the order, the process died before writing its answer, so
    the row is still PENDING. The next start must not place it again nor leave its quantity blocked: its
    live reconciler looks the order up by client order id and records Binance's fill."""
    live = {
        "trading_mode": "live",
        "offline": False,
        "binance_api_url": fake_binance.url,
        "binance_api_key": fake_binance.api_key,
        "binance_api_secret": fake_binance.api_secret,
        "live_trading_confirm": LIVE_TRADING_CONFIRM_PHRASE,
        "binance_max_retries": 0,
    }
    env = {**install_env(tmp_path, **live), "CRASH_POINT": "live_order_sent"}
    run_to_crash("tests.support.live_order", ["crashed-1"], env, tmp_path / "placing.log")

    (placed,) = fake_binance.orders
    placements = [r for r in fake_binance.requests_to("/api/v3/order") if r.method == "POST"]
    assert len(placements) == 1 and placed["clientOrderId"] == "crashed-1"
    engine = storage.make_engine(f"sqlite:///{tmp_path / 'test.db'}")
    try:
        with storage.make_session_factory(engine)() as session:
            (left,) = session.scalars(select(TradeOrder)).all()
        assert (left.client_order_id, left.status, left.exchange_order_id) == ("crashed-1", "PENDING", None)
    finally:
        engine.dispose()

    # The restart, two minutes on: the reconciler leaves orders touched in the last minute to whoever may
    # still be placing them, and the rows carry the wall clock's time.
    later_ms = int(time.time() * 1000) + 2 * IN_FLIGHT_GRACE_MS
    app = create_app(make_settings(tmp_path, **live), clock=lambda: later_ms)
    auth = {"Authorization": f"Bearer {API_KEY}"}
    with TestClient(app) as client:

        def the_order() -> dict[str, Any]:
            (order,) = client.get("/api/orders", headers=auth).json()["orders"]
            return dict(order)

        wait_until(lambda: the_order()["status"] != "PENDING", timeout=30, what="the live reconciler")
        order = the_order()
        portfolio = client.get("/api/portfolio", headers=auth).json()
    assert (order["mode"], order["client_order_id"], order["status"]) == ("live", "crashed-1", "FILLED")
    assert order["exchange_order_id"] == str(placed["orderId"])
    assert Decimal(order["executed_quantity"]) == Decimal(placed["executedQty"])
    assert Decimal(order["quote_quantity"]) == Decimal(placed["cummulativeQuoteQty"])
    (fill,) = placed["fills"]
    assert (Decimal(order["fee"]), order["fee_asset"]) == (
        Decimal(fill["commission"]),
        fill["commissionAsset"],
    )
    (position,) = portfolio["positions"]
    assert position["symbol"] == "BTCUSDT"
    assert Decimal(position["quantity"]) == Decimal(placed["executedQty"]) - Decimal(fill["commission"])
    placements = [r for r in fake_binance.requests_to("/api/v3/order") if r.method == "POST"]
    assert len(placements) == 1, "the order was never sent again"
    trades = _log_lines(tmp_path / "logs" / "trades.jsonl")
    assert [(t["client_order_id"], t["status"]) for t in trades] == [("crashed-1", "FILLED")]
