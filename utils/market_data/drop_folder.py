"""The CSV drop folder (DATA_DIR): files named like `BTCUSDT-1h.csv` go into the "file" partition.

Rules:
- The folder is scanned when the app starts, and again whenever it changes (`DropFolderWatcher`,
  a watchfiles thread, plus a slow safety rescan); reading candles never lists or parses it.
- A file is parsed once per fingerprint (size and modification time): an accepted file is
  remembered in the store's metadata (so it is not parsed again after a restart either), a rejected
  one in memory, logged once and listed by `status()` (for GET /api/health) with only its name,
  size and reason. A file that changes is tried again, once.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watchfiles import Change, watch

from utils.errors import InvalidInput
from utils.exchange import Clock
from utils.market_data.candles import CandleStore
from utils.market_data.csv_import import parse_file_name, parse_klines_csv

log = logging.getLogger(__name__)

RESCAN_SECONDS = 60.0  # the watcher also rescans this often, for changes no event reported
STOP_SECONDS = 1.0  # how long stop() waits for the watcher thread
_QUIET_MS = 200  # a batch of changes is handled once the folder has been quiet this long...
_DEBOUNCE_MS = 2_000  # ...or after this long, whichever comes first


@dataclass(frozen=True, slots=True)
class RejectedFile:
    name: str  # the file's name inside DATA_DIR, never a path
    reason: str
    size_bytes: int


@dataclass(frozen=True, slots=True)
class DropFolderStatus:
    accepted: int  # files in the folder whose current content is in the file store
    rejected: tuple[RejectedFile, ...]


@dataclass(frozen=True, slots=True)
class _Seen:
    fingerprint: str
    size: int
    reason: str | None  # None: accepted


class DropFolder:
    """Imports the drop folder's CSV files into the store; `scan()` is the only thing that reads it."""

    def __init__(self, data_dir: Path, store: CandleStore, clock: Clock) -> None:
        self.data_dir = data_dir
        self.store = store
        self.clock = clock
        self.scans = 0  # folder listings, for tests and diagnostics
        self.parses = 0  # files read and parsed
        self.watcher = DropFolderWatcher(self)
        self._scan_lock = threading.Lock()  # one scan at a time (start-up, watcher)
        self._scanned = threading.Condition()  # notified after every scan, for wait_for
        self._seen: dict[str, _Seen] = {}  # replaced whole, never mutated: readers need no lock
        self._list_failed = False

    def start(self, *, watch: bool = True) -> None:
        """Start-up: watch the folder (if asked), then import what is already in it."""
        if watch:
            self.watcher.start()
        self.scan()

    def stop(self) -> None:
        self.watcher.stop()

    def status(self) -> DropFolderStatus:
        seen = self._seen
        rejected = tuple(
            RejectedFile(name, s.reason, s.size) for name, s in sorted(seen.items()) if s.reason is not None
        )
        return DropFolderStatus(sum(s.reason is None for s in seen.values()), rejected)

    def wait_for(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Block until `condition()` (about this folder's state) holds after a scan, or `timeout` s pass;
        whether it holds. For callers that must know a change was picked up (tests, diagnostics)."""
        with self._scanned:
            return self._scanned.wait_for(condition, timeout)

    def scan(self, stop: threading.Event | None = None) -> None:
        """Import every new or changed `SYMBOL-interval*.csv` file; forget the ones that are gone."""
        try:
            self._scan(stop)
        finally:
            with self._scanned:
                self._scanned.notify_all()

    def _scan(self, stop: threading.Event | None) -> None:
        with self._scan_lock:
            self.scans += 1
            try:
                entries = sorted(
                    (entry.name, entry.stat())
                    for entry in os.scandir(self.data_dir)
                    if parse_file_name(entry.name) is not None and entry.is_file()
                )
            except FileNotFoundError:
                entries = []
            except OSError as exc:
                if not self._list_failed:  # once until it can be listed again
                    log.error("cannot list the CSV drop folder DATA_DIR: %s", exc.strerror)
                self._list_failed = True
                return
            self._list_failed = False
            old, seen = self._seen, dict[str, _Seen]()
            stored: dict[tuple[str, str], dict[str, Any]] = {}  # accepted fingerprints, per series
            for name, stat in entries:
                if stop is not None and stop.is_set():
                    seen.update((n, s) for n, s in old.items() if n not in seen)  # keep the rest
                    break
                fingerprint = _fingerprint(stat.st_size, stat.st_mtime_ns)
                known = old.get(name)
                if known is not None and known.fingerprint == fingerprint:
                    seen[name] = known
                    continue
                symbol, interval = parse_file_name(name) or ("", "")
                if (symbol, interval) not in stored:
                    stored[symbol, interval] = self.store.meta("file", symbol, interval).get("files", {})
                if stored[symbol, interval].get(name) == fingerprint:  # imported by an earlier run
                    seen[name] = _Seen(fingerprint, stat.st_size, None)
                    continue
                reason = self._import(name, symbol, interval, stat.st_size, stat.st_mtime_ns)
                seen[name] = _Seen(fingerprint, stat.st_size, reason)
            self._seen = seen

    def _import(self, name: str, symbol: str, interval: str, size: int, mtime_ns: int) -> str | None:
        """Parse and store one file; the reason it was rejected, or None. Logs either way, once."""
        self.parses += 1
        try:
            with self.store.lock("file", symbol, interval):
                data = (self.data_dir / name).read_bytes()
                parsed = parse_klines_csv(data, interval, self.clock())
                self.store.merge("file", symbol, interval, parsed.rows, file_memo(name, size, mtime_ns))
        except InvalidInput as exc:
            reason = exc.message
        except OSError as exc:  # the message, never the path
            reason = f"the file could not be read ({exc.strerror or type(exc).__name__})."
        except Exception:
            log.exception("could not import %s from the CSV drop folder", name)
            return "the file could not be imported (an unexpected error; the server log has the details)."
        else:
            log.info("imported %s into the file store", name)
            return None
        log.error("skipped %s: %s", name, reason)
        return reason


class DropFolderWatcher:
    """A thread that rescans the drop folder when it changes (watchfiles), stopped within a second."""

    def __init__(self, folder: DropFolder, *, rescan_seconds: float = RESCAN_SECONDS) -> None:
        self.folder = folder
        self.rescan_seconds = rescan_seconds
        self.batches = 0  # change batches (and timed rescans) handled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="drop-folder-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = STOP_SECONDS) -> bool:
        """Stop watching; False if the thread is still busy with a file after `timeout` seconds
        (it stops before the next file; a daemon thread, so it never holds the process up)."""
        self._stop.set()
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        if thread.is_alive():
            log.warning("the CSV drop folder watcher is still importing a file; it stops after that file")
            return False
        self._thread = None
        return True

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self.folder.data_dir.mkdir(parents=True, exist_ok=True)
                for _changes in watch(
                    self.folder.data_dir,
                    watch_filter=_is_drop_file,
                    debounce=_DEBOUNCE_MS,
                    step=_QUIET_MS,
                    stop_event=self._stop,
                    rust_timeout=max(1, round(self.rescan_seconds * 1000)),
                    yield_on_timeout=True,
                    recursive=False,
                    raise_interrupt=False,
                ):
                    self.folder.scan(stop=self._stop)
                    self.batches += 1
                    failures = 0
            except Exception as exc:
                if failures == 0:  # once per outage, not once per retry
                    log.error("cannot watch the CSV drop folder DATA_DIR (%s); retrying", type(exc).__name__)
                failures += 1
                self._stop.wait(min(30.0, 2.0**failures))


def _is_drop_file(_change: Change, path: str) -> bool:
    return parse_file_name(os.path.basename(path)) is not None


def _fingerprint(size: int, mtime_ns: int | None) -> str:
    return f"{size}:{mtime_ns}"


def file_memo(name: str, size: int, mtime_ns: int | None) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The store-metadata update that remembers an imported file (uploads have no mtime)."""

    def remember(meta: dict[str, Any]) -> dict[str, Any]:
        meta.setdefault("files", {})[name] = _fingerprint(size, mtime_ns)
        return meta

    return remember
