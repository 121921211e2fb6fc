"""Fake Binance spot REST server for tests: real paths, real JSON shapes, deterministic candles, faults.

Tests drive the real ``binance.client.Client`` (python-binance) against this server instead of
monkeypatching the library, so URL building, HMAC signing, the HTTP layer and python-binance's
error handling are all exercised for real while nothing ever leaves 127.0.0.1::

    with FakeBinance() as fake:
        client = Client("test-key", "test-secret", ping=False)
        client.API_URL = fake.url
        client.get_klines(symbol="BTCUSDT", interval="1h")

What it owns:

* candles: the kline with open time ``t`` for ``(symbol, interval)`` is a pure function of those
  three values, so every page of every range agrees with every other page and no history is stored;
* the market-data endpoints (ping, time, exchangeInfo, ticker/price, klines) and the signed ones
  (order, order/test, account) with Binance's validation, error codes and messages;
* request weight accounting (``X-MBX-USED-WEIGHT-1M``) and a queue of injected faults per path
  (429, 418, 5xx, slow, malformed JSON, a captive portal's page or JSON that is not klines, arbitrary
  error bodies);
* a thread-safe log of every request and of every accepted order, for assertions.

Only the standard library is used, so the fake has no dependency that could drift from the project's.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import math
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlsplit

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS

DEFAULT_NOW_MS = 1_709_251_200_000  # 2024-03-01T00:00:00Z
BTCUSDT_LISTED_MS = 1_502_928_000_000  # 2017-08-17T00:00:00Z, BTCUSDT's first day on Binance
ETHUSDT_LISTED_MS = 1_502_928_000_000  # ETHUSDT opened the same day

KLINES_DEFAULT_LIMIT = 500
KLINES_MAX_LIMIT = 1000
DEFAULT_RECV_WINDOW = 5000
MAX_RECV_WINDOW = 60_000
COMMISSION_RATE = Decimal("0.001")  # Binance's default 0.1% taker fee
MAX_PRICE = Decimal("1000000")
MAX_QTY = Decimal("9000")
MAX_NOTIONAL = Decimal("9000000")

# Quote assets tried (longest first) when splitting a symbol like "ETHUSDT" into base and quote.
_KNOWN_QUOTES = ("FDUSD", "USDT", "USDC", "TUSD", "BUSD", "BTC", "ETH", "BNB", "EUR", "TRY", "DAI")

# Binance's own wording, so code under test can match on messages exactly as it would in production.
MSG_INVALID_SYMBOL = "Invalid symbol."
MSG_INVALID_INTERVAL = "Invalid interval."
MSG_BAD_API_KEY = "Invalid API-key, IP, or permissions for action."
MSG_BAD_SIGNATURE = "Signature for this request is not valid."
MSG_DUPLICATE_ORDER = "Duplicate order sent."
MSG_INSUFFICIENT_BALANCE = "Account has insufficient balance for requested action."
MSG_UNKNOWN_ERROR = "An unknown error occurred while processing the request."
_INT_RANGE = "^[0-9]{1,20}$"
_DECIMAL_RANGE = r"^([0-9]{1,20})(\.[0-9]{1,20})?$"
_CLIENT_ORDER_ID_RANGE = "^[a-zA-Z0-9-_]{1,36}$"
_SYMBOLS_RANGE = r'^\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\]$'

FAULT_KINDS = frozenset(
    {
        "429",
        "418",
        "500",
        "502",
        "503",
        "slow",
        "malformed",
        "error",
        "reject",
        "empty",
        "portal",
        "not_klines",
        "bad_rows",
    }
)


# --------------------------------------------------------------------------------------------------
# Intervals: map every open time onto an integer candle index and back.
# --------------------------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class _Interval:
    """One kline interval; ``length_ms == 0`` marks calendar months, which have no fixed length."""

    name: str
    length_ms: int
    offset_ms: int = 0  # open times are offset_ms + k * length_ms

    def floor_index(self, t_ms: int) -> int:
        """Index of the candle containing ``t_ms``."""
        if self.length_ms:
            return (t_ms - self.offset_ms) // self.length_ms
        moment = _EPOCH + timedelta(milliseconds=t_ms)
        return (moment.year - 1970) * 12 + moment.month - 1

    def ceil_index(self, t_ms: int) -> int:
        """Index of the first candle opening at or after ``t_ms``."""
        index = self.floor_index(t_ms)
        return index if self.open_ms(index) == t_ms else index + 1

    def open_ms(self, index: int) -> int:
        if self.length_ms:
            return self.offset_ms + index * self.length_ms
        year, month0 = divmod(index, 12)
        start = datetime(1970 + year, month0 + 1, 1, tzinfo=UTC)
        return (start - _EPOCH) // timedelta(milliseconds=1)


INTERVALS: dict[str, _Interval] = {
    interval.name: interval
    for interval in (
        _Interval("1m", MINUTE_MS),
        _Interval("3m", 3 * MINUTE_MS),
        _Interval("5m", 5 * MINUTE_MS),
        _Interval("15m", 15 * MINUTE_MS),
        _Interval("30m", 30 * MINUTE_MS),
        _Interval("1h", HOUR_MS),
        _Interval("2h", 2 * HOUR_MS),
        _Interval("4h", 4 * HOUR_MS),
        _Interval("6h", 6 * HOUR_MS),
        _Interval("8h", 8 * HOUR_MS),
        _Interval("12h", 12 * HOUR_MS),
        _Interval("1d", DAY_MS),
        _Interval("3d", 3 * DAY_MS),  # Binance aligns 3d candles to multiples of 3 days since the epoch
        _Interval("1w", WEEK_MS, offset_ms=4 * DAY_MS),  # the epoch was a Thursday; weeks open Mondays
        _Interval("1M", 0),
    )
}


# --------------------------------------------------------------------------------------------------
# Symbols and the deterministic price model.
# --------------------------------------------------------------------------------------------------

# (amplitude in log-price, period in ms): slow cycles give trends, fast ones give intraday texture.
_WAVES = (
    (0.30, 1461 * DAY_MS),
    (0.12, 97 * DAY_MS),
    (0.04, 9.3 * DAY_MS),
    (0.01, 0.77 * DAY_MS),
    (0.003, 97 * MINUTE_MS),
)
_TICK_NOISE = 0.002  # scale of the per-timestamp jitter on top of the waves (~0.1% std)
_WICK_PER_SQRT_MINUTE = 0.0008  # wick size grows with sqrt(candle length), like a random walk's range
_QUOTE_VOLUME_PER_MINUTE = 500_000.0


def _uniforms(*key: object) -> tuple[float, ...]:
    """Eight uniform floats in [0, 1) that depend only on ``key``: the fake's only source of randomness."""
    digest = hashlib.blake2b("|".join(map(str, key)).encode(), digest_size=64).digest()
    return tuple(int.from_bytes(digest[i : i + 8], "big") / 2**64 for i in range(0, 64, 8))


def _fmt(value: Decimal | float) -> str:
    """Binance sends every decimal as a string with 8 decimals."""
    return f"{value:.8f}"


@dataclass(frozen=True)
class _Symbol:
    symbol: str
    base_asset: str
    quote_asset: str
    listed_ms: int
    base_price: float
    tick_size: Decimal
    step_size: Decimal
    min_notional: Decimal
    status: str
    phases: tuple[float, ...]  # one per entry of _WAVES, derived from the symbol name

    def price_at(self, t_ms: int) -> float:
        """The symbol's price at an instant: smooth waves around base_price plus hashed jitter.

        Candle opens and closes are sampled here at candle boundaries, so a close equals the next
        candle's open and coarse intervals agree with fine ones at the instants they share.
        """
        log_price = math.log(self.base_price)
        for (amplitude, period), phase in zip(_WAVES, self.phases, strict=True):
            log_price += amplitude * math.sin(2 * math.pi * t_ms / period + phase)
        jitter = _uniforms(self.symbol, t_ms)
        log_price += _TICK_NOISE * (jitter[0] + jitter[1] + jitter[2] - 1.5)
        return math.exp(log_price)

    def to_price(self, raw: float) -> Decimal:
        """Snap to the tick grid (never below one tick); monotonic, so OHLC ordering survives it."""
        ticks = max(1, round(raw / float(self.tick_size)))
        return Decimal(ticks) * self.tick_size

    def kline_rows(self, interval: _Interval, first: int, last: int) -> list[list[Any]]:
        """Binance kline rows for candle indexes first..last inclusive (empty if first > last)."""
        if first > last:
            return []
        opens = [interval.open_ms(i) for i in range(first, last + 2)]
        prices = [self.to_price(self.price_at(t)) for t in opens]
        rows: list[list[Any]] = []
        for k in range(last - first + 1):
            open_ms, next_open_ms = opens[k], opens[k + 1]
            open_, close = prices[k], prices[k + 1]
            u_high, u_low, u_volume, u_taker = _uniforms(self.symbol, interval.name, open_ms)[:4]
            minutes = (next_open_ms - open_ms) / MINUTE_MS
            wick = _WICK_PER_SQRT_MINUTE * math.sqrt(minutes)
            high = self.to_price(float(max(open_, close)) * (1 + wick * u_high))
            low = self.to_price(float(min(open_, close)) / (1 + wick * u_low))
            typical = float(open_ + high + low + close) / 4
            quote_volume = _QUOTE_VOLUME_PER_MINUTE * minutes * (0.4 + 1.2 * u_volume)
            volume = quote_volume / typical
            taker_share = 0.35 + 0.3 * u_taker
            rows.append(
                [
                    open_ms,
                    _fmt(open_),
                    _fmt(high),
                    _fmt(low),
                    _fmt(close),
                    _fmt(volume),
                    next_open_ms - 1,
                    _fmt(quote_volume),
                    max(1, int(quote_volume / 1500)),
                    _fmt(volume * taker_share),
                    _fmt(quote_volume * taker_share),
                    "0",
                ]
            )
        return rows

    def filters(self) -> list[dict[str, Any]]:
        """exchangeInfo filters in Binance's order and formatting."""
        return [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": _fmt(self.tick_size),
                "maxPrice": _fmt(MAX_PRICE),
                "tickSize": _fmt(self.tick_size),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": _fmt(self.step_size),
                "maxQty": _fmt(MAX_QTY),
                "stepSize": _fmt(self.step_size),
            },
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": _fmt(0),
                "maxQty": _fmt(MAX_QTY),
                "stepSize": _fmt(0),
            },
            {
                "filterType": "TRAILING_DELTA",
                "minTrailingAboveDelta": 10,
                "maxTrailingAboveDelta": 2000,
                "minTrailingBelowDelta": 10,
                "maxTrailingBelowDelta": 2000,
            },
            {
                "filterType": "PERCENT_PRICE_BY_SIDE",
                "bidMultiplierUp": "5",
                "bidMultiplierDown": "0.2",
                "askMultiplierUp": "5",
                "askMultiplierDown": "0.2",
                "avgPriceMins": 5,
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": _fmt(self.min_notional),
                "applyMinToMarket": True,
                "maxNotional": _fmt(MAX_NOTIONAL),
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ]

    def info(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "status": self.status,
            "baseAsset": self.base_asset,
            "baseAssetPrecision": 8,
            "quoteAsset": self.quote_asset,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": [
                "LIMIT",
                "LIMIT_MAKER",
                "MARKET",
                "STOP_LOSS",
                "STOP_LOSS_LIMIT",
                "TAKE_PROFIT",
                "TAKE_PROFIT_LIMIT",
            ],
            "icebergAllowed": True,
            "ocoAllowed": True,
            "otoAllowed": True,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": True,
            "cancelReplaceAllowed": True,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": self.filters(),
            "permissions": ["SPOT"],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }


def _split_symbol(symbol: str) -> tuple[str, str]:
    for quote in _KNOWN_QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    raise ValueError(f"cannot split {symbol!r} into base/quote assets; pass base_asset and quote_asset")


# --------------------------------------------------------------------------------------------------
# Requests, responses, errors and faults.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it (recorded even when a fault or an error answered it)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, str]
    time: float  # wall-clock seconds (time.time()) when the request arrived

    @property
    def params(self) -> dict[str, str]:
        """Query and body parameters together, the way Binance reads them."""
        return {**self.query, **self.body}


@dataclass
class _Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def _json_response(status: int, payload: object, headers: dict[str, str] | None = None) -> _Response:
    return _Response(
        status,
        json.dumps(payload, separators=(",", ":")).encode(),
        {"Content-Type": "application/json;charset=UTF-8", **(headers or {})},
    )


class _ApiError(Exception):
    """An error answer in Binance's ``{"code", "msg"}`` shape; endpoint code raises, dispatch renders."""

    def __init__(self, status: int, code: int, msg: str, retry_after: int | None = None) -> None:
        super().__init__(msg)
        self.status = status
        self.code = code
        self.msg = msg
        self.retry_after = retry_after

    def response(self) -> _Response:
        headers = {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}
        return _json_response(self.status, {"code": self.code, "msg": self.msg}, headers)


def _missing(name: str) -> _ApiError:
    return _ApiError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def _illegal(name: str, legal_range: str) -> _ApiError:
    return _ApiError(
        400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '{legal_range}'."
    )


def _filter_failure(name: str) -> _ApiError:
    return _ApiError(400, -1013, f"Filter failure: {name}")


def _not_required(name: str) -> _ApiError:
    return _ApiError(400, -1106, f"Parameter '{name}' sent when not required.")


@dataclass(frozen=True)
class _Fault:
    kind: str
    retry_after: int | None
    delay: float
    code: int | None
    msg: str | None


@dataclass(frozen=True)
class _Route:
    handler: Callable[[dict[str, str]], object]
    weight: Callable[[dict[str, str]], int]
    signed: bool = False


def _weight(value: int) -> Callable[[dict[str, str]], int]:
    return lambda _params: value


# --------------------------------------------------------------------------------------------------
# Parameter parsing with Binance's error codes.
# --------------------------------------------------------------------------------------------------


def _require(params: dict[str, str], name: str) -> str:
    value = params.get(name)
    if not value:
        raise _missing(name)
    return value


def _int_param(params: dict[str, str], name: str) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not re.fullmatch(_INT_RANGE, value):
        raise _illegal(name, _INT_RANGE)
    return int(value)


def _decimal_param(params: dict[str, str], name: str) -> Decimal | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    # python-binance sends str(float), so 0.00001 arrives as "1e-05"; Binance rejects that, and so do we.
    if not re.fullmatch(_DECIMAL_RANGE, value):
        raise _illegal(name, _DECIMAL_RANGE)
    _, _, fraction = value.partition(".")
    if len(fraction.rstrip("0")) > 8:  # assets carry 8 decimals on Binance
        raise _ApiError(400, -1111, f"Parameter '{name}' has too much precision.")
    return Decimal(value)


def _without_signature(raw: str) -> str:
    return "&".join(part for part in raw.split("&") if part and not part.startswith("signature="))


# --------------------------------------------------------------------------------------------------
# The fake exchange.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _OrderPlan:
    """A validated order and how it executes against the fake's instant, infinitely deep book."""

    symbol: _Symbol
    side: str
    type: str
    time_in_force: str
    quantity: Decimal
    limit_price: Decimal | None
    quote_order_qty: Decimal | None
    fill_price: Decimal | None  # None: the order rests (GTC) or expires (IOC/FOK) unfilled


class FakeBinance:
    """A local Binance spot REST server; see the module docstring."""

    def __init__(
        self,
        *,
        now_ms: int = DEFAULT_NOW_MS,
        api_key: str = "test-key",
        api_secret: str = "test-secret",
        weight_limit: int = 6000,
        check_timestamp: bool = False,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.now_ms = now_ms  # the fake's "current time": candles after it don't exist yet
        self.api_key = api_key
        self.api_secret = api_secret
        self.weight_limit = weight_limit
        # python-binance stamps signed requests with the local wall clock, which is nowhere near a
        # test's now_ms, so the recvWindow check is opt-in.
        self.check_timestamp = check_timestamp
        # The weight window follows real minutes like Binance's; tests may freeze it for exact counts.
        self._wall_clock = wall_clock
        # Static balances for GET /api/v3/account; orders do not move them (a fake, not a ledger).
        self.balances: dict[str, str] = {"BTC": "1.00000000", "ETH": "10.00000000", "USDT": "100000.00000000"}

        self._lock = threading.Lock()
        self._symbols: dict[str, _Symbol] = {}
        self._faults: dict[str, deque[_Fault]] = {}
        self._requests: list[RecordedRequest] = []
        self._orders: list[dict[str, Any]] = []
        self._corrupt: dict[tuple[str, int], dict[int, str]] = {}  # (symbol, open ms) -> column -> raw value
        self._used_weight = 0
        self._weight_minute: int | None = None
        self._next_order_id = 1
        self._next_trade_id = 1
        self._routes = self._build_routes()

        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()  # wakes "slow" faults so stop() never waits on them

        self.add_symbol("BTCUSDT", listed_ms=BTCUSDT_LISTED_MS, base_price=30_000.0, step_size="0.00001")
        self.add_symbol("ETHUSDT", listed_ms=ETHUSDT_LISTED_MS, base_price=2_000.0, step_size="0.0001")

    # ---- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Bind 127.0.0.1 on a free port and serve from a daemon thread."""
        if self._server is not None:
            raise RuntimeError("FakeBinance is already running")
        self._stopping.clear()
        self._server = _Server(self)
        # A short poll interval keeps stop() (server.shutdown) fast for per-test fixtures.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-binance",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server, self._thread = None, None

    def __enter__(self) -> FakeBinance:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The value for ``client.API_URL``: python-binance appends ``/v3/<endpoint>``."""
        if self._server is None:
            raise RuntimeError("FakeBinance is not running; call start() first")
        return f"http://127.0.0.1:{self._server.server_address[1]}/api"

    # ---- configuration -------------------------------------------------------------------------

    def add_symbol(
        self,
        symbol: str,
        *,
        listed_ms: int,
        base_price: float,
        tick_size: str = "0.01",
        step_size: str = "0.00001",
        min_notional: str = "5.00000000",
        status: str = "TRADING",
        base_asset: str | None = None,
        quote_asset: str | None = None,
    ) -> None:
        """Register (or replace) a symbol; its candles exist from listed_ms onwards."""
        if base_price <= 0:
            raise ValueError("base_price must be positive")
        if base_asset is None or quote_asset is None:
            base_asset, quote_asset = _split_symbol(symbol)
        # Per-symbol wave phases, so BTC and ETH don't move in lockstep.
        phases = tuple(2 * math.pi * u for u in _uniforms(symbol, "phases")[: len(_WAVES)])
        spec = _Symbol(
            symbol=symbol,
            base_asset=base_asset,
            quote_asset=quote_asset,
            listed_ms=listed_ms,
            base_price=base_price,
            tick_size=Decimal(tick_size),
            step_size=Decimal(step_size),
            min_notional=Decimal(min_notional),
            status=status,
            phases=phases,
        )
        with self._lock:
            self._symbols[symbol] = spec

    def relist(self, symbol: str, listed_ms: int) -> None:
        """Move a symbol's first candle; its prices at every instant stay what they were."""
        with self._lock:
            self._symbols[symbol] = replace(self._symbols[symbol], listed_ms=listed_ms)

    def corrupt(self, symbol: str, open_ms: int, **fields: str) -> None:
        """Serve the candle opening at `open_ms` with these fields (open, high, low, close, volume)
        replaced by raw strings, such as "NaN" or "-1", as a misbehaving exchange might."""
        columns = {"open": 1, "high": 2, "low": 3, "close": 4, "volume": 5}
        with self._lock:
            self._corrupt[(symbol, open_ms)] = {columns[name]: value for name, value in fields.items()}

    def add_fault(
        self,
        path: str,
        kind: str,
        *,
        times: int = 1,
        retry_after: int | None = None,
        delay: float = 0.0,
        code: int | None = None,
        msg: str | None = None,
    ) -> None:
        """Make the next ``times`` requests to ``path`` (e.g. "/api/v3/klines") misbehave as ``kind``.

        Faults for one path are consumed first in, first out. ``code``/``msg`` override the body of
        any error kind; "slow" waits ``delay`` seconds and then answers normally.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if times < 1:
            raise ValueError("times must be >= 1")
        fault = _Fault(kind=kind, retry_after=retry_after, delay=delay, code=code, msg=msg)
        with self._lock:
            self._faults.setdefault(path, deque()).extend([fault] * times)

    def reset(self) -> None:
        """Forget faults, corrupted candles, the request log, orders and used weight; symbols and
        now_ms stay."""
        with self._lock:
            self._faults.clear()
            self._corrupt.clear()
            self._requests.clear()
            self._orders.clear()
            self._used_weight = 0

    # ---- inspection (copies, so callers can iterate while the server keeps appending) -----------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [request for request in self.requests if request.path == path]

    @property
    def orders(self) -> list[dict[str, Any]]:
        """Orders accepted by POST /api/v3/order, as Binance's FULL response."""
        with self._lock:
            return copy.deepcopy(self._orders)

    # ---- dispatch --------------------------------------------------------------------------------

    def _build_routes(self) -> dict[tuple[str, str], _Route]:
        # Weights are Binance's published request weights for these endpoints.
        return {
            ("GET", "/api/v3/ping"): _Route(self._ping, _weight(1)),
            ("GET", "/api/v3/time"): _Route(self._time, _weight(1)),
            ("GET", "/api/v3/exchangeInfo"): _Route(self._exchange_info, _weight(20)),
            ("GET", "/api/v3/ticker/price"): _Route(
                self._ticker_price, lambda params: 2 if params.get("symbol") else 4
            ),
            ("GET", "/api/v3/klines"): _Route(self._klines, _weight(2)),
            ("POST", "/api/v3/order/test"): _Route(self._order_test, _weight(1), signed=True),
            ("POST", "/api/v3/order"): _Route(self._order, _weight(1), signed=True),
            ("GET", "/api/v3/account"): _Route(self._account, _weight(20), signed=True),
            ("GET", "/api/v3/order"): _Route(self._query_order, _weight(4), signed=True),
            ("GET", "/api/v3/myTrades"): _Route(self._my_trades, _weight(20), signed=True),
        }

    def _handle(self, method: str, target: str, raw_body: str, headers: dict[str, str]) -> _Response:
        """Answer one HTTP request: record it, apply a queued fault or the weight limit, then route."""
        split = urlsplit(target)
        path, raw_query = split.path, split.query
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        body = dict(parse_qsl(raw_body, keep_blank_values=True))
        params = {**query, **body}
        with self._lock:
            self._requests.append(RecordedRequest(method, path, query, headers, body, time.time()))
            queued = self._faults.get(path)
            fault = queued.popleft() if queued else None

        route = self._routes.get((method, path))
        weight = route.weight(params) if route else 1
        # An injected fault is an explicit instruction for this request, so it wins over the limit.
        used, retry_after = self._charge_weight(weight, enforce=fault is None)
        if retry_after is not None:
            response = _ApiError(429, -1003, self._too_much_weight_msg(), retry_after).response()
        else:
            response = self._answer(method, path, route, fault, headers, raw_query, raw_body, params)
        # Every answer carries the used weight, errors and faults included, as Binance's do.
        response.headers["X-MBX-USED-WEIGHT"] = str(used)
        response.headers["X-MBX-USED-WEIGHT-1M"] = str(used)
        return response

    def _answer(
        self,
        method: str,
        path: str,
        route: _Route | None,
        fault: _Fault | None,
        headers: dict[str, str],
        raw_query: str,
        raw_body: str,
        params: dict[str, str],
    ) -> _Response:
        try:
            if fault is not None:
                faulted = self._fault_response(fault)
                if faulted is not None:
                    return faulted
            if route is None:
                raise _ApiError(404, -1000, f"Unknown endpoint: {method} {path}")
            if route.signed:
                self._authenticate(headers, raw_query, raw_body, params)
            return _json_response(200, route.handler(params))
        except _ApiError as error:
            return error.response()
        except Exception as error:  # a bug in the fake: answer like Binance's -1000 but say what broke
            return _json_response(500, {"code": -1000, "msg": f"{MSG_UNKNOWN_ERROR} ({error!r})"})

    def _charge_weight(self, weight: int, *, enforce: bool) -> tuple[int, int | None]:
        """Add ``weight`` to this wall-clock minute's total; returns (used, Retry-After if refused)."""
        now = self._wall_clock()
        minute = int(now // 60)
        with self._lock:
            if minute != self._weight_minute:
                self._weight_minute, self._used_weight = minute, 0
            if enforce and self._used_weight + weight > self.weight_limit:
                return self._used_weight, max(1, math.ceil(60 - now % 60))
            self._used_weight += weight
            return self._used_weight, None

    def _too_much_weight_msg(self) -> str:
        return (
            f"Too much request weight used; current limit is {self.weight_limit} request weight per "
            "1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."
        )

    def _fault_response(self, fault: _Fault) -> _Response | None:
        """The canned answer for a fault, or None when the request should then proceed normally."""
        retry_after = fault.retry_after if fault.retry_after is not None else 1
        if fault.kind == "slow":
            self._stopping.wait(fault.delay)  # returns early on stop() so shutdown never hangs
            return None
        if fault.kind == "malformed":
            return _Response(200, b'{"oops": [1, 2', {"Content-Type": "application/json;charset=UTF-8"})
        if fault.kind == "empty":  # a 200 with nothing in it, as a glitching endpoint answers
            return _json_response(200, [])
        # What a captive portal or a meddling proxy answers in Binance's place: a login page, or JSON
        # that is not the endpoint's (an object, or rows of the wrong shape).
        if fault.kind == "portal":
            page = b"<html><body><form>Log in to the hotel Wi-Fi</form></body></html>"
            return _Response(200, page, {"Content-Type": "text/html"})
        if fault.kind == "not_klines":
            return _json_response(200, {"status": "login_required", "portal": True})
        if fault.kind == "bad_rows":
            return _json_response(200, [[1, "2"], ["x"]])
        if fault.kind == "429":
            status, code, msg = 429, -1003, self._too_much_weight_msg()
        elif fault.kind == "418":
            banned_until = self.now_ms + retry_after * 1000
            status, code = 418, -1003
            msg = (
                f"Way too much request weight used; IP banned until {banned_until}. "
                "Please use WebSocket Streams for live updates to avoid bans."
            )
        elif fault.kind in ("500", "502", "503"):
            status, code, msg = int(fault.kind), -1000, MSG_UNKNOWN_ERROR
        elif fault.kind == "error":
            status, code, msg = 400, -1121, MSG_INVALID_SYMBOL
        else:  # "reject": the order-endpoint flavour of "error"
            status, code, msg = 400, -2010, MSG_INSUFFICIENT_BALANCE
        return _ApiError(
            status,
            fault.code if fault.code is not None else code,
            fault.msg if fault.msg is not None else msg,
            retry_after if status in (418, 429) else None,
        ).response()

    def _symbol(self, name: str) -> _Symbol:
        with self._lock:
            spec = self._symbols.get(name)
        if spec is None:
            raise _ApiError(400, -1121, MSG_INVALID_SYMBOL)
        return spec

    def _requested_symbols(self, params: dict[str, str]) -> list[_Symbol] | None:
        """The ``symbol`` or ``symbols`` (JSON array) filter of exchangeInfo/ticker; None means all."""
        if params.get("symbol") and params.get("symbols"):
            raise _ApiError(400, -1128, "Combination of optional parameters invalid.")
        if params.get("symbol"):
            return [self._symbol(params["symbol"])]
        if params.get("symbols"):
            try:
                names = json.loads(params["symbols"])
            except ValueError as exc:
                raise _illegal("symbols", _SYMBOLS_RANGE) from exc
            if not isinstance(names, list) or not names:
                raise _missing("symbols")
            return [self._symbol(str(name)) for name in names]
        return None

    # ---- market data -----------------------------------------------------------------------------

    def _ping(self, params: dict[str, str]) -> object:
        return {}

    def _time(self, params: dict[str, str]) -> object:
        return {"serverTime": self.now_ms}

    def _exchange_info(self, params: dict[str, str]) -> object:
        selected = self._requested_symbols(params)
        if selected is None:
            with self._lock:
                selected = list(self._symbols.values())
        return {
            "timezone": "UTC",
            "serverTime": self.now_ms,
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": self.weight_limit,
                },
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
            ],
            "exchangeFilters": [],
            "symbols": [spec.info() for spec in selected],
        }

    def _market_price(self, spec: _Symbol) -> Decimal:
        """Last price: the symbol's price at now_ms. At a candle boundary that is the open of the candle
        starting then and the close of the one ending then, as on an exchange whose next trade after a
        close is the next candle's first; so a market order placed right at a close fills at the next
        open, the rule the backtester and the Mother AI replay fill by."""
        return spec.to_price(spec.price_at(self.now_ms))

    def _ticker_price(self, params: dict[str, str]) -> object:
        selected = self._requested_symbols(params)
        if selected is None:
            with self._lock:
                selected = list(self._symbols.values())
        prices = [{"symbol": spec.symbol, "price": _fmt(self._market_price(spec))} for spec in selected]
        return prices[0] if params.get("symbol") else prices  # one symbol: an object, not a list

    def _klines(self, params: dict[str, str]) -> object:
        symbol, interval_name = _require(params, "symbol"), _require(params, "interval")
        spec = self._symbol(symbol)
        interval = INTERVALS.get(interval_name)
        if interval is None:
            raise _ApiError(400, -1120, MSG_INVALID_INTERVAL)
        limit = _int_param(params, "limit")
        limit = KLINES_DEFAULT_LIMIT if limit is None else limit
        if not 1 <= limit <= KLINES_MAX_LIMIT:
            raise _ApiError(400, -1130, "Data sent for parameter 'limit' is not valid.")
        start, end = _int_param(params, "startTime"), _int_param(params, "endTime")
        if start is not None and end is not None and start > end:
            raise _ApiError(400, -1023, "Start time is greater than end time.")

        # Candles exist from the first open at/after listing up to the one containing now_ms,
        # which may still be open, exactly as on the live exchange.
        first = interval.ceil_index(spec.listed_ms)
        last = interval.floor_index(self.now_ms)
        if end is not None and end < interval.open_ms(last):
            last = interval.floor_index(end)  # openTime <= endTime
        if start is not None:
            if start > interval.open_ms(last):
                return []
            lo = max(first, interval.ceil_index(start))  # openTime >= startTime
            return self._corrupted(symbol, spec.kline_rows(interval, lo, min(last, lo + limit - 1)))
        return self._corrupted(symbol, spec.kline_rows(interval, max(first, last - limit + 1), last))

    def _corrupted(self, symbol: str, rows: list[list[Any]]) -> list[list[Any]]:
        with self._lock:
            patches = {t: p for (s, t), p in self._corrupt.items() if s == symbol}
        for row in rows:
            for index, value in patches.get(row[0], {}).items():
                row[index] = value
        return rows

    # ---- signed endpoints -------------------------------------------------------------------------

    def _authenticate(
        self, headers: dict[str, str], raw_query: str, raw_body: str, params: dict[str, str]
    ) -> None:
        """Binance's checks for SIGNED endpoints: API key, HMAC-SHA256 signature, then timestamp."""
        api_key = next((value for name, value in headers.items() if name.lower() == "x-mbx-apikey"), None)
        if api_key != self.api_key:
            raise _ApiError(401, -2015, MSG_BAD_API_KEY)
        signature = _require(params, "signature")
        # Binance signs "query string + body" exactly as sent. python-binance signs the values
        # before requests percent-encodes the form body, so the decoded payload is accepted too;
        # for plain ids and numbers the two are identical.
        payload = _without_signature(raw_query) + _without_signature(raw_body)
        secret = self.api_secret.encode()
        if not any(
            hmac.compare_digest(hmac.new(secret, candidate.encode(), hashlib.sha256).hexdigest(), signature)
            for candidate in {payload, unquote_plus(payload)}
        ):
            raise _ApiError(400, -1022, MSG_BAD_SIGNATURE)
        timestamp = _int_param(params, "timestamp")
        if timestamp is None:
            raise _missing("timestamp")
        recv_window = _int_param(params, "recvWindow")
        recv_window = DEFAULT_RECV_WINDOW if recv_window is None else recv_window
        if recv_window > MAX_RECV_WINDOW:
            raise _ApiError(400, -1131, f"recvWindow must be less than {MAX_RECV_WINDOW}.")
        if self.check_timestamp:
            if timestamp >= self.now_ms + 1000:
                msg = "Timestamp for this request was 1000ms ahead of the server's time."
                raise _ApiError(400, -1021, msg)
            if self.now_ms - timestamp > recv_window:
                raise _ApiError(400, -1021, "Timestamp for this request is outside of the recvWindow.")

    def _account(self, params: dict[str, str]) -> object:
        balances = [
            {"asset": asset, "free": _fmt(Decimal(free)), "locked": _fmt(0)}
            for asset, free in sorted(self.balances.items())
        ]
        if params.get("omitZeroBalances") == "true":
            balances = [balance for balance in balances if Decimal(balance["free"]) != 0]
        return {
            "makerCommission": 10,
            "takerCommission": 10,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {
                "maker": _fmt(COMMISSION_RATE),
                "taker": _fmt(COMMISSION_RATE),
                "buyer": _fmt(0),
                "seller": _fmt(0),
            },
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": self.now_ms,
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
            "uid": 354937868,
        }

    def _find_order(self, symbol: str, params: dict[str, str]) -> dict[str, Any]:
        client_order_id, order_id = params.get("origClientOrderId"), params.get("orderId")
        if client_order_id is None and order_id is None:
            raise _ApiError(
                400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"
            )
        with self._lock:
            for order in self._orders:
                if order["symbol"] != symbol:
                    continue
                if (client_order_id is not None and order["clientOrderId"] == client_order_id) or (
                    order_id is not None and str(order["orderId"]) == order_id
                ):
                    return copy.deepcopy(order)
        raise _ApiError(400, -2013, "Order does not exist.")

    def _query_order(self, params: dict[str, str]) -> object:
        """GET /api/v3/order: an accepted order as Binance's query answer (no fills in it)."""
        order = self._find_order(self._symbol(_require(params, "symbol")).symbol, params)
        answer = {key: value for key, value in order.items() if key not in ("fills", "transactTime")}
        answer.update(
            {
                "stopPrice": "0.00000000",
                "icebergQty": "0.00000000",
                "time": order["transactTime"],
                "updateTime": order["transactTime"],
                "isWorking": True,
            }
        )
        return answer

    def _my_trades(self, params: dict[str, str]) -> object:
        """GET /api/v3/myTrades for one orderId: the order's fills as account trades."""
        symbol = self._symbol(_require(params, "symbol")).symbol
        order = self._find_order(symbol, {"orderId": _require(params, "orderId")})
        return [
            {
                "symbol": symbol,
                "id": fill["tradeId"],
                "orderId": order["orderId"],
                "orderListId": -1,
                "price": fill["price"],
                "qty": fill["qty"],
                "quoteQty": _fmt(Decimal(fill["price"]) * Decimal(fill["qty"])),
                "commission": fill["commission"],
                "commissionAsset": fill["commissionAsset"],
                "time": order["transactTime"],
                "isBuyer": order["side"] == "BUY",
                "isMaker": False,
                "isBestMatch": True,
            }
            for fill in order["fills"]
        ]

    def _order_test(self, params: dict[str, str]) -> object:
        self._plan_order(params)  # same validation as a real order; nothing executes or is recorded
        return {}

    def _order(self, params: dict[str, str]) -> object:
        plan = self._plan_order(params)
        response_type = params.get("newOrderRespType") or "FULL"
        if response_type not in ("ACK", "RESULT", "FULL"):
            raise _illegal("newOrderRespType", "ACK, RESULT, FULL")
        client_order_id = params.get("newClientOrderId")
        if client_order_id is not None and not re.fullmatch(_CLIENT_ORDER_ID_RANGE, client_order_id):
            raise _illegal("newClientOrderId", _CLIENT_ORDER_ID_RANGE)
        with self._lock:
            # Every order this fake accepted still "exists" until reset(), so any reuse is a duplicate.
            if client_order_id is not None and any(
                order["symbol"] == plan.symbol.symbol and order["clientOrderId"] == client_order_id
                for order in self._orders
            ):
                raise _ApiError(400, -2010, MSG_DUPLICATE_ORDER)
            order_id = self._next_order_id
            self._next_order_id += 1
            trade_id = self._next_trade_id
            if plan.fill_price is not None:
                self._next_trade_id += 1
            order = self._order_response(plan, order_id, trade_id, client_order_id or f"fake{order_id:018d}")
            self._orders.append(order)
        if response_type == "ACK":
            keys = ("symbol", "orderId", "orderListId", "clientOrderId", "transactTime")
            return {key: order[key] for key in keys}
        if response_type == "RESULT":
            return {key: value for key, value in order.items() if key != "fills"}
        return copy.deepcopy(order)

    def _plan_order(self, params: dict[str, str]) -> _OrderPlan:
        """Validate an order the way Binance does (parameters, then filters) and decide its fill."""
        spec = self._symbol(_require(params, "symbol"))
        side, order_type = _require(params, "side"), _require(params, "type")
        if side not in ("BUY", "SELL"):
            raise _ApiError(400, -1117, "Invalid side.")
        if order_type not in ("MARKET", "LIMIT"):  # the fake only executes these two types
            raise _ApiError(400, -1116, "Invalid orderType.")
        if spec.status != "TRADING":
            raise _ApiError(400, -2010, "Market is closed.")
        quantity = _decimal_param(params, "quantity")
        quote_qty = _decimal_param(params, "quoteOrderQty")
        price = _decimal_param(params, "price")
        market = self._market_price(spec)

        if order_type == "LIMIT":
            time_in_force = _require(params, "timeInForce")
            if time_in_force not in ("GTC", "IOC", "FOK"):
                raise _ApiError(400, -1115, "Invalid timeInForce.")
            if price is None:
                raise _missing("price")
            if quantity is None:
                raise _missing("quantity")
            if quote_qty is not None:
                raise _not_required("quoteOrderQty")
            if price < spec.tick_size or price > MAX_PRICE or (price - spec.tick_size) % spec.tick_size:
                raise _filter_failure("PRICE_FILTER")
            notional = price * quantity
            marketable = price >= market if side == "BUY" else price <= market
        else:
            time_in_force = "GTC"  # what Binance reports for MARKET orders
            if price is not None:
                raise _not_required("price")
            if params.get("timeInForce"):
                raise _not_required("timeInForce")
            if quantity is None and quote_qty is None:
                raise _ApiError(
                    400, -1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!"
                )
            if quantity is not None and quote_qty is not None:
                raise _not_required("quoteOrderQty")
            if quote_qty is not None:
                # Spend at most quoteOrderQty: the largest whole number of steps it buys at market.
                steps = (quote_qty / market / spec.step_size).to_integral_value(rounding=ROUND_DOWN)
                quantity = steps * spec.step_size
            assert quantity is not None
            notional = market * quantity
            marketable = True

        if quantity < spec.step_size or quantity > MAX_QTY or (quantity - spec.step_size) % spec.step_size:
            raise _filter_failure("LOT_SIZE")
        if notional < spec.min_notional or (order_type == "LIMIT" and notional > MAX_NOTIONAL):
            raise _filter_failure("NOTIONAL")
        return _OrderPlan(
            symbol=spec,
            side=side,
            type=order_type,
            time_in_force=time_in_force,
            quantity=quantity,
            limit_price=price,
            quote_order_qty=quote_qty,
            # Marketable orders fill completely at the last price; resting ones stay untouched.
            fill_price=market if marketable else None,
        )

    def _order_response(
        self, plan: _OrderPlan, order_id: int, trade_id: int, client_order_id: str
    ) -> dict[str, Any]:
        """Binance's FULL new-order response for a plan."""
        if plan.fill_price is not None:
            executed = plan.quantity
            quote = (plan.fill_price * executed).quantize(Decimal("1e-8"))
            # The fee is taken from what the account receives: base on BUY, quote on SELL.
            if plan.side == "BUY":
                commission, commission_asset = executed * COMMISSION_RATE, plan.symbol.base_asset
            else:
                commission, commission_asset = quote * COMMISSION_RATE, plan.symbol.quote_asset
            fills = [
                {
                    "price": _fmt(plan.fill_price),
                    "qty": _fmt(executed),
                    "commission": _fmt(commission),
                    "commissionAsset": commission_asset,
                    "tradeId": trade_id,
                }
            ]
            status = "FILLED"
        else:
            executed, quote, fills = Decimal(0), Decimal(0), []
            status = "NEW" if plan.time_in_force == "GTC" else "EXPIRED"
        return {
            "symbol": plan.symbol.symbol,
            "orderId": order_id,
            "orderListId": -1,
            "clientOrderId": client_order_id,
            "transactTime": self.now_ms,
            "price": _fmt(plan.limit_price or 0),
            "origQty": _fmt(plan.quantity),
            "executedQty": _fmt(executed),
            "origQuoteOrderQty": _fmt(plan.quote_order_qty or 0),
            "cummulativeQuoteQty": _fmt(quote),
            "status": status,
            "timeInForce": plan.time_in_force,
            "type": plan.type,
            "side": plan.side,
            "workingTime": self.now_ms,
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "fills": fills,
        }


# --------------------------------------------------------------------------------------------------
# HTTP plumbing.
# --------------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a handler stuck in a "slow" fault must never keep the process alive

    def __init__(self, fake: FakeBinance) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out (the "slow" fault) has closed its socket before we answer: expected.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    # One request per connection: no idle keep-alive connections linger after stop().
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: per-request lines on stderr would drown pytest's output."""

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The Date header tells the fake's own time (`now_ms`), as Binance's tells its clock."""
        return formatdate(self.server.fake.now_ms / 1000 if timestamp is None else timestamp, usegmt=True)

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        response = self.server.fake._handle(method, self.path, raw_body, dict(self.headers.items()))
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)
