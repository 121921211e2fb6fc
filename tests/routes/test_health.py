"""GET /api/health beyond liveness: the Binance probe (cached, never a call per request), the kill
switch, the scheduler and each active agent's data freshness; public, and it reveals no secret."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from main import create_app
from tests.fakes.fake_binance import FakeBinance
from tests.support.clock import Clock
from tests.support.dask_cluster import DaskCluster
from tests.support.http import AUTH, ctx_of
from tests.support.install import TrainedInstall
from tests.support.server import wait_until
from tests.support.settings import API_KEY, make_settings
from utils.exchange_probe import DEFAULT_TTL_MS
from utils.market_data.sample import SAMPLE_BARS, SAMPLE_START_MS

HOUR = 3_600_000
LAST_SAMPLE = SAMPLE_START_MS + (SAMPLE_BARS - 1) * HOUR  # the sample's newest candle opens here


def health(client: TestClient) -> dict:
    response = client.get("/api/health")
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_the_probe_pings_binance_at_most_once_a_minute_and_remembers_the_answer(
    tmp_path: Path, fake_binance: FakeBinance
) -> None:
    settings = make_settings(
        tmp_path,
        offline=False,
        binance_api_url=fake_binance.url,
        binance_api_key="k3y-value-x",
        binance_api_secret="s3cret-value-y",
    )
    with TestClient(create_app(settings, clock=lambda: fake_binance.now_ms)) as client:
        probe = ctx_of(client).probe
        assert health(client)["binance"] == {
            "status": "unknown",
            "checked_at": None,
            "latency_ms": None,
            "error": None,
        }
        assert probe.wait(10)
        for _ in range(5):
            binance = health(client)["binance"]
        assert binance["status"] == "reachable" and binance["checked_at"] == fake_binance.now_ms
        assert binance["latency_ms"] >= 0 and binance["error"] is None
        assert len(fake_binance.requests_to("/api/v3/ping")) == 1, "six health checks, one ping"

        fake_binance.add_fault("/api/v3/ping", "500", msg="down for maintenance")
        fake_binance.now_ms += DEFAULT_TTL_MS - 1
        health(client)
        assert probe.wait(10) and len(fake_binance.requests_to("/api/v3/ping")) == 1, "still fresh"
        fake_binance.now_ms += 1
        assert health(client)["binance"]["status"] == "reachable", "the last answer until the new one"
        assert probe.wait(10)
        failed = health(client)["binance"]
        assert failed["status"] == "unreachable" and failed["checked_at"] == fake_binance.now_ms
        assert failed["error"] and failed["latency_ms"] is None
        assert len(fake_binance.requests_to("/api/v3/ping")) == 2, "a failed ping is not retried"
        text = client.get("/api/health").text
        for secret in (API_KEY, "k3y-value-x", "s3cret-value-y"):
            assert secret not in text


def test_the_kill_switch_shows_whether_and_since_when_but_not_why(client: TestClient) -> None:
    halted = client.post("/api/mother-ai/halt", json={"reason": "my private reason"}, headers=AUTH).json()
    response = client.get("/api/health")
    assert response.json()["kill_switch"] == {"halted": True, "changed_at": halted["changed_at"]}
    assert "my private reason" not in response.text


def test_each_active_agent_says_how_fresh_its_data_is(
    trained_install: TrainedInstall, tmp_path: Path
) -> None:
    clock = Clock(LAST_SAMPLE + HOUR)  # the newest sample candle closed just now
    with TestClient(create_app(make_settings(trained_install.copy_to(tmp_path)), clock=clock)) as client:
        agents = {a["symbol"]: a for a in health(client)["agents"]}
        active = {
            a["symbol"]: a["active_version"] for a in client.get("/api/agents", headers=AUTH).json()["agents"]
        }
        assert {s: a["model_version"] for s, a in agents.items()} == active
        for agent in agents.values():
            assert (agent["interval"], agent["source"], agent["last_candle_time"]) == (
                "1h",
                "sample",
                LAST_SAMPLE,
            )
            assert (agent["behind"], agent["fresh"]) == (0, True)
        clock.now += 3 * HOUR + 1  # three more candles have closed that the sample never gets
        for agent in health(client)["agents"]:
            assert (agent["behind"], agent["fresh"]) == (3, False)


def test_the_scheduler_reports_its_thread_its_next_run_and_its_last_run(tmp_path: Path) -> None:
    clock = Clock(LAST_SAMPLE + HOUR)
    settings = make_settings(
        tmp_path, scheduler_enabled=True, scheduler_symbols=["BTCUSDT"], scheduler_interval="1h"
    )
    with TestClient(create_app(settings, clock=clock)) as client:
        scheduler = health(client)["scheduler"]
        assert scheduler == {
            "enabled": True,
            "running": True,
            "leader": True,  # the only process: it holds the scheduler's lease
            "interval": "1h",
            "symbols": ["BTCUSDT"],
            "execute": False,
            "next_run_at": clock.now + HOUR + 5_000,
            "last_run": None,
        }
        clock.now += HOUR + 5_000
        ran = ctx_of(client).scheduler
        assert ran is not None and ran.run_if_due().status == "failed"  # no agent is trained yet
        last = health(client)["scheduler"]["last_run"]
        assert last["status"] == "failed" and last["close_time"] == LAST_SAMPLE + 2 * HOUR
        assert "BTCUSDT" in last["message"]


def test_local_compute_reports_its_processes_without_starting_them(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, compute_local_workers=3))) as client:
        compute = health(client)["compute"]
        assert compute == {
            "backend": "local",
            "address": None,
            "connected": True,
            "workers": 3,
            "threads": 3,
            "error": None,
        }


def test_a_cluster_shows_its_workers_once_connected_without_any_job(
    dask_cluster: DaskCluster, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, compute_scheduler=dask_cluster.address)
    with TestClient(create_app(settings)) as client:
        first = health(client)["compute"]
        assert (first["backend"], first["address"]) == ("dask", dask_cluster.address)
        # The first read starts a connection in the background rather than waiting for it.
        last: dict = {}

        def connected() -> bool:
            last.update(health(client)["compute"])
            return bool(last["connected"]) and last["workers"] == 2

        wait_until(connected, timeout=60, what="health to report the cluster's two workers")
        assert (last["threads"], last["error"]) == (2, None)  # two single-threaded workers


def test_an_unreachable_cluster_is_reported_not_waited_for(tmp_path: Path) -> None:
    address = "tcp://127.0.0.1:9"  # discard: nothing listens there
    with TestClient(create_app(make_settings(tmp_path, compute_scheduler=address))) as client:
        first = health(client)["compute"]
        assert (first["connected"], first["workers"]) == (False, None)
        last: dict = {}

        def failed() -> bool:
            last.update(health(client)["compute"])
            return last["error"] is not None

        wait_until(failed, timeout=60, what="the failed connection to be reported")
        assert last["connected"] is False and "127.0.0.1:9" in last["error"]
