"""Candles: the one in-memory series type every layer passes around, and the local candle store."""

from __future__ import annotations

import copy
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from utils.crash import crash_point
from utils.files import write_atomic_with
from utils.intervals import interval_ms, next_open_time
from utils.recovery import Repair, swept

COLUMNS: tuple[str, ...] = ("open_time", "open", "high", "low", "close", "volume")


# Where candles come from: binance (fetched now), cache (stored from Binance), file (an imported CSV),
# sample (the synthetic generator, never real).
DataSource = Literal["binance", "cache", "file", "sample"]
# The store's folders: candles from Binance, from imported files, and the sample's.
Partition = Literal["binance", "file", "sample"]
PARTITIONS: tuple[Partition, ...] = get_args(Partition)  # also the order a local read prefers


@dataclass(frozen=True, slots=True)
class Candles:
    """Ascending, de-duplicated OHLCV candles of one symbol and interval.

    `open_time` is int64 milliseconds since the epoch (UTC); prices and volume are float64.
    `source` says where they came from: "binance", "cache", "file" or "sample".
    """

    symbol: str
    interval: str
    open_time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    source: DataSource = "cache"

    def __len__(self) -> int:
        return int(self.open_time.shape[0])

    def column(self, name: str) -> np.ndarray:
        """One column by name (a fixed set of names, never a user-chosen attribute)."""
        columns = {
            "open_time": self.open_time,
            "open": self.open,
            "high": self.high,
            "low": self.low,
            "close": self.close,
            "volume": self.volume,
        }
        return columns[name]

    def slice(self, start: int, stop: int) -> Candles:
        """Candles[start:stop] by position, sharing memory with this series."""
        return Candles(
            self.symbol,
            self.interval,
            self.open_time[start:stop],
            self.open[start:stop],
            self.high[start:stop],
            self.low[start:stop],
            self.close[start:stop],
            self.volume[start:stop],
            self.source,
        )

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({name: self.column(name) for name in COLUMNS})


# --- the candle store ------------------------------------------------------------------------------
#
# One Parquet file per (partition, symbol, interval) under DATA_DIR/store. Parquet because a
# backtest loads whole series at once: 1,000,000 candles read in tens of milliseconds, where the
# same rows through SQLAlchemy take seconds (bench/candle_store_bench.py measures both). Each file
# is rewritten whole through a temp file and an atomic rename, so a crash never leaves half a file.
# Partitions keep provenance apart: "binance" (fetched), "file" (imported CSVs) and "sample"
# (generated); they are never mixed in one series.

_SCHEMA = pa.schema(
    [
        ("open_time", pa.int64()),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.float64()),
    ]
)
_META_KEY = b"trading_backend"


def ohlcv_problems(values: np.ndarray) -> list[tuple[np.ndarray, str]]:
    """The rules every stored candle keeps, whatever it came from (a CSV, Binance): for (n, 5)
    open/high/low/close/volume rows, each rule's mask of the rows that break it, and its reason."""
    finite = np.isfinite(values).all(axis=1)
    with np.errstate(invalid="ignore"):
        o, h, low, c, v = np.where(finite[:, None], values, 1.0).T  # non-finite rows fail the first rule only
        return [
            (~finite, "open, high, low, close and volume must be finite numbers."),
            (low <= 0, "prices must be positive."),
            (v < 0, "volume must not be negative."),
            (h < np.maximum(o, c), "high is below open or close."),
            (np.minimum(o, c) < low, "low is above open or close."),
        ]


DEFAULT_CACHE_BYTES = 256 * 1024 * 1024  # decoded candles kept in memory (about 5M candles)


@dataclass(frozen=True, slots=True)
class Gap:
    """Candles missing between two stored ones: `after` and `before` are the neighbours' open times."""

    after: int
    before: int
    missing: int


class CandleStore:
    """Reads and merges candle series; thread-safe within one process."""

    def __init__(self, root: Path, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.root = root
        self._locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        # Decoded series, most recently read last, each valid while its file (inode, mtime, size) is
        # the same: a read of a 200,000-row file then costs no decompression. Any writer (this process
        # or another) replaces the file through a rename, which changes them.
        self._cache: OrderedDict[Path, tuple[tuple[int, int, int], pa.Table, dict[str, Any]]] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._cache_lock = threading.Lock()

    def path(self, partition: Partition, symbol: str, interval: str) -> Path:
        if partition not in PARTITIONS:
            raise ValueError(f"unknown partition {partition!r}")
        # Symbols and intervals are validated against fixed patterns before they get here; the
        # month interval "1M" gets its own name so it cannot collide with "1m" on
        # case-insensitive filesystems.
        name = "1mo" if interval == "1M" else interval
        return self.root / partition / symbol / f"{name}.parquet"

    def lock(self, partition: Partition, symbol: str, interval: str) -> threading.Lock:
        key = (partition, symbol, interval)
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def exists(self, partition: Partition, symbol: str, interval: str) -> bool:
        return self.path(partition, symbol, interval).exists()

    def load(
        self,
        partition: Partition,
        symbol: str,
        interval: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> Candles:
        """Stored candles with start_ms <= open_time <= end_ms (empty if none): read-only views of the
        cached columns (copy one to change it)."""
        table, _ = self._read(partition, symbol, interval)
        open_time = table.column("open_time").to_numpy()
        lo = 0 if start_ms is None else int(np.searchsorted(open_time, start_ms, side="left"))
        hi = len(open_time) if end_ms is None else int(np.searchsorted(open_time, end_ms, side="right"))
        table = table.slice(lo, hi - lo)
        return Candles(
            symbol,
            interval,
            table.column("open_time").to_numpy(),
            table.column("open").to_numpy(),
            table.column("high").to_numpy(),
            table.column("low").to_numpy(),
            table.column("close").to_numpy(),
            table.column("volume").to_numpy(),
            source=partition,
        )

    def last_open_time(self, partition: Partition, symbol: str, interval: str) -> int | None:
        """The newest stored candle's open time (None when nothing is stored); reads one column."""
        path = self.path(partition, symbol, interval)
        if not path.exists():
            return None
        times = pq.read_table(path, columns=["open_time"]).column("open_time")
        return int(times[len(times) - 1].as_py()) if len(times) else None

    def meta(self, partition: Partition, symbol: str, interval: str) -> dict[str, Any]:
        return self._read(partition, symbol, interval)[1]

    def merge(
        self,
        partition: Partition,
        symbol: str,
        interval: str,
        rows: np.ndarray,
        meta_update: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> int:
        """Add (n, 6) rows; on equal open times the new row wins. Returns how many candles are new.

        Callers that read-modify-write metadata hold `lock(...)` around their read and this call.
        """
        table, meta = self._read(partition, symbol, interval)
        old = np.column_stack([table.column(name).to_numpy() for name in COLUMNS]) if table.num_rows else None
        combined = rows if old is None else np.concatenate([old, rows.astype(np.float64, copy=False)])
        # Stable sort keeps arrival order among equal times; keeping the last of each run lets the
        # newer row win.
        order = np.argsort(combined[:, 0], kind="stable")
        combined = combined[order]
        times = combined[:, 0]
        keep = np.ones(len(times), dtype=bool)
        keep[:-1] = times[1:] != times[:-1]
        combined = combined[keep]
        added = len(combined) - (0 if old is None else len(old))
        new_meta = meta_update(dict(meta)) if meta_update else meta
        self._write(partition, symbol, interval, combined, new_meta)
        return added

    def _read(self, partition: Partition, symbol: str, interval: str) -> tuple[pa.Table, dict[str, Any]]:
        path = self.path(partition, symbol, interval)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return _SCHEMA.empty_table(), {}
        version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)  # every write is a new file (a rename)
        with self._cache_lock:
            hit = self._cache.get(path)
            if hit is not None and hit[0] == version:
                self._cache.move_to_end(path)
                return hit[1], copy.deepcopy(hit[2])  # callers may edit the metadata they get
        # One chunk per column: every later load hands out views of the cached columns (read-only numpy
        # arrays, shared by every reader) instead of concatenating the file's row groups again.
        table = pq.read_table(path).combine_chunks()
        raw = (table.schema.metadata or {}).get(_META_KEY)
        meta = json.loads(raw) if raw else {}
        with self._cache_lock:
            self._cache[path] = (version, table, meta)
            self._cache.move_to_end(path)
            while (
                len(self._cache) > 1 and sum(t.nbytes for _, t, _ in self._cache.values()) > self._cache_bytes
            ):
                self._cache.popitem(last=False)
        return table, copy.deepcopy(meta)

    def _write(
        self, partition: Partition, symbol: str, interval: str, rows: np.ndarray, meta: dict[str, Any]
    ) -> None:
        path = self.path(partition, symbol, interval)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = [pa.array(rows[:, 0].astype(np.int64))] + [pa.array(rows[:, i]) for i in range(1, 6)]
        schema = _SCHEMA.with_metadata({_META_KEY: json.dumps(meta).encode()})
        table = pa.Table.from_arrays(arrays, schema=schema)
        with self._cache_lock:
            self._cache.pop(path, None)
        def write(handle: Any) -> None:
            pq.write_table(table, handle, compression="zstd")
            crash_point("candles_temp_written")

        write_atomic_with(path, write)

    def reconcile(self) -> list[Repair]:
        """Remove the temp files of writers killed mid-write (an import, a sync); the files they were
        replacing are intact, since a candle file is only ever replaced by a rename."""
        return swept(self.root)


def find_gaps(open_time: np.ndarray, interval: str) -> list[Gap]:
    """Holes in an ascending series: reported as they are, never filled."""
    if len(open_time) < 2:
        return []
    if interval == "1M":
        expected = np.array([next_open_time(int(t), interval) for t in open_time[:-1]], dtype=np.int64)
        idx = np.nonzero(open_time[1:] != expected)[0]
        pairs = [(int(open_time[i]), int(open_time[i + 1])) for i in idx]
        return [Gap(a, b, _months_between(a, b)) for a, b in pairs]
    step = interval_ms(interval)
    diffs = np.diff(open_time)
    idx = np.nonzero(diffs != step)[0]
    return [Gap(int(open_time[i]), int(open_time[i + 1]), int(diffs[i] // step) - 1) for i in idx]


def _months_between(a_ms: int, b_ms: int) -> int:
    count, t = 0, next_open_time(a_ms, "1M")
    while t < b_ms:
        count, t = count + 1, next_open_time(t, "1M")
    return count
