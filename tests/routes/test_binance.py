"""/api/binance end to end: the real app, python-binance and a fake Binance on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from main import create_app
from tests.fakes.fake_binance import FakeBinance
from tests.support.clock import RecordedSleeps
from tests.support.http import AUTH, ctx_of
from tests.support.server import wait_until
from tests.support.settings import make_settings

HOUR = 3_600_000
KLINES = "/api/v3/klines"


def candles(client: TestClient, **params: object) -> dict:
    response = client.get(
        "/api/binance/candles", params={"symbol": "BTCUSDT", "interval": "1h", **params}, headers=AUTH
    )
    assert response.status_code == 200, response.text
    return response.json()


def stored(client: TestClient, symbol: str = "BTCUSDT", interval: str = "1h") -> np.ndarray:
    store = ctx_of(client).market.store
    return store.load("binance", symbol, interval).open_time


# --- fetching and paging -------------------------------------------------------------------------


def test_latest_candles_come_from_binance_then_from_the_cache(
    online_client: TestClient, fake_binance: FakeBinance
) -> None:
    assert fake_binance.requests == [], "starting the app must not call Binance (no ping on construction)"
    first = candles(online_client, limit=50)
    assert first["source"] == "binance"
    assert first["stale"] is False
    times = [c["open_time"] for c in first["candles"]]
    assert len(times) == 50
    assert times == sorted(set(times))
    # Only closed candles: the one containing "now" is still open and must not be served.
    assert times[-1] + HOUR <= fake_binance.now_ms
    assert times[-1] == (fake_binance.now_ms // HOUR - 1) * HOUR
    calls = len(fake_binance.requests_to(KLINES))
    again = candles(online_client, limit=50)
    assert again["source"] == "cache"
    assert again["candles"] == first["candles"]
    assert len(fake_binance.requests_to(KLINES)) == calls, "a repeated request must not touch Binance"


def test_candles_match_what_binance_sent(online_client: TestClient, fake_binance: FakeBinance) -> None:
    body = candles(online_client, limit=3)
    raw = fake_binance_rows(fake_binance, body["candles"][0]["open_time"], 3)
    for candle, row in zip(body["candles"], raw, strict=True):
        assert candle == {
            "open_time": row[0],
            "open": float(row[1]),
            "high": float(row[2]),
            "low": float(row[3]),
            "close": float(row[4]),
            "volume": float(row[5]),
        }


def fake_binance_rows(fake: FakeBinance, start: int, limit: int) -> list[list]:
    from binance.client import Client

    client = Client(ping=False)
    client.API_URL = fake.url
    return client.get_klines(symbol="BTCUSDT", interval="1h", startTime=start, limit=limit)


def test_pagination_past_1000_candles(online_client: TestClient, fake_binance: FakeBinance) -> None:
    body = candles(online_client, limit=2500)
    times = np.array([c["open_time"] for c in body["candles"]])
    assert len(times) == 2500
    assert (np.diff(times) == HOUR).all(), "contiguous, ascending, no duplicates"
    requests = fake_binance.requests_to(KLINES)
    assert len(requests) == 3
    assert all(int(r.params["limit"]) == 1000 for r in requests)


def test_start_returns_the_first_candles_from_there(online_client: TestClient) -> None:
    start = 1_704_067_200_000  # 2024-01-01T00:00Z
    body = candles(online_client, start="2024-01-01T00:00:00Z", limit=24)
    times = [c["open_time"] for c in body["candles"]]
    assert times == [start + i * HOUR for i in range(24)]
    by_ms = candles(online_client, start=str(start), end=str(start + 5 * HOUR), limit=100)
    assert [c["open_time"] for c in by_ms["candles"]] == times[:6]


# --- sync --------------------------------------------------------------------------------------


def test_incremental_sync_fetches_only_what_is_missing(
    online_client: TestClient, fake_binance: FakeBinance
) -> None:
    body = {"symbol": "BTCUSDT", "interval": "1h", "start": "2024-01-01", "end": "2024-01-31T23:00:00Z"}
    first = online_client.post("/api/binance/sync", json=body, headers=AUTH).json()
    assert (first["added"], first["stored"], first["requests"]) == (744, 744, 1)
    assert first["gaps"] == []
    again = online_client.post("/api/binance/sync", json=body, headers=AUTH).json()
    assert (again["added"], again["stored"], again["requests"]) == (0, 744, 0)
    wider = online_client.post(
        "/api/binance/sync", json={**body, "end": "2024-02-07T23:00:00Z"}, headers=AUTH
    ).json()
    assert (wider["added"], wider["stored"], wider["requests"]) == (168, 912, 1)
    klines = fake_binance.requests_to(KLINES)
    jan_31_23h, feb_1 = 1_706_742_000_000, 1_706_745_600_000
    assert jan_31_23h < int(klines[-1].params["startTime"]) <= feb_1, "the second fetch skips January"


def test_sync_before_listing_records_that_nothing_exists(
    online_client: TestClient, fake_binance: FakeBinance
) -> None:
    body = {"symbol": "BTCUSDT", "interval": "1d", "start": "2017-08-01", "end": "2017-08-31"}
    first = online_client.post("/api/binance/sync", json=body, headers=AUTH).json()
    assert first["stored"] == 15  # listed on 2017-08-17
    assert online_client.post("/api/binance/sync", json=body, headers=AUTH).json()["requests"] == 0


def test_large_sync_runs_as_a_job(online_app: Callable[..., FastAPI]) -> None:
    with TestClient(online_app(sync_inline_max_candles=1000)) as client:
        body = {"symbol": "ETHUSDT", "interval": "1h", "start": "2023-01-01", "end": "2023-06-30T23:00:00Z"}
        response = client.post("/api/binance/sync", json=body, headers=AUTH)
        assert response.status_code == 202
        job = response.json()
        assert job["kind"] == "sync"
        assert job["status"] in {"queued", "running", "done"}
        ctx_of(client).jobs.wait(job["id"], timeout=60)
        done = client.get(f"/api/jobs/{job['id']}", headers=AUTH).json()
        assert done["status"] == "done"
        assert done["progress"] == 1.0
        assert done["result"]["added"] == 181 * 24
        listed = client.get("/api/jobs", headers=AUTH).json()
        assert [j["id"] for j in listed["jobs"]] == [job["id"]]
        for filters, ids in [
            ({"kind": "sync"}, [job["id"]]),
            ({"kind": "train"}, []),
            ({"status": "done"}, [job["id"]]),
            ({"status": "running"}, []),
            ({"kind": "sync", "status": "failed"}, []),
        ]:
            found = client.get("/api/jobs", params=filters, headers=AUTH).json()
            assert ([j["id"] for j in found["jobs"]], found["total"]) == (ids, len(ids)), filters
        assert len(stored(client, "ETHUSDT")) == 181 * 24


def test_a_cancelled_sync_keeps_whole_pages_and_the_next_fetches_only_the_rest(
    online_app: Callable[..., FastAPI], fake_binance: FakeBinance
) -> None:
    # The fake answers each page after 0.3 s, so the cancel lands while the sync is between pages.
    fake_binance.add_fault(KLINES, "slow", delay=0.3, times=10)
    with TestClient(online_app(sync_inline_max_candles=1000)) as client:
        body = {"symbol": "ETHUSDT", "interval": "1h", "start": "2023-01-01", "end": "2023-06-30T23:00:00Z"}
        job = client.post("/api/binance/sync", json=body, headers=AUTH).json()
        wait_until(lambda: len(fake_binance.requests_to(KLINES)) >= 2, timeout=60, what="the second page")
        asked = client.post(f"/api/jobs/{job['id']}/cancel", headers=AUTH)
        assert asked.status_code == 200 and asked.json()["cancel_requested"] is True, asked.text
        ctx_of(client).jobs.wait(job["id"], timeout=60)
        ended = client.get(f"/api/jobs/{job['id']}", headers=AUTH).json()
        assert (ended["status"], ended["result"]) == ("cancelled", None), ended
        kept = stored(client, "ETHUSDT")
        assert 0 < len(kept) < 181 * 24, "stopped part way"
        # What it kept is whole: a run of consecutive candles from the start, no hole, nothing past it.
        assert kept[0] == 1_672_531_200_000 and set(np.diff(kept)) == {HOUR}
        asked_before = len(fake_binance.requests_to(KLINES))
        again = client.post("/api/binance/sync", json=body, headers=AUTH).json()
        ctx_of(client).jobs.wait(again["id"], timeout=60)
        done = client.get(f"/api/jobs/{again['id']}", headers=AUTH).json()
        assert done["status"] == "done", done
        assert done["result"]["added"] == 181 * 24 - len(kept), "the kept candles count as covered"
        first_asked = fake_binance.requests_to(KLINES)[asked_before]
        assert int(first_asked.params["startTime"]) > kept[-1], "the second sync skips what the first kept"
        assert len(stored(client, "ETHUSDT")) == 181 * 24


def test_sync_pauses_before_the_weight_limit(tmp_path: Path, sleeps: RecordedSleeps) -> None:
    # The fake counts weight per minute of its wall clock; our pauses advance that clock, as real
    # waiting would, so the budget renews exactly when the code under test expects it to.
    base = 1_700_000_000.0
    with FakeBinance(wall_clock=lambda: base + sum(sleeps), weight_limit=40) as fake:
        settings = make_settings(
            tmp_path,
            offline=False,
            binance_api_url=fake.url,
            binance_weight_limit=40,
            sync_inline_max_candles=10**6,
        )
        with TestClient(create_app(settings, clock=lambda: fake.now_ms, sleep=sleeps)) as client:
            body = {"symbol": "BTCUSDT", "interval": "1h", "start": "2020-01-01", "end": "2023-06-01"}
            report = client.post("/api/binance/sync", json=body, headers=AUTH).json()
    requests = report["requests"]
    assert requests == 30  # 29,977 candles: 29 full pages and a last short one
    # Each klines request costs 2; we pause when the next one would pass 36 (90% of 40), so
    # the fake never had to answer 429 (which would have shown up as a retry sleep of its own).
    assert len(sleeps) == (requests - 1) // 18
    assert all(55 < s <= 61 for s in sleeps)
    assert report["stored"] == report["added"] == (1_685_577_600_000 - 1_577_836_800_000) // HOUR + 1


# --- faults: what the API answers, and the store is unharmed -----------------------------------


@pytest.fixture
def warm(online_client: TestClient, fake_binance: FakeBinance) -> tuple[TestClient, np.ndarray]:
    """100 candles stored, then an hour passes so the next request must fetch again."""
    candles(online_client, limit=100)
    before = stored(online_client).copy()
    fake_binance.now_ms += 5 * HOUR
    return online_client, before


@pytest.mark.parametrize(
    ("kind", "extra", "expected_sleep"),
    [
        ("429", {"retry_after": 3}, 3.0),
        ("418", {"retry_after": 7}, 7.0),
        ("500", {}, 0.5),
        ("503", {}, 0.5),
        ("malformed", {}, 0.5),
    ],
)
def test_transient_faults_are_retried(
    warm: tuple[TestClient, np.ndarray],
    fake_binance: FakeBinance,
    sleeps: RecordedSleeps,
    kind: str,
    extra: dict,
    expected_sleep: float,
) -> None:
    client, before = warm
    fake_binance.add_fault(KLINES, kind, times=1, **extra)
    body = candles(client, limit=100)
    assert body["source"] == "binance"
    assert body["stale"] is False
    assert sleeps == [expected_sleep], "Retry-After is honoured, else exponential backoff starts at 0.5 s"
    after = stored(client)
    assert len(after) == len(before) + 5
    assert np.array_equal(after[: len(before)], before)


@pytest.mark.parametrize("kind", ["500", "429", "malformed"])
def test_persistent_faults_serve_stored_candles_as_stale(
    warm: tuple[TestClient, np.ndarray], fake_binance: FakeBinance, sleeps: RecordedSleeps, kind: str
) -> None:
    client, before = warm
    fake_binance.add_fault(KLINES, kind, times=100, retry_after=1)
    body = candles(client, limit=100)
    assert body["stale"] is True
    assert body["source"] == "cache"
    assert [c["open_time"] for c in body["candles"]] == before.tolist()
    assert len(sleeps) == 5, "five retries, then give up"
    assert sleeps == sorted(sleeps)
    assert np.array_equal(stored(client), before)


@pytest.mark.parametrize("kind", ["portal", "not_klines", "bad_rows"])
def test_an_answer_that_is_not_binances_serves_stored_candles_and_pauses_asking(
    warm: tuple[TestClient, np.ndarray], fake_binance: FakeBinance, sleeps: RecordedSleeps, kind: str
) -> None:
    """A captive portal or a proxy answering in Binance's place (a 200 that is not klines) is retried,
    then treated as Binance being out of reach: stored candles, marked stale, never a 502, and the next
    requests do not ask (nor wait) again until the pause is over."""
    client, before = warm
    fake_binance.add_fault(KLINES, kind, times=100)
    first = candles(client, limit=100)
    asked = len(fake_binance.requests_to(KLINES))
    second = candles(client, limit=100)
    for body in (first, second):
        assert (body["stale"], body["source"]) == (True, "cache")
        assert [c["open_time"] for c in body["candles"]] == before.tolist()
    assert len(sleeps) == 5, "five retries on the first request, none on the second"
    assert len(fake_binance.requests_to(KLINES)) == asked, "the second request did not ask Binance"
    assert np.array_equal(stored(client), before), "nothing of the garbage was stored"


def test_a_long_ban_is_not_waited_out(
    warm: tuple[TestClient, np.ndarray], fake_binance: FakeBinance, sleeps: RecordedSleeps
) -> None:
    client, before = warm
    fake_binance.add_fault(KLINES, "418", times=1, retry_after=3600)
    body = candles(client, limit=100)
    assert body["stale"] is True
    assert sleeps == []
    assert np.array_equal(stored(client), before)


def test_timeouts_are_retried_then_stale(
    online_app: Callable[..., FastAPI], fake_binance: FakeBinance, sleeps: RecordedSleeps
) -> None:
    with TestClient(online_app(binance_timeout_seconds=0.2, binance_max_retries=1)) as client:
        candles(client, limit=10)
        before = stored(client).copy()
        fake_binance.now_ms += 2 * HOUR
        fake_binance.add_fault(KLINES, "slow", times=1, delay=0.6)
        recovered = candles(client, limit=10)
        assert recovered["stale"] is False
        assert len(stored(client)) == len(before) + 2
        fake_binance.now_ms += 2 * HOUR
        fake_binance.add_fault(KLINES, "slow", times=2, delay=0.6)
        stale = candles(client, limit=10)
        assert stale["stale"] is True
        assert len(stored(client)) == len(before) + 2


def test_binance_error_codes_become_clear_errors(
    warm: tuple[TestClient, np.ndarray], fake_binance: FakeBinance
) -> None:
    client, before = warm
    fake_binance.add_fault(KLINES, "error", times=1, code=-1100, msg="Illegal characters found in parameter.")
    response = client.get(
        "/api/binance/candles", params={"symbol": "BTCUSDT", "interval": "1h"}, headers=AUTH
    )
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "exchange_error"
    assert error["details"]["binance_code"] == -1100
    assert "Illegal characters" in error["message"]
    assert np.array_equal(stored(client), before)


def test_unknown_symbol_is_404(online_client: TestClient) -> None:
    response = online_client.get(
        "/api/binance/candles", params={"symbol": "NOPEUSDT", "interval": "1h"}, headers=AUTH
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_symbol"
    assert response.json()["error"]["details"]["binance_code"] == -1121


# --- price and symbols ---------------------------------------------------------------------------


def test_price_and_symbols_online(online_client: TestClient, fake_binance: FakeBinance) -> None:
    price = online_client.get("/api/binance/price", params={"symbol": "BTCUSDT"}, headers=AUTH).json()
    assert price["source"] == "binance"
    assert price["price"] > 0
    symbols = online_client.get("/api/binance/symbols", headers=AUTH).json()
    assert symbols["source"] == "binance"
    btc = next(s for s in symbols["symbols"] if s["symbol"] == "BTCUSDT")
    assert float(btc["tick_size"]) == 0.01
    assert float(btc["step_size"]) == 0.00001
    assert float(btc["min_notional"]) == 5


def test_symbols_are_remembered_for_offline_use(online_client: TestClient, fake_binance: FakeBinance) -> None:
    online_client.get("/api/binance/symbols", headers=AUTH)
    fake_binance.add_fault("/api/v3/exchangeInfo", "500", times=100)
    body = online_client.get("/api/binance/symbols", headers=AUTH).json()
    assert body["stale"] is True
    assert body["source"] == "cache"
    assert "ETHUSDT" in {s["symbol"] for s in body["symbols"]}


# --- offline and unreachable -------------------------------------------------------------------


def test_offline_mode_never_calls_binance(tmp_path: Path, fake_binance: FakeBinance) -> None:
    settings = make_settings(tmp_path, offline=True, binance_api_url=fake_binance.url)
    with TestClient(create_app(settings)) as client:
        body = candles(client, limit=24)
        price = client.get("/api/binance/price", params={"symbol": "ETHUSDT"}, headers=AUTH).json()
        sync = client.post(
            "/api/binance/sync", json={"symbol": "BTCUSDT", "interval": "1h", "start": 0}, headers=AUTH
        )
        unknown = client.get(
            "/api/binance/candles", params={"symbol": "SOLUSDT", "interval": "1h"}, headers=AUTH
        )
    assert body["source"] == "sample"
    assert body["stale"] is False
    assert len(body["candles"]) == 24
    assert price["source"] == "sample"
    assert sync.status_code == 409
    assert sync.json()["error"]["code"] == "offline"
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "no_data"
    assert "offline" in unknown.json()["error"]["message"]
    assert fake_binance.requests == []


def test_unreachable_binance_serves_stored_data_as_stale(tmp_path: Path) -> None:
    # Port 9 on loopback: nothing listens, the connection is refused at once.
    settings = make_settings(tmp_path, offline=False, binance_api_url="http://127.0.0.1:9/api")
    with TestClient(create_app(settings)) as client:
        body = candles(client, limit=5)
        missing = client.get(
            "/api/binance/candles", params={"symbol": "SOLUSDT", "interval": "1h"}, headers=AUTH
        )
        price = client.get("/api/binance/price", params={"symbol": "BTCUSDT"}, headers=AUTH).json()
    assert (body["source"], body["stale"]) == ("sample", True)
    assert missing.status_code == 503
    assert missing.json()["error"]["code"] == "data_unavailable"
    assert "SOLUSDT" in missing.json()["error"]["message"]
    assert (price["source"], price["stale"]) == ("sample", True)


def test_sample_data_is_labelled_and_never_mixed_with_real(online_client: TestClient) -> None:
    store = ctx_of(online_client).market.store
    sample_before = store.load("sample", "BTCUSDT", "1h")
    real = candles(online_client, limit=10)
    assert real["source"] == "binance"
    sample_after = store.load("sample", "BTCUSDT", "1h")
    assert np.array_equal(sample_after.close, sample_before.close), (
        "real candles never enter the sample series"
    )
    assert "not real market data" in store.meta("sample", "BTCUSDT", "1h")["synthetic"]
    assert "synthetic" not in store.meta("binance", "BTCUSDT", "1h")
    assert len(store.load("binance", "BTCUSDT", "1h")) == 10


# --- CSV import ----------------------------------------------------------------------------------

BINANCE_CSV = (
    "1704067200000,42283.58,42554.57,42261.02,42475.23,1271.68,1704070799999,53957248.97,47134,682.57,28957416.82,0\n"
    "1704070800000,42475.23,42775.00,42431.65,42613.56,1196.37,1704074399999,51027751.57,44827,580.87,24779954.58,0\n"
    "1704074400000000,42613.57,42813.00,42500.00,42600.00,900.00,1704077999999999,38400000.00,40000,450.00,19000000.00,0\n"
)
PLAIN_CSV = (
    "timestamp,open,high,low,close,volume\n"
    "2024-01-01 00:00:00,42283.58,42554.57,42261.02,42475.23,1271.68\n"
    "2024-01-01 01:00:00,42475.23,42775.00,42431.65,42613.56,1196.37\n"
    "2024-01-01 03:00:00,42600.00,42700.00,42500.00,42650.00,800.00\n"
)


def upload(
    client: TestClient, content: str | bytes, symbol: str = "MYCOINUSDT", interval: str = "1h"
) -> httpx.Response:
    data = content.encode() if isinstance(content, str) else content
    return client.post(
        "/api/binance/import",
        params={"symbol": symbol, "interval": interval},
        files={"file": ("klines.csv", data, "text/csv")},
        headers=AUTH,
    )


@pytest.mark.parametrize(
    ("content", "layout", "gaps"),
    [(BINANCE_CSV, "binance", []), (PLAIN_CSV, "plain", [[1704070800000, 1704078000000, 1]])],
)
def test_import_both_layouts(client: TestClient, content: str, layout: str, gaps: list) -> None:
    response = upload(client, content)
    assert response.status_code == 201, response.text
    report = response.json()
    assert (report["layout"], report["rows"], report["added"]) == (layout, 3, 3)
    assert [[g["after"], g["before"], g["missing"]] for g in report["gaps"]] == gaps
    served = candles(client, symbol="MYCOINUSDT", start="2024-01-01", limit=10)
    assert served["source"] == "file"
    assert served["candles"][1]["close"] == 42613.56
    assert [[g["after"], g["before"], g["missing"]] for g in served["gaps"]] == gaps
    assert upload(client, content).json()["added"] == 0, "re-importing adds no duplicates"


@pytest.mark.parametrize(
    ("content", "line", "words"),
    [
        (PLAIN_CSV.replace("42775.00,42431.65", "42000.00,42431.65"), 3, "high"),
        (PLAIN_CSV.replace("42261.02,42475.23", "42500.00,42475.23"), 2, "low"),
        (PLAIN_CSV.replace("2024-01-01 03:00:00", "2024-01-01 00:00:00"), 4, "after the previous"),
        (PLAIN_CSV.replace("800.00", "-1"), 4, "volume"),
        (PLAIN_CSV.replace("42600.00,42700.00", "abc,42700.00"), 4, "finite"),
        (PLAIN_CSV.replace("2024-01-01 01:00:00", "2024-01-01 01:30:00"), 3, "boundary"),
        (PLAIN_CSV.replace("2024-01-01 01:00:00", "yesterday"), 3, "date"),
        (BINANCE_CSV.replace(",0\n1704070800000", ",0,7\n1704070800000"), 1, "12"),
        (BINANCE_CSV + "1704081600000,1,2\n", 4, "found 3"),
        (PLAIN_CSV.replace("42775.00,42431.65", "42775.00,,42431.65"), 3, "found 7"),
        (PLAIN_CSV.replace("42775.00,42431.65", ",42431.65"), 3, "empty"),
        (PLAIN_CSV.replace("\n2024-01-01 01:00:00", "\n\n2024-01-01 01:00:00"), 3, "found 1"),
        (PLAIN_CSV.replace("2024-01-01 03:00:00", "2099-01-01 03:00:00"), 4, "not closed"),
        (BINANCE_CSV.replace("1704070800000,", "1e30,", 1), 2, "out of range"),
        (PLAIN_CSV.encode() + b"2024-01-01 04:00:00,\xff\xfe,1,1,1,1\n", 5, "UTF-8"),
    ],
)
def test_bad_rows_reject_the_whole_file_with_the_line_number(
    client: TestClient, content: str, line: int, words: str
) -> None:
    response = upload(client, content)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_csv"
    assert error["message"].startswith(f"Line {line}:"), error["message"]
    assert words in error["message"]
    assert not ctx_of(client).market.store.exists("file", "MYCOINUSDT", "1h")


def test_a_rejected_file_leaves_earlier_imports_untouched(client: TestClient) -> None:
    assert upload(client, PLAIN_CSV).status_code == 201
    bad = PLAIN_CSV.replace("2024-01-01 03:00:00,42600.00", "2024-01-01 04:00:00,42600.00").replace(
        "42650.00,800.00", "42650.00,-5"
    )
    assert upload(client, bad).status_code == 422
    assert len(candles(client, symbol="MYCOINUSDT", start="2024-01-01")["candles"]) == 3


def test_upload_size_is_capped(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, upload_max_bytes=2000))) as client:
        response = upload(client, PLAIN_CSV + "\n" * 3000)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_offline_price_is_the_newest_stored_close(client: TestClient) -> None:
    # An old real candle must not shadow newer data of another series.
    old = "timestamp,open,high,low,close,volume\n2019-01-01 00:00:00,3700,3710,3690,3701,10\n"
    assert upload(client, old, symbol="BTCUSDT", interval="1m").status_code == 201
    price = client.get("/api/binance/price", params={"symbol": "BTCUSDT"}, headers=AUTH).json()
    newest = candles(client, limit=1)["candles"][-1]
    assert (price["source"], price["price"], price["as_of"]) == (
        "sample",
        newest["close"],
        newest["open_time"],
    )


def test_files_in_data_dir_are_picked_up(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    settings.data_dir.mkdir(parents=True)
    (settings.data_dir / "MYCOINUSDT-1h-2024-01.csv").write_text(BINANCE_CSV)
    (settings.data_dir / "MYCOINUSDT-1h-broken.csv").write_text("not,a,kline\n")
    (settings.data_dir / "notes.csv").write_text("ignored")
    with TestClient(create_app(settings)) as client:
        body = candles(client, symbol="MYCOINUSDT", start="2024-01-01")
    assert body["source"] == "file"
    assert [c["open_time"] for c in body["candles"]] == [1704067200000, 1704070800000, 1704074400000]


# --- input validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"symbol": "btcusdt"}, "symbol"),
        ({"symbol": "BTC"}, "symbol"),
        ({"symbol": "A" * 21}, "symbol"),
        ({"symbol": "BTC/USDT"}, "symbol"),
        ({"interval": "7h"}, "interval"),
        ({"interval": "1H"}, "interval"),
        ({"limit": 0}, "limit"),
        ({"limit": 5001}, "limit"),
        ({"start": "yesterday"}, "start"),
        ({"end": "2024-13-45"}, "end"),
        ({"start": "2024-02-01", "end": "2024-01-01"}, "start"),
        ({"start": "--5"}, "start"),
        ({"start": "²"}, "start"),
        ({"start": "1970-01-01T00:00:00+05:00"}, "start"),
        ({"end": "99999999999999999999"}, "end"),
    ],
)
def test_invalid_queries_are_422_naming_the_field(client: TestClient, params: dict, field: str) -> None:
    query = {"symbol": "BTCUSDT", "interval": "1h", **params}
    response = client.get("/api/binance/candles", params=query, headers=AUTH)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert field in error["message"]
    if field == "interval":
        assert "'1m'" in error["message"] and "'1M'" in error["message"], "the message lists what is allowed"
    if field == "symbol":
        assert "A-Z0-9" in error["message"]


def test_a_local_clock_ahead_of_binance_never_stores_a_forming_candle(
    tmp_path: Path, fake_binance: FakeBinance
) -> None:
    midnight = fake_binance.now_ms
    fake_binance.now_ms = midnight + 10 * 60_000  # Binance: 00:10, the 00:00 candle is forming
    clock = {"skew": 55 * 60_000}  # our clock says 01:05 and believes 00:00 has closed
    settings = make_settings(tmp_path, offline=False, binance_api_url=fake_binance.url)
    app = create_app(settings, clock=lambda: fake_binance.now_ms + clock["skew"])
    with TestClient(app) as client:
        first = candles(client, limit=5)
        assert first["candles"][-1]["open_time"] == midnight - HOUR, "Binance's Date header wins"
        assert midnight not in stored(client).tolist()
        fake_binance.now_ms = midnight + HOUR + 5_000  # now it has closed at Binance too
        clock["skew"] = 0
        second = candles(client, limit=5)
        assert second["candles"][-1]["open_time"] == midnight, "left uncovered, so fetched once closed"
        assert second["source"] == "binance"
