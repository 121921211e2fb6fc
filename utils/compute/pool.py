"""The local backend: a pool of spawned processes of this machine (`LocalCompute`), and the allocator
settings its workers (and a cluster's, through the README) run with."""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import pickle
import queue
import shutil
import sys
import tempfile
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utils.compute.base import (
    _KEEP_SHARED,
    ComputeStatus,
    Progress,
    R,
    S,
    ShouldStop,
    T,
    _guided_chunks,
    _next_finished,
    _run_items,
    _task_name,
)
from utils.errors import ComputeUnavailable

log = logging.getLogger(__name__)

# A local pool lost to a dying worker is replaced and the unfinished items rerun at most this many times
# per map call: an item that kills its worker every time (a crash in native code, the OOM killer) must end
# the call with an error, not loop for ever.
_MAX_POOL_LOSSES = 3

# glibc's allocator in the worker processes this module starts. A backtest of 1,000,000 bars allocates and
# frees dozens of 8 MB arrays; by default such blocks come from fresh mappings (or a heap trimmed back) and
# every page faults in again, a third of the task's time on a small VM (bench/research_bench.py). Kept in
# the heap (blocks up to 32 MB, up to 256 MB of free memory held per process), they are reused instead. The
# README gives Dask workers the same settings as environment variables.
ALLOCATOR_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024),
    "MALLOC_TRIM_THRESHOLD_": str(256 * 1024 * 1024),
}
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)


def tune_allocator() -> None:
    """The local pool's worker initializer: ALLOCATOR_ENV's settings, set through mallopt (glibc only)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # another C library (musl): its allocator keeps its defaults
        return
    libc.mallopt(_M_MMAP_THRESHOLD, int(ALLOCATOR_ENV["MALLOC_MMAP_THRESHOLD_"]))
    libc.mallopt(_M_TRIM_THRESHOLD, int(ALLOCATOR_ENV["MALLOC_TRIM_THRESHOLD_"]))


# In a local worker process: the shared data of the map calls it served lately, by call token, with the
# file each came from (a file that is gone means its call ended, and its data can go too).
_LOADED: OrderedDict[str, tuple[Path, Any]] = OrderedDict()
_LOADED_MAX = 2  # two calls running at once (two jobs) must not reload each other's data per task


def _shared_of(token: str, path: Path) -> Any:
    if token in _LOADED:
        return _LOADED[token][1]
    for old in [t for t, (p, _) in _LOADED.items() if not p.exists()]:
        del _LOADED[old]
    while len(_LOADED) >= _LOADED_MAX:
        _LOADED.popitem(last=False)
    with path.open("rb") as file:
        value = pickle.load(file)  # written by this app's own process for this call, in a 0700 folder
    _LOADED[token] = (path, value)
    return value


def _local_chunk(fn: Callable[[Any, Any], Any], token: str, path: Path, items: list[Any]) -> list[Any]:
    return _run_items(fn, _shared_of(token, path), items)


@dataclass(eq=False)  # identity: list.remove must not compare the shared objects (numpy arrays inside)
class _Published:
    """One shared object written for the workers: its file, and the map calls reading it right now."""

    shared: object
    token: str
    path: Path
    users: int = 0
    evicted: bool = False


class LocalCompute:
    """`workers` processes of this machine, spawned on the first `map` and kept for the app's life.

    Spawned, never forked: the server process runs threads (the event loop, jobs, watchers), and a fork
    copies their locks in whatever state they are. A spawned worker costs about a second to start
    (imports), which is why the pool outlives each call. Shared data is pickled once per call into a
    private temp folder and loaded by each worker process on its first task of that call.
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError("a local pool needs at least one worker")
        self._workers = workers
        self._lock = threading.Lock()  # map calls of several threads (jobs, requests) share one pool
        self._pool: ProcessPoolExecutor | None = None
        self._folder: Path | None = None
        self._published: list[_Published] = []  # most recent last
        self._closed = False

    @property
    def name(self) -> str:
        return "local"

    @property
    def workers(self) -> int:
        return self._workers

    def status(self) -> ComputeStatus:
        return ComputeStatus("local", None, True, self._workers, self._workers, None)

    def map(
        self,
        fn: Callable[[S, T], R],
        items: Sequence[T],
        shared: S,
        *,
        progress: Progress | None = None,
        should_stop: ShouldStop | None = None,
    ) -> list[R]:
        items = list(items)
        if not items:
            return []
        published = self._publish(shared)
        token, path = published.token, published.path
        results: dict[int, R] = {}
        try:
            for _ in range(_MAX_POOL_LOSSES + 1):
                pool = self._current_pool()
                todo = [i for i in range(len(items)) if i not in results]
                if not self._round(pool, fn, token, path, items, todo, results, progress, should_stop):
                    return [results[i] for i in range(len(items))]
                self._discard(pool)
                log.warning(
                    "a local compute worker died; rerunning %d unfinished task(s) of %s on a new pool",
                    len(items) - len(results),
                    _task_name(fn),
                )
            raise ComputeUnavailable(
                f"Local worker processes died {_MAX_POOL_LOSSES + 1} times running this work "
                f"({len(items) - len(results)} task(s) unfinished); a task may exhaust memory or crash.",
                code="compute_unavailable",
            )
        finally:
            self._unpublish(published)

    def _publish(self, shared: object) -> _Published:
        """The file the workers load `shared` from: the one written for this very object lately, or new."""
        with self._lock:
            for entry in self._published:
                if entry.shared is shared:
                    entry.users += 1
                    self._published.remove(entry)
                    self._published.append(entry)
                    return entry
        token = uuid.uuid4().hex
        path = self._shared_folder() / f"{token}.pickle"
        with path.open("wb") as file:
            pickle.dump(shared, file, protocol=5)
        entry = _Published(shared, token, path, users=1)
        with self._lock:
            self._published.append(entry)
            while len(self._published) > _KEEP_SHARED:
                old = self._published.pop(0)
                old.evicted = True
                if old.users == 0:
                    old.path.unlink(missing_ok=True)
        return entry

    def _unpublish(self, entry: _Published) -> None:
        with self._lock:
            entry.users -= 1
            if entry.evicted and entry.users == 0:
                # Gone from disk: a worker drops its copy when it next loads another call's data.
                entry.path.unlink(missing_ok=True)

    def _round(
        self,
        pool: ProcessPoolExecutor,
        fn: Callable[[S, T], R],
        token: str,
        path: Path,
        items: list[T],
        todo: list[int],
        results: dict[int, R],
        progress: Progress | None,
        should_stop: ShouldStop | None,
    ) -> bool:
        """Run `todo` on `pool` into `results`; True when the pool broke (a worker died) before the end."""
        # Finished futures arrive through a queue (O(1) each), not by waiting on every pending one again
        # after each result: on a 2-core machine the parent's CPU is taken from the workers.
        finished: queue.SimpleQueue[Future[list[R]]] = queue.SimpleQueue()
        futures: dict[Future[list[R]], list[int]] = {}  # each task's item indices
        try:
            # Several items per task (`_guided_chunks`), all submitted at once: the pool hands the next to
            # whichever worker is free, largest first. One task per item cost this process 0.14 to 0.26 s
            # of CPU per 256-item sweep here (pickling each call, its result, the pool's feeder thread),
            # taken from the two workers of a 2-core machine.
            for start, stop in _guided_chunks(len(todo), self._workers):
                indices = todo[start:stop]
                future = pool.submit(_local_chunk, fn, token, path, [items[i] for i in indices])
                futures[future] = indices
                future.add_done_callback(finished.put)
        except BrokenProcessPool:  # another call's worker died a moment ago
            self._settle(futures, results, progress, len(items))
            return True
        pending = set(futures)
        try:
            while pending:
                future = _next_finished(finished, should_stop)
                pending.discard(future)
                if _harvest({future: futures[future]}, results, progress, len(items)):
                    # Every other task of a broken pool fails at once: keep those that finished first.
                    self._settle({f: futures[f] for f in pending}, results, progress, len(items))
                    return True
            return False
        except BaseException:
            # A running task cannot be cancelled: stop its process rather than keep a worker busy with
            # work nobody waits for (a long walk-forward window, a large task); the next call spawns anew.
            # Then nothing is cancelled first: the broken pool fails every outstanding future itself, and
            # CPython 3.11's pool raises InvalidStateError in its own thread on one already cancelled.
            if any(future.running() for future in pending):
                self._discard(pool, kill=True)
            elif not all(future.cancel() or future.done() for future in pending):
                self._discard(pool, kill=True)  # one started meanwhile
            raise

    @staticmethod
    def _settle(
        futures: dict[Future[list[R]], list[int]],
        results: dict[int, R],
        progress: Progress | None,
        total: int,
    ) -> None:
        """A broken pool's futures: wait until each has its answer, keep the results among them."""
        wait(futures, timeout=10)
        _harvest(futures, results, progress, total)

    def _current_pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise ComputeUnavailable("The compute backend is shut down.", code="compute_unavailable")
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=self._workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=tune_allocator,
                )
            return self._pool

    def _discard(self, pool: ProcessPoolExecutor, *, kill: bool = False) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        if kill:
            # ProcessPoolExecutor has no public way to stop running tasks before Python 3.14's
            # kill_workers(); its process table is the documented-in-typeshed attribute it keeps them in.
            for process in list((pool._processes or {}).values()):
                process.kill()
        pool.shutdown(wait=True, cancel_futures=True)

    def _shared_folder(self) -> Path:
        with self._lock:
            if self._folder is None:
                # Private to this process (mkdtemp is 0700): the pickles are loaded by our workers only.
                self._folder = Path(tempfile.mkdtemp(prefix="compute-"))
            return self._folder

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
            folder, self._folder = self._folder, None
            self._published = []
        if pool is not None:
            for process in list((pool._processes or {}).values()):
                process.kill()
            pool.shutdown(wait=True, cancel_futures=True)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def _harvest(
    futures: dict[Future[list[R]], list[int]],
    results: dict[int, R],
    progress: Progress | None,
    total: int,
) -> bool:
    """Move finished tasks' results into `results` (by item index); True when one failed because its pool
    broke. Any other exception is fn's own and is raised (the first one met)."""
    broken = False
    for future, indices in sorted(futures.items(), key=lambda pair: pair[1][0]):
        if not future.done() or future.cancelled():
            continue
        error = future.exception()
        if isinstance(error, BrokenProcessPool):
            broken = True
        elif error is not None:
            raise error
        else:
            results.update(zip(indices, future.result(), strict=True))
            if progress is not None:
                progress(len(results), total)
    return broken
