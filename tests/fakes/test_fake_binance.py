"""Tests for the fake Binance server, driven through python-binance's real Client (nothing patched)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import pairwise

import pytest
import requests
from binance.client import Client
from binance.exceptions import BinanceAPIException, BinanceRequestException

from tests.fakes.fake_binance import (
    BTCUSDT_LISTED_MS,
    DAY_MS,
    DEFAULT_NOW_MS,
    HOUR_MS,
    INTERVALS,
    MINUTE_MS,
    FakeBinance,
)

EIGHT_DECIMALS = re.compile(r"^\d+\.\d{8}$")
FROZEN_WALL_CLOCK = 1_699_999_990.0  # 10 s into a minute, so weight windows can't roll mid-test


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    with FakeBinance(wall_clock=lambda: FROZEN_WALL_CLOCK) as server:
        yield server


def make_client(
    fake: FakeBinance, *, api_key: str = "test-key", api_secret: str = "test-secret", timeout: float = 5.0
) -> Client:
    client = Client(api_key, api_secret, ping=False, requests_params={"timeout": timeout})
    client.API_URL = fake.url
    return client


@pytest.fixture
def client(fake: FakeBinance) -> Client:
    return make_client(fake)


def api_error(excinfo: pytest.ExceptionInfo[BinanceAPIException]) -> tuple[int, int, str]:
    return excinfo.value.status_code, excinfo.value.code, excinfo.value.message


def opens(rows: list[list[object]]) -> list[int]:
    return [int(str(row[0])) for row in rows]


# ---- lifecycle and general endpoints -------------------------------------------------------------


def test_ping_and_server_time_follow_the_fake_clock(fake: FakeBinance, client: Client) -> None:
    assert client.ping() == {}
    assert client.get_server_time() == {"serverTime": DEFAULT_NOW_MS}
    fake.now_ms += 1234
    assert client.get_server_time() == {"serverTime": DEFAULT_NOW_MS + 1234}


def test_stop_is_clean_and_idempotent() -> None:
    fake = FakeBinance()
    fake.start()
    url = fake.url
    fake.stop()
    fake.stop()
    assert not [thread for thread in threading.enumerate() if thread.name == "fake-binance"]
    with pytest.raises(RuntimeError):
        _ = fake.url
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/v3/ping", timeout=1)


def test_unknown_path_is_a_404_with_a_binance_style_body(fake: FakeBinance, client: Client) -> None:
    with pytest.raises(BinanceAPIException) as excinfo:
        client.get_order_book(symbol="BTCUSDT")  # /api/v3/depth is not faked
    assert excinfo.value.status_code == 404
    assert excinfo.value.code == -1000
    assert fake.requests_to("/api/v3/depth")[0].query == {"symbol": "BTCUSDT"}


# ---- klines ----------------------------------------------------------------------------------------


def test_kline_rows_have_binance_shape_and_ohlc_invariants(client: Client) -> None:
    rows = client.get_klines(symbol="BTCUSDT", interval="1h", limit=1000)

    assert len(rows) == 1000
    for row in rows:
        assert len(row) == 12
        open_ms, close_ms, trades = row[0], row[6], row[8]
        assert isinstance(open_ms, int) and isinstance(close_ms, int) and isinstance(trades, int)
        for value in row[1:6] + row[7:8] + row[9:11]:  # the 8 decimal-string fields
            assert EIGHT_DECIMALS.match(value), value
        assert open_ms % HOUR_MS == 0
        assert close_ms == open_ms + HOUR_MS - 1
        open_, high, low, close, volume = (float(value) for value in row[1:6])
        assert high >= max(open_, close) >= min(open_, close) >= low > 0
        assert volume > 0 and trades > 0
        assert row[11] == "0"
    # Consecutive candles chain: no gaps, and each close is the next candle's open.
    assert all(b - a == HOUR_MS for a, b in pairwise(opens(rows)))
    assert all(prev[4] == nxt[1] for prev, nxt in pairwise(rows))


def test_pages_chained_by_start_time_form_one_consistent_series(client: Client) -> None:
    start = DEFAULT_NOW_MS - 3000 * MINUTE_MS
    first = client.get_klines(symbol="ETHUSDT", interval="1m", startTime=start, limit=1000)
    next_start = first[-1][0] + MINUTE_MS
    second = client.get_klines(symbol="ETHUSDT", interval="1m", startTime=next_start, limit=1000)
    series = first + second

    assert opens(series) == [start + i * MINUTE_MS for i in range(2000)]  # no overlap, no gap
    quarters = [
        client.get_klines(symbol="ETHUSDT", interval="1m", startTime=start + i * 500 * MINUTE_MS, limit=500)
        for i in range(4)
    ]
    assert [row for page in quarters for row in page] == series  # any paging yields the same candles
    # python-binance's own paginator (two pages of 1000 here) agrees as well.
    assert client.get_historical_klines("ETHUSDT", "1m", start, series[-1][0]) == series


def test_end_time_and_limit_semantics(fake: FakeBinance, client: Client) -> None:
    mid_hour = DEFAULT_NOW_MS - 10 * HOUR_MS + 1234
    hour_open = mid_hour - 1234

    only_end = client.get_klines(symbol="BTCUSDT", interval="1h", endTime=mid_hour, limit=5)
    assert opens(only_end) == [hour_open - i * HOUR_MS for i in range(4, -1, -1)]

    only_start = client.get_klines(symbol="BTCUSDT", interval="1h", startTime=mid_hour, limit=3)
    assert opens(only_start) == [hour_open + i * HOUR_MS for i in (1, 2, 3)]  # openTime >= startTime

    window = client.get_klines(
        symbol="BTCUSDT", interval="1h", startTime=hour_open, endTime=hour_open + 5 * HOUR_MS, limit=1000
    )
    assert opens(window) == [hour_open + i * HOUR_MS for i in range(6)]  # both ends inclusive
    capped = client.get_klines(
        symbol="BTCUSDT", interval="1h", startTime=hour_open, endTime=hour_open + 5 * HOUR_MS, limit=2
    )
    assert capped == window[:2]

    default = client.get_klines(symbol="BTCUSDT", interval="1h")
    assert len(default) == 500 and default[-1][0] == DEFAULT_NOW_MS

    with pytest.raises(BinanceAPIException) as excinfo:
        client.get_klines(symbol="BTCUSDT", interval="1h", limit=1001)
    assert api_error(excinfo)[:2] == (400, -1130)
    with pytest.raises(BinanceAPIException) as excinfo:
        client.get_klines(symbol="BTCUSDT", interval="1h", startTime=hour_open, endTime=hour_open - 1)
    assert api_error(excinfo)[:2] == (400, -1023)


def test_history_starts_at_the_listing_aligned_up(fake: FakeBinance, client: Client) -> None:
    listed = DEFAULT_NOW_MS - 5 * HOUR_MS - 30 * MINUTE_MS
    fake.add_symbol("SOLUSDT", listed_ms=listed, base_price=100.0, step_size="0.001")

    rows = client.get_klines(symbol="SOLUSDT", interval="1h", startTime=0, limit=1000)
    assert opens(rows) == [listed + 30 * MINUTE_MS + i * HOUR_MS for i in range(6)]
    daily = client.get_klines(symbol="BTCUSDT", interval="1d", startTime=0, limit=1)
    assert daily[0][0] == BTCUSDT_LISTED_MS


def test_candles_stop_at_now_and_the_last_one_may_still_be_open(fake: FakeBinance, client: Client) -> None:
    fake.now_ms = DEFAULT_NOW_MS + 30 * MINUTE_MS
    before = client.get_klines(symbol="BTCUSDT", interval="1h", limit=3)
    assert before[-1][0] == DEFAULT_NOW_MS <= fake.now_ms < before[-1][6]  # still open
    assert client.get_klines(symbol="BTCUSDT", interval="1h", startTime=DEFAULT_NOW_MS + HOUR_MS) == []

    fake.now_ms += HOUR_MS
    after = client.get_klines(symbol="BTCUSDT", interval="1h", limit=4)
    assert after[:3] == before  # candles are a pure function of (symbol, interval, open time)
    assert after[-1][0] == DEFAULT_NOW_MS + HOUR_MS


def test_every_binance_interval_aligns_like_binance(client: Client) -> None:
    for name, interval in INTERVALS.items():
        rows = client.get_klines(symbol="BTCUSDT", interval=name, limit=3)
        assert len(rows) == 3, name
        for row, nxt in pairwise(rows):
            assert row[6] == nxt[0] - 1, name
        for open_ms in opens(rows):
            moment = datetime.fromtimestamp(open_ms / 1000, tz=UTC)
            assert (moment.hour, moment.minute, moment.second) == (0, 0, 0) or interval.length_ms < DAY_MS
            if name == "1w":
                assert moment.weekday() == 0  # Monday
            elif name == "1M":
                assert moment.day == 1
            else:
                assert open_ms % interval.length_ms == 0, name


def test_bad_kline_requests_use_binance_error_codes(client: Client) -> None:
    cases = [
        ({"symbol": "NOPEUSDT", "interval": "1h"}, (400, -1121, "Invalid symbol.")),
        ({"symbol": "BTCUSDT", "interval": "7m"}, (400, -1120, "Invalid interval.")),
        (
            {"symbol": "BTCUSDT"},
            (400, -1102, "Mandatory parameter 'interval' was not sent, was empty/null, or malformed."),
        ),
    ]
    for params, expected in cases:
        with pytest.raises(BinanceAPIException) as excinfo:
            client.get_klines(**params)
        assert api_error(excinfo) == expected


# ---- exchangeInfo and ticker -----------------------------------------------------------------------


def test_exchange_info_reports_realistic_filters_and_limits(fake: FakeBinance, client: Client) -> None:
    info = client.get_exchange_info()
    assert info["timezone"] == "UTC" and info["serverTime"] == DEFAULT_NOW_MS
    assert {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000} in info[
        "rateLimits"
    ]
    assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "ETHUSDT"]

    btc = client.get_symbol_info("BTCUSDT")
    assert btc is not None
    assert (btc["baseAsset"], btc["quoteAsset"], btc["status"]) == ("BTC", "USDT", "TRADING")
    filters = {f["filterType"]: f for f in btc["filters"]}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
    assert filters["LOT_SIZE"]["stepSize"] == "0.00001000"
    assert filters["LOT_SIZE"]["minQty"] == "0.00001000"
    assert filters["NOTIONAL"]["minNotional"] == "5.00000000"
    assert filters["NOTIONAL"]["applyMinToMarket"] is True

    # python-binance's get_exchange_info() takes no filter, so the `symbols` parameter is checked raw.
    response = requests.get(fake.url + "/v3/exchangeInfo", params={"symbols": '["ETHUSDT"]'}, timeout=5)
    only_eth = response.json()
    eth_filters = {f["filterType"]: f for f in only_eth["symbols"][0]["filters"]}
    assert [s["symbol"] for s in only_eth["symbols"]] == ["ETHUSDT"]
    assert eth_filters["LOT_SIZE"]["stepSize"] == "0.00010000"


def test_ticker_at_a_close_is_the_next_candles_open(fake: FakeBinance, client: Client) -> None:
    fake.now_ms = DEFAULT_NOW_MS + 3 * 3_600_000  # exactly the close of one 1h candle
    candle_now = client.get_klines(symbol="BTCUSDT", interval="1h", startTime=fake.now_ms, limit=1)[0]
    previous = client.get_klines(symbol="BTCUSDT", interval="1h", endTime=fake.now_ms - 1, limit=1)[0]

    ticker = client.get_symbol_ticker(symbol="BTCUSDT")
    assert candle_now[0] == fake.now_ms and previous[6] == fake.now_ms - 1
    assert ticker == {"symbol": "BTCUSDT", "price": candle_now[1]} and ticker["price"] == previous[4]
    assert EIGHT_DECIMALS.match(ticker["price"])
    assert [t["symbol"] for t in client.get_all_tickers()] == ["BTCUSDT", "ETHUSDT"]
    fake.now_ms += 17_000  # between boundaries the price moves on
    assert client.get_symbol_ticker(symbol="BTCUSDT")["price"] != ticker["price"]


# ---- weight ------------------------------------------------------------------------------------------


def test_used_weight_header_counts_each_request(fake: FakeBinance, client: Client) -> None:
    for expected in (2, 4, 6):
        client.get_klines(symbol="BTCUSDT", interval="1m", limit=10)
        assert client.response.headers["X-MBX-USED-WEIGHT-1M"] == str(expected)
        assert client.response.headers["X-MBX-USED-WEIGHT"] == str(expected)
    client.get_exchange_info()
    assert client.response.headers["X-MBX-USED-WEIGHT-1M"] == "26"

    fake.reset()
    client.ping()
    assert client.response.headers["X-MBX-USED-WEIGHT-1M"] == "1"


def test_weight_limit_answers_429_until_the_next_minute() -> None:
    wall = [FROZEN_WALL_CLOCK]
    with FakeBinance(weight_limit=5, wall_clock=lambda: wall[0]) as fake:
        client = make_client(fake)
        client.get_klines(symbol="BTCUSDT", interval="1m", limit=1)
        client.get_klines(symbol="BTCUSDT", interval="1m", limit=1)
        with pytest.raises(BinanceAPIException) as excinfo:
            client.get_klines(symbol="BTCUSDT", interval="1m", limit=1)
        assert api_error(excinfo)[:2] == (429, -1003)
        assert excinfo.value.message.startswith("Too much request weight used;")
        assert excinfo.value.response.headers["Retry-After"] == "50"
        assert excinfo.value.response.headers["X-MBX-USED-WEIGHT-1M"] == "4"

        wall[0] += 60
        client.get_klines(symbol="BTCUSDT", interval="1m", limit=1)
        assert client.response.headers["X-MBX-USED-WEIGHT-1M"] == "2"


# ---- faults ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "message_start"), [("429", "Too much"), ("418", "Way too much")])
def test_rate_limit_faults_carry_retry_after(
    fake: FakeBinance, client: Client, kind: str, message_start: str
) -> None:
    fake.add_fault("/api/v3/klines", kind, retry_after=7)
    with pytest.raises(BinanceAPIException) as excinfo:
        client.get_klines(symbol="BTCUSDT", interval="1m")
    assert api_error(excinfo)[:2] == (int(kind), -1003)
    assert excinfo.value.message.startswith(message_start)
    assert excinfo.value.response.headers["Retry-After"] == "7"
    assert "X-MBX-USED-WEIGHT-1M" in excinfo.value.response.headers


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_error_faults(fake: FakeBinance, client: Client, status: int) -> None:
    fake.add_fault("/api/v3/klines", str(status))
    with pytest.raises(BinanceAPIException) as excinfo:
        client.get_klines(symbol="BTCUSDT", interval="1m")
    assert api_error(excinfo) == (status, -1000, "An unknown error occurred while processing the request.")


def test_faults_are_consumed_in_order_per_path_and_still_recorded(fake: FakeBinance, client: Client) -> None:
    fake.add_fault("/api/v3/klines", "500", times=2)
    fake.add_fault("/api/v3/klines", "429")

    assert client.ping() == {}  # other paths are unaffected
    statuses = []
    for _ in range(3):
        with pytest.raises(BinanceAPIException) as excinfo:
            client.get_klines(symbol="BTCUSDT", interval="1m")
        statuses.append(excinfo.value.status_code)
    assert statuses == [500, 500, 429]
    assert len(client.get_klines(symbol="BTCUSDT", interval="1m", limit=3)) == 3  # queue drained
    assert [r.query.get("limit") for r in fake.requests_to("/api/v3/klines")] == [None, None, None, "3"]


def test_error_fault_defaults_to_invalid_symbol_and_can_be_overridden(
    fake: FakeBinance, client: Client
) -> None:
    fake.add_fault("/api/v3/klines", "error")
    fake.add_fault("/api/v3/klines", "error", code=-1100, msg="Illegal characters in 'symbol'")
    with pytest.raises(BinanceAPIException) as first:
        client.get_klines(symbol="BTCUSDT", interval="1m")
    with pytest.raises(BinanceAPIException) as second:
        client.get_klines(symbol="BTCUSDT", interval="1m")
    assert api_error(first) == (400, -1121, "Invalid symbol.")
    assert api_error(second) == (400, -1100, "Illegal characters in 'symbol'")


def test_malformed_fault_is_a_request_exception(fake: FakeBinance, client: Client) -> None:
    fake.add_fault("/api/v3/klines", "malformed")
    with pytest.raises(BinanceRequestException, match="Invalid Response"):
        client.get_klines(symbol="BTCUSDT", interval="1m")


def test_slow_fault_trips_the_client_timeout(fake: FakeBinance) -> None:
    client = make_client(fake, timeout=0.2)
    fake.add_fault("/api/v3/klines", "slow", delay=1.0)
    with pytest.raises(requests.exceptions.Timeout):
        client.get_klines(symbol="BTCUSDT", interval="1m")
    assert len(client.get_klines(symbol="BTCUSDT", interval="1m", limit=2)) == 2


# ---- signed endpoints --------------------------------------------------------------------------------


def test_signed_market_order_is_filled_and_recorded(fake: FakeBinance, client: Client) -> None:
    price = client.get_symbol_ticker(symbol="BTCUSDT")["price"]
    order = client.create_order(
        symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.001", newClientOrderId="strategy-42"
    )

    assert order["clientOrderId"] == "strategy-42"
    assert (order["status"], order["type"], order["side"]) == ("FILLED", "MARKET", "BUY")
    assert order["orderListId"] == -1
    assert order["executedQty"] == order["origQty"] == "0.00100000"
    assert order["transactTime"] == DEFAULT_NOW_MS
    assert order["fills"][0]["price"] == price and order["fills"][0]["commissionAsset"] == "BTC"
    assert float(order["cummulativeQuoteQty"]) == pytest.approx(float(price) * 0.001)
    assert fake.orders == [order]

    sent = fake.requests_to("/api/v3/order")[0]
    assert sent.method == "POST" and sent.headers["X-MBX-APIKEY"] == "test-key"
    assert {"timestamp", "signature"} <= sent.body.keys() and sent.query == {}


def test_quote_quantity_market_order_and_resting_limit_order(fake: FakeBinance, client: Client) -> None:
    by_quote = client.create_order(symbol="ETHUSDT", side="BUY", type="MARKET", quoteOrderQty="100")
    assert by_quote["status"] == "FILLED" and by_quote["origQuoteOrderQty"] == "100.00000000"
    assert float(by_quote["cummulativeQuoteQty"]) <= 100

    resting = client.create_order(
        symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.01", price="1000.00"
    )
    assert (resting["status"], resting["executedQty"], resting["fills"]) == ("NEW", "0.00000000", [])
    assert [o["orderId"] for o in fake.orders] == [by_quote["orderId"], resting["orderId"]]


def test_test_order_validates_but_records_nothing(fake: FakeBinance, client: Client) -> None:
    assert client.create_test_order(symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.001") == {}
    with pytest.raises(BinanceAPIException) as excinfo:
        client.create_test_order(symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.000015")
    assert api_error(excinfo) == (400, -1013, "Filter failure: LOT_SIZE")
    assert fake.orders == []


def test_wrong_secret_or_key_is_rejected(fake: FakeBinance) -> None:
    with pytest.raises(BinanceAPIException) as bad_signature:
        make_client(fake, api_secret="not-the-secret").create_order(
            symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.001"
        )
    assert api_error(bad_signature) == (400, -1022, "Signature for this request is not valid.")

    with pytest.raises(BinanceAPIException) as bad_key:
        make_client(fake, api_key="someone-else").get_account()
    assert api_error(bad_key) == (401, -2015, "Invalid API-key, IP, or permissions for action.")
    assert fake.orders == []


def test_duplicate_client_order_id_is_rejected(fake: FakeBinance, client: Client) -> None:
    order = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"}
    client.create_order(**order, newClientOrderId="dup-1")
    with pytest.raises(BinanceAPIException) as excinfo:
        client.create_order(**order, newClientOrderId="dup-1")
    assert api_error(excinfo) == (400, -2010, "Duplicate order sent.")
    assert [o["clientOrderId"] for o in fake.orders] == ["dup-1"]


@pytest.mark.parametrize(
    ("order", "failed_filter"),
    [
        ({"type": "MARKET", "quantity": "0.000015"}, "LOT_SIZE"),  # not a multiple of the step
        ({"type": "MARKET", "quantity": "10000"}, "LOT_SIZE"),  # above maxQty
        ({"type": "MARKET", "quantity": "0.0001"}, "NOTIONAL"),  # ~2 USDT < 5 USDT minimum
        ({"type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001", "price": "30000.005"}, "PRICE_FILTER"),
    ],
)
def test_filter_failures_use_binance_wording(
    fake: FakeBinance, client: Client, order: dict[str, str], failed_filter: str
) -> None:
    with pytest.raises(BinanceAPIException) as excinfo:
        client.create_order(symbol="BTCUSDT", side="BUY", **order)
    assert api_error(excinfo) == (400, -1013, f"Filter failure: {failed_filter}")
    assert fake.orders == []


def test_reject_fault_forces_an_order_rejection(fake: FakeBinance, client: Client) -> None:
    fake.add_fault("/api/v3/order", "reject")
    with pytest.raises(BinanceAPIException) as excinfo:
        client.create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.001")
    assert api_error(excinfo) == (400, -2010, "Account has insufficient balance for requested action.")
    assert fake.orders == []
    assert len(fake.requests_to("/api/v3/order")) == 1


def test_account_and_opt_in_timestamp_check(client: Client) -> None:
    account = client.get_account()
    assert account["accountType"] == "SPOT" and account["canTrade"] is True
    assert {"asset": "USDT", "free": "100000.00000000", "locked": "0.00000000"} in account["balances"]

    # python-binance stamps requests with the real wall clock, far from the fake's 2024 now_ms.
    with FakeBinance(check_timestamp=True) as strict, pytest.raises(BinanceAPIException) as excinfo:
        make_client(strict).get_account()
    assert api_error(excinfo)[:2] == (400, -1021)
