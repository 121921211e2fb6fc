"""Exchange rules on demand: `MarketData.symbol_filters` against the fake Binance, python-binance
and a real SQLite file, without any prior GET /api/binance/symbols."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from db import storage
from main import create_app
from tests.fakes.fake_binance import ETHUSDT_LISTED_MS, FakeBinance
from tests.support.clock import RecordedSleeps
from tests.support.http import ctx_of
from tests.support.settings import make_settings
from utils.market_data.market import (
    SAMPLE_FILTERS,
    SYMBOL_FAILURE_RETRY_MS,
    SYMBOL_FILTERS_MAX_AGE_MS,
    SYMBOL_MISS_RETRY_MS,
    MarketData,
)

EXCHANGE_INFO = "/api/v3/exchangeInfo"


def market_of(client: TestClient) -> MarketData:
    return ctx_of(client).market


def asked(fake: FakeBinance) -> int:
    return len(fake.requests_to(EXCHANGE_INFO))


@pytest.fixture
def fresh_install(online_app: Callable[..., FastAPI]) -> Iterator[TestClient]:
    """A fresh install with network: nothing stored about any symbol, no sample filters."""
    with TestClient(online_app(sample_data=False), raise_server_exceptions=False) as client:
        yield client


def test_a_fresh_install_fetches_the_rules_once_without_listing_symbols_first(
    fresh_install: TestClient, fake_binance: FakeBinance
) -> None:
    market = market_of(fresh_install)
    assert storage.get_symbol(market.sessions, "ETHUSDT") is None, "nothing stored before the first use"
    eth = market.symbol_filters("ETHUSDT")
    assert eth is not None
    assert (eth.status, eth.base_asset, eth.quote_asset) == ("TRADING", "ETH", "USDT")
    assert (eth.tick_size, eth.step_size, eth.min_qty, eth.min_notional) == (
        "0.01000000",
        "0.00010000",
        "0.00010000",
        "5.00000000",
    )
    assert asked(fake_binance) == 1
    assert fake_binance.requests_to("/api/v3/klines") == []
    row = storage.get_symbol(market.sessions, "ETHUSDT")
    assert row is not None and row.source == "binance", "the fetched rules are stored"
    # A second call, and a call for a symbol the same listing brought in, cost nothing.
    assert market.symbol_filters("ETHUSDT") == eth
    assert market.symbol_filters("BTCUSDT") is not None
    assert asked(fake_binance) == 1


def test_sample_filters_are_replaced_by_binances_when_online(
    online_client: TestClient, fake_binance: FakeBinance
) -> None:
    market = market_of(online_client)
    sample_row = storage.get_symbol(market.sessions, "ETHUSDT")
    assert sample_row is not None and sample_row.source == "sample"
    fake_binance.add_symbol("ETHUSDT", listed_ms=ETHUSDT_LISTED_MS, base_price=2_000.0, step_size="0.001")
    eth = market.symbol_filters("ETHUSDT")
    assert eth is not None and eth.step_size == "0.00100000", "Binance's rules, not the sample's"
    assert asked(fake_binance) == 1
    assert market.symbol_filters("ETHUSDT") == eth
    assert asked(fake_binance) == 1


def test_old_rules_are_refreshed_once_after_the_maximum_age(
    fresh_install: TestClient, fake_binance: FakeBinance
) -> None:
    market = market_of(fresh_install)
    first = market.symbol_filters("ETHUSDT")
    assert first is not None and first.tick_size == "0.01000000"
    fake_binance.add_symbol("ETHUSDT", listed_ms=ETHUSDT_LISTED_MS, base_price=2_000.0, tick_size="0.1")
    fake_binance.now_ms += SYMBOL_FILTERS_MAX_AGE_MS - 1
    assert market.symbol_filters("ETHUSDT") == first, "still fresh: served from the store"
    assert asked(fake_binance) == 1
    fake_binance.now_ms += 1
    refreshed = market.symbol_filters("ETHUSDT")
    assert refreshed is not None and refreshed.tick_size == "0.10000000"
    assert market.symbol_filters("ETHUSDT") == refreshed
    assert asked(fake_binance) == 2, "exactly one refresh"
    row = storage.get_symbol(market.sessions, "ETHUSDT")
    assert row is not None and row.tick_size == "0.10000000", "the refresh is stored"


def test_an_unknown_symbol_is_none_and_not_asked_again_within_the_window(
    fresh_install: TestClient, fake_binance: FakeBinance
) -> None:
    market = market_of(fresh_install)
    assert market.symbol_filters("SOLUSDT") is None
    assert asked(fake_binance) == 1
    fake_binance.add_symbol("SOLUSDT", listed_ms=ETHUSDT_LISTED_MS, base_price=100.0)
    fake_binance.now_ms += SYMBOL_MISS_RETRY_MS - 1
    assert market.symbol_filters("SOLUSDT") is None, "the miss is remembered"
    assert asked(fake_binance) == 1
    fake_binance.now_ms += 1
    sol = market.symbol_filters("SOLUSDT")
    assert sol is not None and sol.base_asset == "SOL", "asked again once the window has passed"
    assert asked(fake_binance) == 2


def test_binance_saying_invalid_symbol_is_none_and_remembered(
    fresh_install: TestClient, fake_binance: FakeBinance
) -> None:
    fake_binance.add_fault(EXCHANGE_INFO, "error")  # 400, code -1121 "Invalid symbol."
    market = market_of(fresh_install)
    assert market.symbol_filters("SOLUSDT") is None
    assert market.symbol_filters("SOLUSDT") is None
    assert asked(fake_binance) == 1


@pytest.mark.parametrize("kind", ["500", "reject"])
def test_a_failing_binance_serves_the_stored_rules_and_warns_once(
    fresh_install: TestClient, fake_binance: FakeBinance, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    market = market_of(fresh_install)
    stored = market.symbol_filters("ETHUSDT")
    assert stored is not None
    fake_binance.now_ms += SYMBOL_FILTERS_MAX_AGE_MS  # the stored rules are now old
    fake_binance.add_fault(EXCHANGE_INFO, kind, times=100)
    caplog.set_level(logging.WARNING, logger="utils.market_data.market")
    assert market.symbol_filters("ETHUSDT") == stored, "old, but better than nothing"
    attempts = asked(fake_binance)
    assert attempts > 1, "the refresh was tried"
    assert market.symbol_filters("ETHUSDT") == stored
    assert asked(fake_binance) == attempts, "a failed refresh is not retried on every call"
    fake_binance.now_ms += SYMBOL_FAILURE_RETRY_MS
    assert market.symbol_filters("ETHUSDT") == stored
    assert asked(fake_binance) > attempts, "tried again after the failure window"
    warnings = [r for r in caplog.records if "could not refresh" in r.getMessage()]
    assert len(warnings) == 1, "one warning per outage"
    assert market.symbol_filters("BTCUSDT") is not None, "other stored symbols are served too"


def test_a_failing_binance_with_nothing_stored_is_none(
    fresh_install: TestClient, fake_binance: FakeBinance
) -> None:
    fake_binance.add_fault(EXCHANGE_INFO, "503", times=100)
    assert market_of(fresh_install).symbol_filters("ETHUSDT") is None


def test_an_unreachable_binance_serves_the_sample_rules(tmp_path: Path, sleeps: RecordedSleeps) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = make_settings(tmp_path, offline=False, binance_api_url=f"http://127.0.0.1:{port}/api")
    with TestClient(create_app(settings, sleep=sleeps)) as client:
        market = market_of(client)
        assert market.symbol_filters("ETHUSDT") == SAMPLE_FILTERS[1]
        assert market.symbol_filters("SOLUSDT") is None


def test_offline_reads_only_the_store(tmp_path: Path, fake_binance: FakeBinance) -> None:
    settings = make_settings(tmp_path, offline=True, binance_api_url=fake_binance.url)
    with TestClient(create_app(settings, clock=lambda: fake_binance.now_ms)) as client:
        market = market_of(client)
        fake_binance.now_ms += 10 * SYMBOL_FILTERS_MAX_AGE_MS
        assert market.symbol_filters("ETHUSDT") == SAMPLE_FILTERS[1]
        assert market.symbol_filters("SOLUSDT") is None
    assert fake_binance.requests == []
