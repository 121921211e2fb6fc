"""Binance through python-binance: klines (paged), ticker prices and exchange info, politely.

Every call has a timeout. 429/418 and 5xx answers and timeouts are retried with exponential
backoff that honours `Retry-After`; the request weight Binance reports in
`X-MBX-USED-WEIGHT-1M` is watched so a long sync pauses before the limit instead of
being banned. Other Binance errors become project errors with Binance's code and message.

Calls run side by side: each thread has its own python-binance client (it keeps the last response
on itself), the weight budget is shared and only its bookkeeping is locked, and every wait (a
retry's backoff, `Retry-After`, the pause before the limit) happens in the calling thread with no
lock held, so one slow or rate-limited call holds up nobody else. When Binance cannot be reached
at all, that is remembered for BREAKER_MS (a circuit breaker): calls in that time fail at once,
without network I/O, and callers serve stored data at offline speed.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import requests
from binance.client import Client
from binance.exceptions import BinanceAPIException, BinanceRequestException

from utils.errors import ExchangeError, ExchangeUnavailable, NotFound
from utils.exchange import Clock, KlinePage, Sleep, SymbolFilters
from utils.intervals import interval_ms
from utils.logger import redact

if TYPE_CHECKING:
    from utils.settings import ExchangeSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

KLINES_PAGE = 1000  # Binance's maximum per request
KLINES_WEIGHT = 2
_RETRIABLE_STATUS = {418, 429}
_MAX_BACKOFF_S = 30.0
_MAX_RETRY_AFTER_S = 120.0  # beyond this we fail fast rather than hold a request for minutes
_WEIGHT_HEADROOM = 0.9  # pause at 90% of the minute's budget
BREAKER_MS = 30_000  # how long an unreachable Binance is not asked again


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class BinanceExchange:
    """The Binance adapter. Thread-safe: calls are serialised, so weight accounting stays exact."""

    name = "binance"

    def __init__(
        self,
        *,
        api_url: str,
        api_key: str | None = None,
        api_secret: str | None = None,
        timeout_s: float = 10.0,
        max_retries: int = 5,
        weight_limit: int = 6000,
        clock: Clock = wall_clock_ms,
        sleep: Sleep = time.sleep,
    ) -> None:
        # Connect timeout is short so an offline machine fails fast; read timeout is the setting.
        self._timeout = (min(3.05, timeout_s), timeout_s)
        self._api_url = api_url.rstrip("/")
        self._keys = (api_key, api_secret)
        self._local = threading.local()  # this thread's python-binance client
        self._max_retries = max_retries
        self._clock = clock
        self._sleep = sleep
        self._weight_limit = weight_limit
        self._budget = _WeightBudget(weight_limit, clock)
        self._lock = threading.Lock()  # guards request_count and the breaker; never held over I/O
        self._down_until: int | None = None
        self.request_count = 0

    @property
    def _client(self) -> Client:
        client: Client | None = getattr(self._local, "client", None)
        if client is None:
            client = Client(*self._keys, requests_params={"timeout": self._timeout}, ping=False)
            client.API_URL = self._api_url
            self._local.client = client
        return client

    @property
    def used_weight(self) -> int | None:
        """The minute's request weight as we count it (ours sent, or Binance's report if higher)."""
        return self._budget.used()

    # --- public interface ---------------------------------------------------------------------

    def iter_klines(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> Iterator[KlinePage]:
        """Closed candles with start_ms <= open_time <= end_ms, paging with `get_klines` ourselves
        (python-binance's `get_historical_klines` sleeps after every third page)."""
        step = interval_ms(interval)
        cursor = start_ms
        while cursor <= end_ms:
            fetch = partial(
                self._client.get_klines,
                symbol=symbol,
                interval=interval,
                startTime=cursor,
                endTime=end_ms,
                limit=KLINES_PAGE,
            )
            # Parsed inside the call: an answer that is not klines (a captive portal's or a proxy's page
            # that happens to be JSON) is retried and then taken for "Binance is not reachable", so the
            # stored candles are served instead of an error.
            rows, close_times = self._call(partial(_fetch_klines, fetch), weight=KLINES_WEIGHT)
            # The newest candle may still be forming: only closed candles are ever stored. "Now"
            # is the earlier of our clock and Binance's (its Date header), so a local clock that
            # runs ahead cannot make a forming candle look closed.
            now = min(self._clock(), self._server_now_ms())
            is_closed = close_times < now
            closed = rows[is_closed]
            forming = None if is_closed.all() else int(rows[int(np.argmin(is_closed)), 0])
            if len(closed) or forming is not None:
                yield KlinePage(closed, self.used_weight, forming)
            if len(rows) < KLINES_PAGE or forming is not None:
                return
            cursor = int(rows[-1, 0]) + step

    def ping(self) -> None:
        """GET /api/v3/ping once, without retries: a health probe reports, it does not insist."""
        self._call(self._client.ping, weight=1, retries=0)

    def price(self, symbol: str) -> float:
        raw = self._call(lambda: self._client.get_symbol_ticker(symbol=symbol), weight=2)
        try:
            return float(raw["price"])
        except (KeyError, TypeError, ValueError):
            raise ExchangeError(
                "Binance returned a ticker in an unexpected shape.", code="exchange_bad_response"
            ) from None

    def symbols(self) -> list[SymbolFilters]:
        raw = self._call(self._client.get_exchange_info, weight=20)
        try:
            return [_symbol_filters(item) for item in raw["symbols"]]
        except (KeyError, TypeError, ValueError):
            raise ExchangeError(
                "Binance returned exchange info in an unexpected shape.", code="exchange_bad_response"
            ) from None

    # --- signed trading calls (live trading only; they need API keys) -------------------------
    # Parameters go to python-binance as strings: it sends str(value), and str(0.00001) is "1e-05",
    # which Binance rejects. Callers pass decimal strings.

    def create_test_order(self, **params: str) -> None:
        """Validate an order with POST /api/v3/order/test; nothing is placed, so retrying is safe."""
        self._call(lambda: self._client.create_test_order(**params), weight=1)

    def create_order(self, **params: str) -> dict[str, Any]:
        """Place an order with POST /api/v3/order, sent exactly once (never retried): after a
        timeout or 5xx the order may or may not exist, and a retry could place it twice. Such a
        failure raises ExchangeUnavailable and the caller must treat the order's state as unknown."""
        raw = self._call(lambda: self._client.create_order(**params), weight=1, retries=0)
        if not isinstance(raw, dict):
            raise ExchangeError(
                "Binance returned an order in an unexpected shape.", code="exchange_bad_response"
            )
        return raw

    def get_order(self, symbol: str, client_order_id: str) -> dict[str, Any]:
        """GET /api/v3/order by origClientOrderId (signed). An order Binance does not have raises an
        AppError whose details carry ``binance_code`` -2013."""
        raw = self._call(
            lambda: self._client.get_order(symbol=symbol, origClientOrderId=client_order_id), weight=4
        )
        if not isinstance(raw, dict) or "status" not in raw:
            raise ExchangeError(
                "Binance returned an order in an unexpected shape.", code="exchange_bad_response"
            )
        return raw

    def get_my_trades(self, symbol: str, order_id: str) -> list[dict[str, Any]]:
        """GET /api/v3/myTrades of one order (signed): its fills with their commissions."""
        raw = self._call(lambda: self._client.get_my_trades(symbol=symbol, orderId=order_id), weight=20)
        if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
            raise ExchangeError(
                "Binance returned trades in an unexpected shape.", code="exchange_bad_response"
            )
        return raw

    def get_account(self) -> dict[str, Any]:
        """GET /api/v3/account (signed): balances and permissions."""
        raw = self._call(lambda: self._client.get_account(omitZeroBalances="true"), weight=20)
        if not isinstance(raw, dict) or not isinstance(raw.get("balances"), list):
            raise ExchangeError(
                "Binance returned an account in an unexpected shape.", code="exchange_bad_response"
            )
        return raw

    # --- retries, backoff and weight ----------------------------------------------------------

    def _call(self, fn: Callable[[], T], *, weight: int, retries: int | None = None) -> T:
        max_retries = self._max_retries if retries is None else retries
        self._refuse_while_down()
        attempt = 0
        while True:
            self._wait_for_budget(weight)
            try:
                with self._lock:
                    self.request_count += 1
                result = fn()
                self._read_weight(self._client.response)
                with self._lock:
                    self._down_until = None
                return result
            except BinanceAPIException as exc:
                self._read_weight(exc.response)
                if not (exc.status_code in _RETRIABLE_STATUS or exc.status_code >= 500):
                    raise _project_error(exc) from None
                delay = _retry_after(exc.response)
                if delay is not None and delay > _MAX_RETRY_AFTER_S:
                    raise ExchangeUnavailable(
                        f"Binance asks us to wait {delay:.0f} s (HTTP {exc.status_code}); try again later.",
                        details={"status": exc.status_code, "retry_after_s": delay},
                    ) from None
                reason = f"HTTP {exc.status_code} from Binance"
            except (BinanceRequestException, _NotBinance):
                delay, reason = None, "a malformed response from Binance"
            except requests.Timeout:
                delay, reason = None, "a timeout talking to Binance"
            except requests.ConnectionError:
                # Unreachable (no network, DNS failure): retrying only slows the fallback, and so would
                # asking again on the next request.
                self._trip()
                raise ExchangeUnavailable("Binance is unreachable from this machine.") from None
            if attempt >= max_retries:
                # Timeouts, and answers that keep not being Binance's (a captive portal), will not
                # clear in a moment: stop asking for a while, as for no network at all.
                if reason in ("a timeout talking to Binance", "a malformed response from Binance"):
                    self._trip()
                raise ExchangeUnavailable(
                    f"Gave up after {attempt + 1} attempts: {reason}.", details={"attempts": attempt + 1}
                )
            wait = delay if delay is not None else min(_MAX_BACKOFF_S, 0.5 * 2**attempt)
            log.warning(
                "retrying Binance call after %s (attempt %d, waiting %.1f s)", reason, attempt + 1, wait
            )
            self._sleep(wait)  # this call's own wait: no lock is held
            attempt += 1

    def _trip(self) -> None:
        with self._lock:
            self._down_until = self._clock() + BREAKER_MS
        log.warning("Binance is unreachable; not asking again for %d s", BREAKER_MS // 1000)

    def _refuse_while_down(self) -> None:
        with self._lock:
            down_until = self._down_until
        if down_until is not None and self._clock() < down_until:
            raise ExchangeUnavailable(
                "Binance was unreachable moments ago; it is asked again after a short pause.",
                details={"retry_at": down_until},
            )

    def _wait_for_budget(self, weight: int) -> None:
        """Take `weight` from the minute's budget, pausing (this thread only) until the next minute
        when it would pass the headroom."""
        wait_s, full_minute = self._budget.take(weight)
        if wait_s > 0:
            log.info("request weight %s of the minute used; pausing %.1f s", self._budget.used(), wait_s)
            self._sleep(wait_s)
            self._budget.next_minute(full_minute)
            self._budget.take(weight, force=True)

    def _server_now_ms(self) -> int:
        """Binance's time from the last response's Date header (whole seconds, so never ahead of
        Binance); our own clock when there is none."""
        headers = getattr(self._client.response, "headers", None) or {}
        try:
            return int(parsedate_to_datetime(headers["Date"]).timestamp() * 1000)
        except (KeyError, TypeError, ValueError, IndexError):
            return self._clock()

    def _read_weight(self, response: Any) -> None:
        headers = getattr(response, "headers", None) or {}
        value = headers.get("X-MBX-USED-WEIGHT-1M") or headers.get("x-mbx-used-weight-1m")
        if value is not None:
            with contextlib.suppress(ValueError):
                self._budget.report(int(value))


class _WeightBudget:
    """The minute's request weight: what we sent (counted before sending, so calls in flight count)
    and what Binance last reported (which also counts other clients on this IP); the higher rules."""

    def __init__(self, limit: int, clock: Clock) -> None:
        self._limit = limit * _WEIGHT_HEADROOM
        self._clock = clock
        self._lock = threading.Lock()
        self._minute: int | None = None
        self._sent = 0
        self._reported: int | None = None

    def _roll(self) -> None:
        minute = self._clock() // 60_000
        if self._minute is None or minute > self._minute:
            self._minute, self._sent, self._reported = minute, 0, None

    def used(self) -> int | None:
        with self._lock:
            self._roll()
            if self._reported is None and self._sent == 0:
                return None
            return max(self._sent, self._reported or 0)

    def take(self, weight: int, force: bool = False) -> tuple[float, int | None]:
        """(0, minute) with the weight taken, or (seconds to wait for the next minute, the full
        minute) with nothing taken."""
        with self._lock:
            self._roll()
            used = max(self._sent, self._reported or 0)
            if force or used == 0 or used + weight <= self._limit:
                self._sent += weight
                return 0.0, self._minute
            now = self._clock()
            return (60_000 - now % 60_000) / 1000 + 0.5, self._minute

    def next_minute(self, full: int | None) -> None:
        """After a pause for the `full` minute: the next one has begun (also when an injected sleep
        did not move the clock). Once, however many threads waited for it."""
        with self._lock:
            if self._minute == full:
                self._minute = (full or 0) + 1
                self._sent, self._reported = 0, None

    def report(self, used: int) -> None:
        with self._lock:
            self._roll()
            self._reported = max(self._reported or 0, used)


def exchange_from_settings(
    settings: ExchangeSettings,
    *,
    clock: Clock | None = None,
    sleep: Sleep | None = None,
    signed: bool = False,
) -> BinanceExchange:
    """The Binance client the settings describe: BINANCE_API_URL (or the testnet), the keys when set,
    the timeout, retries and request-weight budget. `signed` is for account calls (orders, balances):
    both keys must then be set. `clock` and `sleep` default to the wall clock and ``time.sleep``."""
    key = settings.api_key.get_secret_value() if settings.api_key else None
    secret = settings.api_secret.get_secret_value() if settings.api_secret else None
    if signed and not (key and secret):
        raise ValueError("A signed Binance client needs BINANCE_API_KEY and BINANCE_API_SECRET.")
    return BinanceExchange(
        api_url=settings.api_url,
        api_key=key,
        api_secret=secret,
        timeout_s=settings.timeout_seconds,
        max_retries=settings.max_retries,
        weight_limit=settings.weight_limit,
        clock=clock if clock is not None else wall_clock_ms,
        sleep=sleep if sleep is not None else time.sleep,
    )


class _NotBinance(Exception):
    """A 200 whose body is not what Binance sends for the endpoint: handled like a malformed answer."""


def _fetch_klines(fetch: Callable[[], Any]) -> tuple[np.ndarray, np.ndarray]:
    return _parse_klines(fetch())


def _parse_klines(raw: Any) -> tuple[np.ndarray, np.ndarray]:
    """(n, 6) open_time/open/high/low/close/volume rows and the n close times."""
    if not isinstance(raw, list):
        raise _NotBinance("klines are not a list")
    if not raw:
        return np.empty((0, 6), dtype=np.float64), np.empty(0, dtype=np.int64)
    try:
        if any(not isinstance(row, list) or len(row) < 7 for row in raw):
            raise ValueError("short row")
        table = np.array([row[:7] for row in raw], dtype=np.float64)
    except (TypeError, ValueError):
        raise _NotBinance("malformed kline rows") from None
    return table[:, :6], table[:, 6].astype(np.int64)


def _retry_after(response: Any) -> float | None:
    headers = getattr(response, "headers", None) or {}
    value = headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


_LONG_TOKEN = re.compile(r"[A-Za-z0-9]{32,}")  # API keys are 64, signatures 64 hex characters


def _public_text(text: str) -> str:
    """Binance's error text as a client may see it: nothing in it that looks like a key, a
    signature or a secret (Binance echoes parameters back in some messages)."""
    return _LONG_TOKEN.sub("***", redact(str(text)))


def _project_error(exc: BinanceAPIException) -> Exception:
    message = _public_text(exc.message)
    details = {"binance_code": exc.code, "binance_message": message, "status": exc.status_code}
    if exc.code == -1121:
        return NotFound("Binance does not know this symbol.", details=details, code="unknown_symbol")
    return ExchangeError(f"Binance rejected the request: {message} (code {exc.code}).", details=details)


def _symbol_filters(item: dict[str, Any]) -> SymbolFilters:
    filters = {f["filterType"]: f for f in item.get("filters", [])}
    price = filters.get("PRICE_FILTER", {})
    lot = filters.get("LOT_SIZE", {})
    notional = filters.get("NOTIONAL") or filters.get("MIN_NOTIONAL") or {}
    return SymbolFilters(
        symbol=item["symbol"],
        status=item.get("status", "UNKNOWN"),
        base_asset=item.get("baseAsset", ""),
        quote_asset=item.get("quoteAsset", ""),
        tick_size=str(price.get("tickSize", "0")),
        step_size=str(lot.get("stepSize", "0")),
        min_qty=str(lot.get("minQty", "0")),
        max_qty=str(lot.get("maxQty", "0")),
        min_notional=str(notional.get("minNotional", "0")),
    )
