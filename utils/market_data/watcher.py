"""The candle watcher: publishes each newly closed candle of the (symbol, interval) pairs some live
stream watches, as a ``candle`` event.

All timing is in ``check(now_ms)``, which tests call with any time they like; ``start()``/``stop()``
wrap it in a daemon thread that waits on a ``threading.Event`` until the next close (plus a grace
period, so the exchange has published the candle), at most ``MAX_WAIT_S``; ``wake()`` re-checks at
once. A pair starts at the candle that closed last when it was first watched: watching never
replays history, and a pair nobody watches any more is dropped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from utils.errors import AppError
from utils.events import EventLog
from utils.intervals import floor_open_time, next_open_time
from utils.market_data.market import MarketData

log = logging.getLogger(__name__)

DEFAULT_GRACE_MS = 5_000
MAX_WAIT_S = 60.0
MAX_CATCH_UP = 1000  # closed candles published per pair and check (a long sleep of the machine)


@dataclass(frozen=True, slots=True)
class ClosedCandle:
    symbol: str
    interval: str
    open_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float


def watch_key(symbol: str, interval: str) -> str:
    return f"{symbol}@{interval}"


class CandleWatcher:
    """See the module docstring."""

    def __init__(
        self, market: MarketData, events: EventLog, clock: Callable[[], int], grace_ms: int = DEFAULT_GRACE_MS
    ) -> None:
        self.market = market
        self.events = events
        self.clock = clock
        self.grace_ms = grace_ms
        self._lock = threading.Lock()  # guards _watchers and _last
        self._watchers: dict[tuple[str, str], int] = {}  # pair -> how many streams watch it
        self._last: dict[tuple[str, str], int] = {}  # pair -> open time of the last candle published
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _latest_closed(self, interval: str, now_ms: int) -> int:
        """Open time of the latest candle that closed at least grace_ms before now."""
        forming = floor_open_time(now_ms - self.grace_ms, interval)
        return floor_open_time(forming - 1, interval)  # the candle before it (months vary in length)

    def watch(self, pairs: list[tuple[str, str]]) -> None:
        now = self.clock()
        with self._lock:
            for pair in pairs:
                self._watchers[pair] = self._watchers.get(pair, 0) + 1
                self._last.setdefault(pair, self._latest_closed(pair[1], now))
        self._wake.set()

    def unwatch(self, pairs: list[tuple[str, str]]) -> None:
        with self._lock:
            for pair in pairs:
                left = self._watchers.get(pair, 0) - 1
                if left > 0:
                    self._watchers[pair] = left
                else:
                    self._watchers.pop(pair, None)
                    self._last.pop(pair, None)

    def watched(self) -> list[tuple[str, str]]:
        with self._lock:
            return sorted(self._watchers)

    def check(self, now_ms: int | None = None) -> int:
        """Publish every candle of a watched pair that closed since the last check; the count."""
        now = self.clock() if now_ms is None else now_ms
        with self._lock:
            due = [
                (pair, last) for pair, last in self._last.items() if self._latest_closed(pair[1], now) > last
            ]
        published = 0
        for (symbol, interval), last in due:
            try:
                answer = self.market.candles(
                    symbol,
                    interval,
                    limit=MAX_CATCH_UP,
                    start_ms=next_open_time(last, interval),
                    end_ms=self._latest_closed(interval, now),
                )
            except AppError as exc:  # the next check tries again; the stream stays up
                log.warning("candle watcher: %s %s: %s", symbol, interval, exc.message)
                continue
            candles = answer.candles
            for i in range(len(candles)):
                open_time = int(candles.open_time[i])
                with self._lock:
                    if (symbol, interval) not in self._last or open_time <= self._last[(symbol, interval)]:
                        continue
                    self._last[(symbol, interval)] = open_time
                candle = ClosedCandle(
                    symbol,
                    interval,
                    open_time,
                    float(candles.open[i]),
                    float(candles.high[i]),
                    float(candles.low[i]),
                    float(candles.close[i]),
                    float(candles.volume[i]),
                )
                self.events.publish("candle", watch_key(symbol, interval), candle)
                published += 1
        return published

    def _seconds_to_next_check(self) -> float:
        now = self.clock()
        with self._lock:
            intervals = {interval for _, interval in self._watchers}
        if not intervals:
            return MAX_WAIT_S
        nearest = min(next_open_time(floor_open_time(now, i), i) + self.grace_ms for i in intervals)
        return max(0.05, min(MAX_WAIT_S, (nearest - now) / 1000))

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="candle-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._seconds_to_next_check())
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.check()
            except Exception:  # a bug must not end the watching; it is logged with its trace
                log.exception("candle watcher: check failed")
