"""/api/stream against a real uvicorn, read by a real HTTP client: authentication by short-lived token,
every kind of event carrying what the REST endpoints return, resuming by Last-Event-ID, candles as they
close, and clients that read slowly or vanish never holding anyone up."""

from __future__ import annotations

import functools
import gc
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from main import create_app
from mother_ai.orders import HaltState
from tests.fakes.fake_binance import FakeBinance
from tests.support.clock import Clock
from tests.support.http import AUTH, ctx_of
from tests.support.install import TrainedInstall
from tests.support.server import SseEvent, SseReader, serve, wait_until
from tests.support.settings import make_settings
from utils.market_data.watcher import DEFAULT_GRACE_MS

HOUR = 3_600_000
# Costs off and no confidence floor: the sample install then buys on its first decision.
TRADING = {"paper_fee_rate": 0.0, "paper_slippage_bps": 0.0, "risk_min_confidence": 0.0}
TIMEOUT = httpx.Timeout(30.0)


def token_of(http: httpx.Client | TestClient) -> str:
    response = http.post("/api/stream/token", headers=AUTH)
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


def opened(reader: SseReader) -> None:
    first = reader.next()
    assert (first.retry, first.data) == (3000, None), "a stream opens with its reconnect delay"


def one(reader: SseReader, kind: str) -> dict[str, Any]:
    [event] = reader.events(1)
    assert event.event == kind and event.data["kind"] == kind, event
    assert event.id == event.data["id"]
    return dict(event.data)


# --- authentication (no stream needs to open: a refusal comes before it) ---------------------------


def test_only_the_key_or_a_fresh_token_opens_the_stream(tmp_path: Path) -> None:
    clock = Clock(1_700_000_000_000)
    with TestClient(create_app(make_settings(tmp_path), clock=clock)) as client:
        assert client.post("/api/stream/token").status_code == 401
        issued = client.post("/api/stream/token", headers=AUTH).json()
        assert issued["expires_at"] == clock.now + 300_000
        assert ctx_of(client).api_key not in issued["token"]
        expires, nonce, signature = issued["token"].split(".")
        refused = {
            "no credentials": {},
            "a wrong key": {"headers": {"Authorization": "Bearer wrong"}},
            "a forged expiry": {"params": {"token": f"{int(expires) + 10**9}.{nonce}.{signature}"}},
            "garbage": {"params": {"token": "x.y.z"}},
        }
        for name, request in refused.items():
            response = client.get("/api/stream", **request)
            assert response.status_code == 401, name
            assert response.json()["error"]["code"] == "unauthorized", name
        clock.now = issued["expires_at"]
        expired = client.get("/api/stream", params={"token": issued["token"]})
        assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]
        bad = client.get("/api/stream", params={"kinds": "gossip"}, headers=AUTH)
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error"


# --- a real server --------------------------------------------------------------------------------


@pytest.fixture
def trading_app(trained_install: TrainedInstall, tmp_path: Path) -> FastAPI:
    return create_app(make_settings(trained_install.copy_to(tmp_path), **TRADING))


def test_every_change_arrives_as_an_event_with_the_rest_body(trading_app: FastAPI) -> None:
    with (
        serve(trading_app) as base,
        httpx.Client(base_url=base, timeout=TIMEOUT) as http,
        http.stream("GET", "/api/stream", params={"token": token_of(http)}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = SseReader(response)
        opened(reader)

        halted = http.post("/api/mother-ai/halt", json={"reason": "lunch"}, headers=AUTH).json()
        assert one(reader, "kill_switch")["kill_switch"] == {**halted, "daily_loss": None}
        resumed = http.post("/api/mother-ai/resume", headers=AUTH).json()
        assert one(reader, "kill_switch")["kill_switch"]["halted"] is resumed["halted"] is False

        outcome = http.post("/api/mother-ai/decide", json={"execute": True}, headers=AUTH).json()
        assert outcome["order"] is not None, "the sample install buys at zero costs"
        decision = one(reader, "decision")["decision"]
        order = one(reader, "order")["order"]
        portfolio = one(reader, "portfolio")["portfolio"]
        stored = http.get(f"/api/mother-ai/decisions/{decision['id']}", headers=AUTH).json()
        assert decision == stored == outcome["decision"]
        assert order == outcome["order"]
        assert order == http.get("/api/orders", headers=AUTH).json()["orders"][0]
        now = http.get("/api/portfolio", headers=AUTH).json()
        assert {**portfolio, "as_of": 0} == {**now, "as_of": 0}

        reset = http.post("/api/portfolio/reset", headers=AUTH).json()
        assert {**one(reader, "portfolio")["portfolio"], "as_of": 0} == {**reset, "as_of": 0}

        job = http.post("/api/agents/ETHUSDT/train", headers=AUTH).json()
        http.post(f"/api/jobs/{job['id']}/cancel", headers=AUTH)
        statuses: list[dict[str, Any]] = []
        while not statuses or statuses[-1]["status"] not in ("done", "failed", "cancelled"):
            statuses.append(one(reader, "job")["job"])
        assert {s["id"] for s in statuses} == {job["id"]}
        assert statuses[0] == job and statuses[0]["status"] == "queued"
        assert statuses[-1] == http.get(f"/api/jobs/{job['id']}", headers=AUTH).json()
        assert statuses[-1]["status"] == "cancelled"


def test_a_stream_resumes_after_the_last_event_it_saw(trading_app: FastAPI) -> None:
    ctx = trading_app.state.ctx
    with serve(trading_app) as base, httpx.Client(base_url=base, timeout=TIMEOUT) as http:
        token = token_of(http)
        with http.stream("GET", "/api/stream", params={"token": token, "kinds": "kill_switch"}) as response:
            reader = SseReader(response)
            opened(reader)
            http.post("/api/mother-ai/halt", json={"reason": "one"}, headers=AUTH)
            seen = reader.events(1)[0]
        # While the client is away: a job event (filtered out on resume) and three kill-switch changes.
        http.post("/api/mother-ai/resume", headers=AUTH)
        ctx.events.publish("job", "not-wanted")
        http.post("/api/mother-ai/halt", json={"reason": "two"}, headers=AUTH)
        http.post("/api/mother-ai/resume", headers=AUTH)

        def resumed(**request: Any) -> list[SseEvent]:
            with http.stream("GET", "/api/stream", **request) as again:
                reader = SseReader(again)
                opened(reader)
                return reader.events(3)

        by_header = resumed(
            params={"token": token, "kinds": "kill_switch"}, headers={"Last-Event-ID": str(seen.id)}
        )
        assert [e.data["kill_switch"]["halted"] for e in by_header] == [False, True, False]
        assert [e.data["kill_switch"]["reason"] for e in by_header] == ["", "two", ""]
        ids = [int(str(e.id).rsplit("-", 1)[1]) for e in [seen, *by_header]]
        assert ids == sorted(ids) and len(set(ids)) == 4
        by_query = resumed(params={"token": token, "kinds": "kill_switch", "last_event_id": seen.id})
        assert [e.id for e in by_query] == [e.id for e in by_header]

        with http.stream(
            "GET", "/api/stream", params={"token": token}, headers={"Last-Event-ID": "0badc0de-12"}
        ) as unknown:
            reader = SseReader(unknown)
            opened(reader)
            resync = one(reader, "resync")
            assert resync["resync"]["after"] == "0badc0de-12"
            http.post("/api/mother-ai/halt", json={"reason": "after a restart"}, headers=AUTH)
            assert one(reader, "kill_switch")["kill_switch"]["reason"] == "after a restart"


def test_watched_candles_arrive_as_they_close(tmp_path: Path, fake_binance: FakeBinance) -> None:
    settings = make_settings(tmp_path, offline=False, binance_api_url=fake_binance.url)
    app = create_app(settings, clock=lambda: fake_binance.now_ms)
    t0 = fake_binance.now_ms
    with serve(app) as base, httpx.Client(base_url=base, timeout=TIMEOUT) as http:
        params = {
            "token": token_of(http),
            "symbols": ["BTCUSDT", "ETHUSDT"],
            "interval": "1h",
            "kinds": "candle",
        }
        with http.stream("GET", "/api/stream", params=params) as response:
            reader = SseReader(response)
            opened(reader)
            watcher = app.state.ctx.candle_watcher
            wait_until(lambda: len(watcher.watched()) == 2, timeout=10, what="the stream to watch its pairs")
            fake_binance.now_ms = t0 + HOUR + DEFAULT_GRACE_MS  # two closes: t0 - 1h and t0
            watcher.wake()
            got = [e.data["candle"] for e in reader.events(4)]
        assert sorted((c["symbol"], c["open_time"]) for c in got) == [
            ("BTCUSDT", t0 - HOUR),
            ("BTCUSDT", t0),
            ("ETHUSDT", t0 - HOUR),
            ("ETHUSDT", t0),
        ]
        btc = [c for c in got if c["symbol"] == "BTCUSDT"]
        served = http.get(
            "/api/binance/candles",
            params={"symbol": "BTCUSDT", "interval": "1h", "start": t0 - HOUR, "limit": 2},
            headers=AUTH,
        ).json()["candles"]
        assert [{k: v for k, v in c.items() if k not in ("symbol", "interval")} for c in btc] == served
        wait_until(lambda: watcher.watched() == [], timeout=10, what="a closed stream to stop watching")


@pytest.fixture
def quiet_app(tmp_path: Path) -> Iterator[FastAPI]:
    yield create_app(make_settings(tmp_path))


def raw_stream(base: str, query: str, *, rcvbuf: int | None = None) -> socket.socket:
    """A client that opens the stream and then never reads: a bare socket, its receive buffer shrunk
    when asked, so the server's writes back up quickly."""
    client = socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])))
    if rcvbuf is not None:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    client.sendall(f"GET /api/stream?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return client


def test_a_client_that_stops_reading_holds_up_neither_writers_nor_other_readers(quiet_app: FastAPI) -> None:
    ctx = quiet_app.state.ctx
    reason = "r" * 500
    with serve(quiet_app) as base, httpx.Client(base_url=base, timeout=TIMEOUT) as http:
        token = token_of(http)
        stuck = raw_stream(base, f"token={token}&kinds=kill_switch")
        wait_until(lambda: ctx.events.readers == 1, timeout=10, what="the stuck stream to open")
        with http.stream("GET", "/api/stream", params={"token": token, "kinds": "kill_switch"}) as response:
            reader = SseReader(response)
            opened(reader)
            total = 12_000  # ~9 MB of events: more than the stuck client's socket buffers, and the ring
            got: list[SseEvent] = []

            def read() -> None:
                while len(got) < total:
                    got.extend(reader.events(1))

            # The reading client reads while events are published, as a live dashboard does; batches well
            # under the ring's size keep a slow test machine from pushing it out of the ring meanwhile.
            reading = threading.Thread(target=read, daemon=True)
            reading.start()

            def caught_up(end: int) -> bool:
                return len(got) >= end or not reading.is_alive()

            batch = 1_000
            for start in range(0, total, batch):
                for i in range(start, start + batch):
                    ctx.events.publish("kill_switch", "halted", HaltState(True, f"{i} {reason}", None))
                wait_until(
                    functools.partial(caught_up, start + batch),
                    timeout=60,
                    what="the reading client to get the events published so far",
                )
            reading.join(timeout=60)
            assert [int(e.data["kill_switch"]["reason"].split()[0]) for e in got] == list(range(total))
        # The stuck client now reads. It gets every event in order, or (had it fallen out of the ring
        # the server keeps) a resync in their place; then the events after, like any other client.
        stuck.settimeout(30)
        ctx.events.publish("kill_switch", "running", HaltState(False, "the end", None))
        seen = bytearray()
        while b"the end" not in seen[-4096:]:
            chunk = stuck.recv(1 << 20)
            assert chunk, "the server closed the stuck stream instead of resuming it"
            seen += chunk
        delivered = seen.count(b"event: kill_switch")
        assert b"event: resync" in seen or delivered == total + 1, delivered
        stuck.close()
        wait_until(lambda: ctx.events.readers == 0, timeout=30, what="closed streams to leave the log")


def test_a_vanished_client_leaves_the_log(quiet_app: FastAPI) -> None:
    ctx = quiet_app.state.ctx
    with serve(quiet_app) as base, httpx.Client(base_url=base, timeout=TIMEOUT) as http:
        token = token_of(http)
        for _ in range(3):
            with http.stream("GET", "/api/stream", params={"token": token}) as response:
                opened(SseReader(response))
        wait_until(lambda: ctx.events.readers == 0, timeout=30, what="closed streams to leave the log")
        ctx.events.publish("kill_switch", "running", HaltState(False, "", None))
        assert ctx.events.readers == 0


def test_a_client_gone_while_its_stream_is_backed_up_leaves_the_log_and_its_watches(
    quiet_app: FastAPI,
) -> None:
    """The client vanishes while the server is still blocked writing its backlog: the stream's code is
    then suspended outside the generator, which Python closes only when it is garbage collected. With
    the collector off, only a registration the request itself owns is certain to be released."""
    ctx = quiet_app.state.ctx
    reason = "r" * 2_000
    with serve(quiet_app) as base, httpx.Client(base_url=base, timeout=TIMEOUT) as http:
        token = token_of(http)
        gone = raw_stream(base, f"token={token}&kinds=kill_switch&kinds=candle&symbols=BTCUSDT", rcvbuf=4096)
        wait_until(lambda: ctx.events.readers == 1, timeout=10, what="the stream to open")
        assert ctx.candle_watcher.watched() == [("BTCUSDT", "1h")]
        collecting = gc.isenabled()
        gc.disable()
        try:
            for i in range(2_000):  # ~4 MB: far more than the socket buffers hold unread
                ctx.events.publish("kill_switch", "halted", HaltState(True, f"{i} {reason}", None))
            gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            gone.close()  # a reset, as a vanished client's kernel sends
            wait_until(lambda: ctx.events.readers == 0, timeout=30, what="the gone stream to leave the log")
            assert ctx.candle_watcher.watched() == []
        finally:
            if collecting:
                gc.enable()
