"""The Binance client under concurrency and outages, against the fake Binance over real HTTP: a slow
or rate-limited call holds up no other, the weight budget stays exact with calls side by side, and an
unreachable Binance is asked once, then left alone for a while."""

from __future__ import annotations

import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from main import create_app
from tests.fakes.fake_binance import FakeBinance
from tests.support.http import AUTH
from tests.support.server import wait_until
from tests.support.settings import make_settings
from utils.binance_api import BREAKER_MS, BinanceExchange
from utils.errors import ExchangeUnavailable
from utils.settings import Settings

HOUR = 3_600_000


def online_settings(tmp_path: Path, fake: FakeBinance) -> Settings:
    return make_settings(tmp_path, offline=False, binance_api_url=fake.url)


def klines_now(exchange: BinanceExchange, fake: FakeBinance) -> int:
    pages = list(exchange.iter_klines("ETHUSDT", "1h", fake.now_ms - 48 * HOUR, fake.now_ms))
    return sum(len(p.rows) for p in pages)


def test_a_slow_call_holds_up_no_other_call(fake_binance: FakeBinance) -> None:
    exchange = BinanceExchange(api_url=fake_binance.url, clock=lambda: fake_binance.now_ms, timeout_s=20)
    fake_binance.reset()
    fake_binance.add_fault("/api/v3/ticker/price", "slow", delay=1.5)
    slow = threading.Thread(target=lambda: exchange.price("BTCUSDT"))
    slow.start()
    wait_until(
        lambda: len(fake_binance.requests_to("/api/v3/ticker/price")) == 1, timeout=10, what="the slow call"
    )
    assert klines_now(exchange, fake_binance) == 48
    assert slow.is_alive(), "the candles came while the slow ticker call was still waiting for its answer"
    slow.join(30)


def test_a_retry_after_makes_only_its_own_call_wait(fake_binance: FakeBinance) -> None:
    release = threading.Event()
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # the rate-limited call's wait, held until the test lets it go
        waits.append(seconds)
        release.wait(30)

    exchange = BinanceExchange(api_url=fake_binance.url, clock=lambda: fake_binance.now_ms, sleep=sleep)
    fake_binance.reset()
    fake_binance.add_fault("/api/v3/ticker/price", "429", retry_after=20)
    prices: list[float] = []
    limited = threading.Thread(target=lambda: prices.append(exchange.price("BTCUSDT")))
    limited.start()
    wait_until(lambda: waits == [20.0], timeout=10, what="the call to wait Retry-After")
    assert klines_now(exchange, fake_binance) == 48
    assert limited.is_alive() and prices == [], "it is still waiting out its Retry-After"
    release.set()
    limited.join(30)
    assert len(prices) == 1 and prices[0] > 0


def test_the_weight_budget_holds_with_calls_side_by_side() -> None:
    lock = threading.Lock()
    now_ms = [1_709_251_200_000]  # one clock for the fake's weight minute and ours

    def clock() -> int:
        with lock:
            return now_ms[0]

    def sleep(seconds: float) -> None:  # waiting moves the shared clock: the next minute comes
        with lock:
            now_ms[0] += int(seconds * 1000)

    with FakeBinance(weight_limit=100, wall_clock=lambda: clock() / 1000) as fake:
        exchange = BinanceExchange(api_url=fake.url, weight_limit=100, clock=clock, sleep=sleep)
        calls = 80  # weight 2 each: 160 against a budget of 90 a minute (90% of 100)
        with ThreadPoolExecutor(8) as pool:
            prices = list(pool.map(lambda _: exchange.price("BTCUSDT"), range(calls)))
        assert len(prices) == calls and all(p > 0 for p in prices)
        assert len(fake.requests_to("/api/v3/ticker/price")) == calls, "no call was refused and retried"
        assert now_ms[0] > 1_709_251_200_000, "the client paused for the next minute"


@pytest.fixture
def dead_url() -> str:
    """A port nothing listens on: connections are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/api"


def test_an_unreachable_binance_is_asked_once_then_left_alone_for_a_while(dead_url: str) -> None:
    now = [1_709_251_200_000]
    exchange = BinanceExchange(api_url=dead_url, clock=lambda: now[0], sleep=lambda _: None)
    with pytest.raises(ExchangeUnavailable, match="unreachable"):
        exchange.price("BTCUSDT")
    assert exchange.request_count == 1
    for _ in range(5):
        with pytest.raises(ExchangeUnavailable, match="moments ago") as refused:
            list(exchange.iter_klines("BTCUSDT", "1h", now[0] - HOUR, now[0]))
        assert refused.value.details == {"retry_at": now[0] + BREAKER_MS}
    assert exchange.request_count == 1, "no request while the breaker is open"
    now[0] += BREAKER_MS
    with pytest.raises(ExchangeUnavailable, match="unreachable"):
        exchange.price("BTCUSDT")
    assert exchange.request_count == 2, "asked again once the pause is over"


def test_binance_answering_again_closes_the_breaker(fake_binance: FakeBinance) -> None:
    now = [fake_binance.now_ms]
    exchange = BinanceExchange(api_url=fake_binance.url, clock=lambda: now[0], sleep=lambda _: None)
    fake_binance.reset()
    fake_binance.add_fault("/api/v3/ticker/price", "slow", delay=0.5, times=1)
    slow_client = BinanceExchange(
        api_url=fake_binance.url, clock=lambda: now[0], sleep=lambda _: None, timeout_s=0.2, max_retries=0
    )
    with pytest.raises(ExchangeUnavailable, match="timeout"):
        slow_client.price("BTCUSDT")  # gave up on timeouts: the breaker opens
    with pytest.raises(ExchangeUnavailable, match="moments ago"):
        slow_client.price("BTCUSDT")
    now[0] += BREAKER_MS
    assert slow_client.price("BTCUSDT") > 0 and exchange.price("BTCUSDT") > 0
    assert slow_client.price("BTCUSDT") > 0, "closed again: no pause after a success"


# --- what a sync keeps from Binance's answers -----------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"close": "NaN"},
        {"high": "Infinity"},
        {"low": "0"},
        {"open": "-5"},
        {"volume": "-1"},
        {"high": "1"},  # below open and close
        {"low": "999999999"},  # above open and close
    ],
)
def test_a_sync_stores_no_invalid_candle_and_leaves_its_time_to_ask_again(
    tmp_path: Path, fields: dict[str, str]
) -> None:
    with FakeBinance() as fake:
        bad = fake.now_ms - 10 * HOUR
        fake.corrupt("BTCUSDT", bad, **fields)
        with TestClient(create_app(online_settings(tmp_path, fake), clock=lambda: fake.now_ms)) as client:
            params = {"symbol": "BTCUSDT", "interval": "1h", "limit": 24}
            first = client.get("/api/binance/candles", params=params, headers=AUTH).json()
            times = [c["open_time"] for c in first["candles"]]
            assert bad not in times and len(times) == 23
            assert first["gaps"] == [{"after": bad - HOUR, "before": bad + HOUR, "missing": 1}]
            fake.reset()  # the exchange now answers that candle properly
            again = client.get("/api/binance/candles", params=params, headers=AUTH).json()
            assert [c["open_time"] for c in again["candles"]] == [*times[:14], bad, *times[14:]]
            assert again["gaps"] == []


def test_an_empty_answer_covers_nothing(tmp_path: Path) -> None:
    with FakeBinance() as fake:
        fake.add_fault("/api/v3/klines", "empty")
        with TestClient(create_app(online_settings(tmp_path, fake), clock=lambda: fake.now_ms)) as client:
            params = {"symbol": "ETHUSDT", "interval": "1h", "limit": 24}
            first = client.get("/api/binance/candles", params=params, headers=AUTH)
            assert first.status_code == 200 and first.json()["candles"] == [], first.text
            again = client.get("/api/binance/candles", params=params, headers=AUTH).json()
            assert len(again["candles"]) == 24, "the range was asked for again, not taken as empty"


def test_binance_error_text_reaches_a_client_without_anything_like_a_key(tmp_path: Path) -> None:
    key = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
    with FakeBinance() as fake:
        fake.add_fault(
            "/api/v3/ticker/price",
            "reject",
            code=-2015,
            msg=f"Invalid API-key {key}, IP, or permissions; apiKey={key[:20]}",
        )
        with TestClient(create_app(online_settings(tmp_path, fake), clock=lambda: fake.now_ms)) as client:
            response = client.get("/api/binance/price", params={"symbol": "BTCUSDT"}, headers=AUTH)
    assert response.status_code == 502, response.text
    assert "Invalid API-key" in response.json()["error"]["message"]
    assert key not in response.text and key[:20] not in response.text
