"""Market data service: candles, prices and symbols from the store first, the exchange when needed.

Rules:
- Only closed candles are stored. A request fetches from the exchange only the ranges the store
  has not covered yet (coverage is recorded per series), so repeating a request costs nothing.
- When the exchange is unreachable, stored candles are served with `stale=True`; with none at
  all the request fails with 503.
- Provenance is never mixed: one answer comes from one partition, in this order of preference:
  "binance" (fetched; reported as "binance" when this request fetched new candles, else "cache"),
  "file" (imported CSVs), then "sample" (generated, synthetic).
- Reads only read the store: CSV files dropped into DATA_DIR are imported by `drop_folder` at
  start-up and when the folder changes, never while answering a request.
- A symbol's exchange rules (`symbol_filters`) come from the `symbols` table while the stored row
  is fresh: fetched from Binance less than `SYMBOL_FILTERS_MAX_AGE_MS` (24 h) ago by the injected
  clock (the row's `updated_at`). An unknown, old or sample-only row is refreshed from Binance on
  demand; a symbol Binance does not list is not asked about again for `SYMBOL_MISS_RETRY_MS` (1 h),
  and after a failed refresh Binance is left alone for `SYMBOL_FAILURE_RETRY_MS` (1 min), serving
  the stored row (even an old one) meanwhile. Offline, only the table is read.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from db import storage
from db.models import Job
from utils.errors import AppError, Conflict, DataUnavailable, ExchangeUnavailable, InvalidInput, NotFound
from utils.exchange import Clock, Exchange, SymbolFilters
from utils.intervals import INTERVALS, floor_open_time, interval_ms, next_open_time
from utils.jobs import JobHandler, JobRunner, Report
from utils.market_data.candles import (
    PARTITIONS,
    Candles,
    CandleStore,
    DataSource,
    Gap,
    Partition,
    find_gaps,
)
from utils.market_data.coverage import subtract, union, valid_rows
from utils.market_data.csv_import import parse_klines_csv
from utils.market_data.drop_folder import DropFolder, file_memo
from utils.market_data.sample import PROFILES, SAMPLE_INTERVAL, generate

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
_FLUSH_ROWS = 100_000  # write a long sync to disk in slices so progress survives a crash
# Filters of the sample symbols, as Binance publishes them for the real pairs, so paper trading
# works on a fresh offline install.
SAMPLE_FILTERS: tuple[SymbolFilters, ...] = (
    SymbolFilters("BTCUSDT", "TRADING", "BTC", "USDT", "0.01", "0.00001", "0.00001", "9000", "5"),
    SymbolFilters("ETHUSDT", "TRADING", "ETH", "USDT", "0.01", "0.0001", "0.0001", "9000", "5"),
)
SYMBOL_FILTERS_MAX_AGE_MS = 24 * 3_600_000  # stored exchange rules older than this are refreshed
SYMBOL_MISS_RETRY_MS = 3_600_000  # a symbol Binance does not list is asked about again after this
SYMBOL_FAILURE_RETRY_MS = 60_000  # after a failed refresh, Binance is not asked again before this


SymbolSource = Literal["binance", "cache", "sample"]  # exchange rules: fetched, stored, or the sample's


@dataclass(frozen=True, slots=True)
class CandleAnswer:
    candles: Candles
    source: DataSource
    stale: bool
    gaps: list[Gap]


MAX_PARALLEL_IMPORTS = 1  # a 95 MB file parses in about 160 MB beside the server's own


@dataclass(frozen=True, slots=True)
class Freshness:
    """How current the stored candles of a series are, without asking the exchange."""

    source: Partition | None  # where a read would come from (None: nothing stored)
    last_open_time: int | None
    behind: int | None  # closed candles after the last stored one (0: up to date)


@dataclass(frozen=True, slots=True)
class SyncReport:
    symbol: str
    interval: str
    start: int
    end: int
    added: int
    requests: int
    stored: int
    gaps: list[Gap] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ImportReport:
    symbol: str
    interval: str
    layout: str
    rows: int
    added: int
    first_open_time: int
    last_open_time: int
    gaps: list[Gap]


@dataclass(frozen=True, slots=True)
class PriceAnswer:
    symbol: str
    price: float
    source: DataSource
    stale: bool
    as_of: int | None  # open time of the candle whose close was used, when not a live ticker


@dataclass(frozen=True, slots=True)
class SymbolsAnswer:
    symbols: list[SymbolFilters]
    source: SymbolSource
    stale: bool


class MarketData:
    """Candles, prices and symbols, combining the store with an optional exchange."""

    def __init__(
        self,
        store: CandleStore,
        exchange: Exchange | None,
        sessions: sessionmaker[Session],
        clock: Clock,
        data_dir: Path,
        *,
        symbol_max_age_ms: int = SYMBOL_FILTERS_MAX_AGE_MS,
    ) -> None:
        self.store = store
        self.exchange = exchange  # None when OFFLINE
        self.sessions = sessions
        self.clock = clock
        self.data_dir = data_dir
        # The CSV drop folder: imported at start-up and when it changes (`drop_folder.start()`).
        self.drop_folder = DropFolder(data_dir, store, clock)
        self.symbol_max_age_ms = symbol_max_age_ms
        # Freshness of stored rows is their `updated_at` column; what no row can record is kept
        # here, in memory: when Binance last said a symbol does not exist, and the last failure.
        self._symbols_lock = threading.Lock()  # one refresh at a time (scheduler and requests)
        # Imports parse one file at a time (the rest wait, their uploads still on disk): each holds
        # its file and its candles in memory, so concurrent 95 MB uploads stay under 500 MB.
        self._imports = threading.BoundedSemaphore(MAX_PARALLEL_IMPORTS)
        self._symbol_missed_at: dict[str, int] = {}
        self._symbols_failed_at: int | None = None

    # --- candles ------------------------------------------------------------------------------

    def candles(
        self,
        symbol: str,
        interval: str,
        *,
        limit: int,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> CandleAnswer:
        """Up to `limit` closed candles: the first ones from `start_ms`, or the latest up to `end_ms`/now."""
        if start_ms is not None and end_ms is not None and start_ms > end_ms:
            raise InvalidInput("start must not be after end.", details={"field": "start"})
        lo, hi = self._window(interval, limit, start_ms, end_ms)
        source: DataSource | None = None
        stale = False
        if self.exchange is not None and lo <= hi:
            try:
                report = self.sync(symbol, interval, lo, hi)
                source = "binance" if report.added else "cache"
            except ExchangeUnavailable:
                log.warning("Binance unreachable; serving stored candles for %s %s", symbol, interval)
                stale = True
            except NotFound:
                # Binance does not list it, but the user may have imported it from a file.
                if not self._local_partition(symbol, interval):
                    raise
        partition = "binance" if source else self._local_partition(symbol, interval)
        if partition is None:
            raise self._no_data(symbol, interval, stale)
        stored = self.store.load(partition, symbol, interval, start_ms, end_ms)
        candles = (
            stored.slice(0, limit)
            if start_ms is not None
            else stored.slice(max(0, len(stored) - limit), len(stored))
        )
        return CandleAnswer(
            candles=candles,
            source=source or ("cache" if partition == "binance" else partition),
            stale=stale,
            gaps=find_gaps(candles.open_time, interval),
        )

    def history(
        self,
        symbol: str,
        interval: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        sync_max: int = 50_000,
        default_bars: int = 5000,
        last_bars: int | None = None,
    ) -> CandleAnswer:
        """Every closed candle in a range, for backtests and training: synced first when online.

        Without `start_ms`, the whole stored series (or, with nothing stored yet, the latest
        `default_bars`); with `last_bars`, only that many of the latest candles are synced and
        returned (training windows: older stored history is never re-synced for them). A range
        missing more than `sync_max` candles is refused with a pointer to the sync endpoint, so a
        request never turns into an unbounded download.
        """
        if start_ms is not None and end_ms is not None and start_ms > end_ms:
            raise InvalidInput("start must not be after end.", details={"field": "start"})
        stale, fetched = False, False
        if self.exchange is not None:
            stored = self.store.load("binance", symbol, interval)
            if start_ms is not None:
                lo = start_ms
            elif last_bars is not None:
                lo = self._window(interval, last_bars, None, end_ms)[0]
            elif len(stored):
                lo = int(stored.open_time[0])
            else:
                lo = self._window(interval, default_bars, None, end_ms)[0]
            hi = end_ms if end_ms is not None else self.clock()
            missing = self.estimate_missing(symbol, interval, lo, hi)
            if missing > sync_max:
                raise Conflict(
                    f"{missing} {interval} candles of {symbol} are not stored yet; download them first "
                    "(a background sync).",
                    code="sync_required",
                    details={"missing": missing, "start": lo, "end": hi},
                )
            try:
                fetched = self.sync(symbol, interval, lo, hi).added > 0
                start_ms = lo
            except ExchangeUnavailable:
                stale = True
            except NotFound:
                if not self._local_partition(symbol, interval):
                    raise
        partition = (
            "binance"
            if self.exchange is not None and not stale and self.store.exists("binance", symbol, interval)
            else self._local_partition(symbol, interval)
        )
        if partition is None:
            raise self._no_data(symbol, interval, stale)
        candles = self.store.load(partition, symbol, interval, start_ms, end_ms)
        if last_bars is not None and len(candles) > last_bars:
            candles = candles.slice(len(candles) - last_bars, len(candles))
        source = ("binance" if fetched else "cache") if partition == "binance" else partition
        return CandleAnswer(candles, source, stale, find_gaps(candles.open_time, interval))

    def _no_data(self, symbol: str, interval: str, stale: bool) -> Exception:
        missing = f"No {interval} candles for {symbol} are stored"
        details = {"symbol": symbol, "interval": interval}
        if stale:  # transient: Binance may answer again soon
            return DataUnavailable(f"{missing} and Binance is unreachable.", details=details)
        suffix = " (offline mode)." if self.exchange is None else " in this range."
        return NotFound(missing + suffix, details=details, code="no_data")

    def _window(self, interval: str, limit: int, start_ms: int | None, end_ms: int | None) -> tuple[int, int]:
        """The open-time range a request needs: never past the last closed candle."""
        # Months vary in length: one month of slack, and the answer is trimmed to `limit` anyway.
        span = limit * interval_ms(interval) + (interval_ms(interval) if interval == "1M" else 0)
        last_closed = floor_open_time(self.clock(), interval) - 1
        hi = last_closed if end_ms is None else min(end_ms, last_closed)
        if start_ms is None:
            return max(0, hi - span + 1), hi
        return start_ms, min(hi, start_ms + span - 1)

    def freshness(self, symbol: str, interval: str) -> Freshness:
        """The stored series a read of `symbol` would use (Binance's when online) and how many closed
        candles it lacks at the clock's now; reads the store only."""
        partition: Partition | None = "binance" if self.exchange is not None else None
        if partition is None or not self.store.exists(partition, symbol, interval):
            partition = self._local_partition(symbol, interval)
        if partition is None:
            return Freshness(None, None, None)
        last = self.store.last_open_time(partition, symbol, interval)
        if last is None:
            return Freshness(partition, None, None)
        latest_closed = floor_open_time(floor_open_time(self.clock(), interval) - 1, interval)
        if interval != "1M":
            behind = max(0, (latest_closed - last) // interval_ms(interval))
        else:  # months vary in length: count them
            behind, cursor = 0, last
            while cursor < latest_closed:
                cursor, behind = next_open_time(cursor, interval), behind + 1
        return Freshness(partition, last, behind)

    def _local_partition(self, symbol: str, interval: str) -> Partition | None:
        # Only the store is read here: DATA_DIR's files are imported by `drop_folder` (at start-up
        # and when the folder changes), never on a read.
        for partition in PARTITIONS:
            if self.store.exists(partition, symbol, interval):
                return partition
        return None

    # --- sync ---------------------------------------------------------------------------------

    def missing_ranges(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[tuple[int, int]]:
        """Sub-ranges of [start_ms, end_ms] the store has not yet covered from the exchange."""
        covered = self.store.meta("binance", symbol, interval).get("coverage", [])
        return subtract(start_ms, end_ms, covered)

    def estimate_missing(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> int:
        step = interval_ms(interval)
        return sum((b - a) // step + 1 for a, b in self.missing_ranges(symbol, interval, start_ms, end_ms))

    def sync(
        self, symbol: str, interval: str, start_ms: int, end_ms: int, progress: Progress | None = None
    ) -> SyncReport:
        """Fetch every missing closed candle in [start_ms, end_ms] into the store."""
        if self.exchange is None:
            raise Conflict("Offline mode: Binance is never called.", code="offline")
        last_closed = floor_open_time(self.clock(), interval) - 1
        end_ms = min(end_ms, last_closed)
        added = 0
        requests_before = self.exchange.request_count
        with self.store.lock("binance", symbol, interval):
            missing = self.missing_ranges(symbol, interval, start_ms, end_ms)
            total = sum(b - a + 1 for a, b in missing) or 1
            done = 0
            for lo, hi in missing:
                buffer: list[np.ndarray] = []
                cursor = lo
                received = False
                try:
                    covered_to = hi
                    for page in self.exchange.iter_klines(symbol, interval, lo, hi):
                        if page.forming_from is not None:
                            # Binance has not closed that candle yet: leave it (and what follows)
                            # uncovered so the next request fetches it once it has.
                            covered_to = min(covered_to, page.forming_from - 1)
                        if not len(page.rows):
                            continue
                        received = True
                        rows, first_bad = valid_rows(page.rows, symbol, interval)
                        if first_bad is not None:
                            # Never stored, and its time stays uncovered, so a later sync asks again
                            # and `gaps` reports the hole meanwhile.
                            covered_to = min(covered_to, first_bad - 1)
                        cursor = int(page.rows[-1, 0])
                        if not len(rows):
                            continue
                        buffer.append(rows)
                        if sum(len(rows) for rows in buffer) >= _FLUSH_ROWS:
                            added += self._flush(symbol, interval, buffer, lo, cursor)
                            buffer = []
                        if progress:
                            progress(min(1.0, (done + cursor - lo) / total), f"{added} candles added so far")
                except Exception:
                    # Keep what arrived: it is covered up to the last candle received.
                    if buffer:
                        self._flush(symbol, interval, buffer, lo, cursor)
                    raise
                # The range is now covered: what the exchange did not return does not exist. An
                # empty answer proves nothing (a glitch, a range before the listing): it covers nothing.
                if not received:
                    continue
                if covered_to >= lo:
                    added += self._flush(symbol, interval, buffer, lo, covered_to)
                done += hi - lo + 1
        requests = self.exchange.request_count - requests_before
        stored = self.store.load("binance", symbol, interval, start_ms, end_ms)
        return SyncReport(
            symbol,
            interval,
            start_ms,
            end_ms,
            added,
            requests,
            len(stored),
            find_gaps(stored.open_time, interval),
        )

    def _flush(self, symbol: str, interval: str, buffer: list[np.ndarray], lo: int, hi: int) -> int:
        rows = np.concatenate(buffer) if buffer else np.empty((0, 6))

        def cover(meta: dict[str, Any]) -> dict[str, Any]:
            meta["coverage"] = union([*meta.get("coverage", []), [lo, hi]], interval_ms(interval))
            return meta

        return self.store.merge("binance", symbol, interval, rows, cover)

    # --- files and samples --------------------------------------------------------------------

    def import_csv(
        self, symbol: str, interval: str, source: bytes | BinaryIO, name: str = "upload.csv"
    ) -> ImportReport:
        """Validate a whole CSV and add it to the "file" partition; a rejected file stores nothing.
        A file object is read only once it is this import's turn."""
        with self._imports:
            data = source if isinstance(source, bytes) else source.read()
            parsed = parse_klines_csv(data, interval, self.clock())
            with self.store.lock("file", symbol, interval):
                memo = file_memo(name, len(data), None)
                added = self.store.merge("file", symbol, interval, parsed.rows, memo)
        times = parsed.rows[:, 0].astype(np.int64)
        return ImportReport(
            symbol,
            interval,
            parsed.layout,
            len(times),
            added,
            int(times[0]),
            int(times[-1]),
            find_gaps(times, interval),
        )

    def ensure_samples(self) -> None:
        """Generate the offline sample candles and symbol filters once (cheap, deterministic)."""
        for symbol, profile in PROFILES.items():
            if not self.store.exists("sample", symbol, SAMPLE_INTERVAL):
                with self.store.lock("sample", symbol, SAMPLE_INTERVAL):
                    self.store.merge("sample", symbol, SAMPLE_INTERVAL, generate(profile), _label_sample)
        known = {row.symbol for row in storage.list_symbols(self.sessions)}
        missing = [f for f in SAMPLE_FILTERS if f.symbol not in known]
        if missing:
            storage.upsert_symbols(
                self.sessions,
                [_symbol_row(f, "sample") for f in missing],
                updated_at=_datetime_of(self.clock()),
            )

    # --- prices and symbols -------------------------------------------------------------------

    def price(self, symbol: str) -> PriceAnswer:
        if self.exchange is not None:
            try:
                return PriceAnswer(symbol, self.exchange.price(symbol), "binance", False, None)
            except ExchangeUnavailable:
                log.warning("Binance unreachable; pricing %s from stored candles", symbol)
        return self._last_close(symbol, stale=self.exchange is not None)

    def _last_close(self, symbol: str, stale: bool) -> PriceAnswer:
        """The most recent stored close of any series of the symbol (newest close time wins;
        on a tie the preferred source: Binance, then files, then sample)."""
        best: tuple[int, int, PriceAnswer] | None = None
        for rank, partition in enumerate(PARTITIONS):
            for interval in INTERVALS:
                if not self.store.exists(partition, symbol, interval):
                    continue
                candles = self.store.load(partition, symbol, interval)
                if not len(candles):
                    continue
                closes_at = next_open_time(int(candles.open_time[-1]), interval)
                source: DataSource = "cache" if partition == "binance" else partition
                answer = PriceAnswer(
                    symbol, float(candles.close[-1]), source, stale, int(candles.open_time[-1])
                )
                if best is None or (closes_at, -rank) > (best[0], best[1]):
                    best = (closes_at, -rank, answer)
        if best is not None:
            return best[2]
        if stale:
            raise DataUnavailable(
                f"No price for {symbol}: Binance is unreachable and no candles are stored.",
                details={"symbol": symbol},
            )
        raise NotFound(
            f"No price for {symbol}: offline mode and no candles are stored.",
            details={"symbol": symbol},
            code="no_data",
        )

    def symbols(self) -> SymbolsAnswer:
        if self.exchange is not None:
            try:
                with self._symbols_lock:
                    fresh = self._fetch_symbols(self.exchange)
                return SymbolsAnswer(fresh, "binance", False)
            except ExchangeUnavailable:
                log.warning("Binance unreachable; serving stored symbols")
        rows = storage.list_symbols(self.sessions)
        stored = [_filters_of(r) for r in rows]
        source: SymbolSource = "cache" if any(r.source == "binance" for r in rows) else "sample"
        return SymbolsAnswer(stored, source, self.exchange is not None)

    def symbol_filters(self, symbol: str) -> SymbolFilters | None:
        """The symbol's exchange rules: stored while fresh, else refreshed from Binance (see the
        module docstring). Never raises for an unreachable Binance; None means "not tradable here"
        (unknown to Binance, or unknown to the store while Binance cannot be asked)."""
        row = storage.get_symbol(self.sessions, symbol)
        exchange = self.exchange
        if exchange is None or self._is_fresh(row, self.clock()):
            return _filters_of(row) if row else None
        with self._symbols_lock:
            now = self.clock()
            row = storage.get_symbol(self.sessions, symbol)  # another thread may have refreshed it
            if self._is_fresh(row, now):
                return _filters_of(row) if row else None
            missed_at = self._symbol_missed_at.get(symbol)
            if missed_at is not None and 0 <= now - missed_at < SYMBOL_MISS_RETRY_MS:
                return None
            failed_at = self._symbols_failed_at
            if failed_at is not None and 0 <= now - failed_at < SYMBOL_FAILURE_RETRY_MS:
                return _filters_of(row) if row else None
            try:
                # python-binance's get_exchange_info takes no symbol (get_symbol_info downloads
                # the full list too), so this is one exchangeInfo call that refreshes every symbol.
                fresh = self._fetch_symbols(exchange)
            except NotFound:  # -1121: Binance does not know the symbol
                self._symbols_failed_at = None
                self._symbol_missed_at[symbol] = now
                return None
            except AppError as exc:
                if self._symbols_failed_at is None:  # once per outage, not once per call
                    log.warning(
                        "could not refresh the exchange rules of %s from Binance (%s); %s",
                        symbol,
                        exc.message,
                        "using the stored ones" if row else "it is not tradable until Binance answers",
                    )
                self._symbols_failed_at = now
                return _filters_of(row) if row else None
            found = next((f for f in fresh if f.symbol == symbol), None)
            if found is None:
                self._symbol_missed_at[symbol] = now
            return found

    def _fetch_symbols(self, exchange: Exchange) -> list[SymbolFilters]:
        """Every symbol's rules from the exchange, stored with the clock's time (caller holds the lock)."""
        fresh = exchange.symbols()
        now = self.clock()
        storage.upsert_symbols(
            self.sessions, [_symbol_row(f, "binance") for f in fresh], updated_at=_datetime_of(now)
        )
        self._symbols_failed_at = None
        listed = {f.symbol for f in fresh}
        for symbol in [s for s in self._symbol_missed_at if s in listed]:
            del self._symbol_missed_at[symbol]
        return fresh

    def _is_fresh(self, row: Any, now: int) -> bool:
        """A row fetched from Binance less than the maximum age ago (a row stamped in the future,
        by another clock, is not trusted to be fresh)."""
        if row is None or row.source != "binance":
            return False
        age = now - _epoch_ms(row.updated_at)
        return 0 <= age < self.symbol_max_age_ms


# --- helpers ---------------------------------------------------------------------------------------


def _label_sample(meta: dict[str, Any]) -> dict[str, Any]:
    meta["synthetic"] = "SAMPLE DATA: generated by utils/market_data/sample.py, not real market data"
    return meta


def _symbol_row(f: SymbolFilters, source: str) -> dict[str, Any]:
    return {
        "symbol": f.symbol,
        "status": f.status,
        "base_asset": f.base_asset,
        "quote_asset": f.quote_asset,
        "tick_size": f.tick_size,
        "step_size": f.step_size,
        "min_qty": f.min_qty,
        "max_qty": f.max_qty,
        "min_notional": f.min_notional,
        "source": source,
    }


def _datetime_of(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _epoch_ms(value: datetime) -> int:
    """Milliseconds since the epoch; a naive datetime (SQLite drops the offset) is UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return round(value.timestamp() * 1000)


def _filters_of(row: Any) -> SymbolFilters:
    return SymbolFilters(
        row.symbol,
        row.status,
        row.base_asset,
        row.quote_asset,
        row.tick_size,
        row.step_size,
        row.min_qty,
        row.max_qty,
        row.min_notional,
    )


def request_sync(
    market: MarketData,
    jobs: JobRunner,
    symbol: str,
    interval: str,
    start_ms: int,
    end_ms: int | None,
    inline_max: int,
) -> SyncReport | Job:
    """Sync at once when few candles are missing, else start a background job and return it."""
    if market.exchange is None:
        raise Conflict(
            "Offline mode (OFFLINE=true): Binance is never called, so nothing can be synced.", code="offline"
        )
    end = end_ms if end_ms is not None else market.clock()
    if start_ms > end:
        raise InvalidInput("start must not be after end.", details={"field": "start"})
    if market.estimate_missing(symbol, interval, start_ms, end) <= inline_max:
        return market.sync(symbol, interval, start_ms, end)
    return jobs.submit("sync", {"symbol": symbol, "interval": interval, "start": start_ms, "end": end})


def sync_job(market: MarketData) -> JobHandler:
    """The ``sync`` job handler: fetch the job's range into the store, resuming where it stopped."""

    def handle(params: dict[str, Any], report: Report) -> dict[str, Any]:
        symbol, interval = str(params["symbol"]), str(params["interval"])
        return _report_dict(market.sync(symbol, interval, int(params["start"]), int(params["end"]), report))

    return handle


def _report_dict(report: SyncReport) -> dict[str, Any]:
    return asdict(report)
