"""The Dask backend: a client of a distributed cluster (`DaskCompute`), and the cluster settings the README
gives its scheduler and workers (`CLUSTER_ENV`)."""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    import distributed

log = logging.getLogger(__name__)

# A task the cluster cancels because its shared data was lost is submitted again at most this many times (a
# cluster that keeps losing workers ends the call with compute_unavailable instead of looping for ever).
_MAX_RESUBMITS = 3
# How long data waits for a worker to take it: a cluster whose workers restart (a nanny after a crash) has
# none for a few seconds, longer on a loaded machine.
_WORKER_WAIT_S = 60.0
_CONNECT_TIMEOUT_S = 5.0  # a scheduler that does not answer by then is reported (a 503), not waited for
_STATUS_RETRY_S = 10.0  # how often a status read may start a connection attempt in the background

# The Dask cluster's environment the README gives its scheduler and workers (and tests and benches use).
# - No active memory manager: its ReduceReplicas policy trims a broadcast to one copy whenever no task waits
#   on it (Dask's scatter documentation says broadcast needs it off), so each batch of an optimiser over
#   the same candles would move them between workers and unpickle them again, and a dead worker could take
#   the only copy along.
# - Fewer diagnostics: the worker's statistical profiler (a stack sample of the running task every 10 ms,
#   for the dashboard), the event-loop tick check every 20 ms and the system monitor every 500 ms cost an
#   idle two-worker cluster 14% of a core here, 3.6% with these; on a machine whose cores all run workers
#   that comes out of the work. The memory monitor, which stops a runaway worker, keeps its pace.
CLUSTER_ENV = {
    "DASK_DISTRIBUTED__SCHEDULER__ACTIVE_MEMORY_MANAGER__START": "False",
    "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False",
    "DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL": "1s",
    "DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL": "2s",
}


def _dask_chunk(fn: Callable[[Any, Any], Any], items: list[Any], *, shared: Any) -> list[Any]:
    # Dask hands a task its scattered argument as the object the worker holds: no copy per task.
    return _run_items(fn, shared, items)


class DaskCompute:
    """A Dask distributed cluster, through a client connected on first use (and again after it closed).

    Per `map` call the shared data is scattered to every worker (broadcast: a worker that dies leaves the
    others their copy, so its tasks can run on them), the items run as independent futures of a few items
    each (`_guided_chunks`), submitted as earlier ones finish, and results are fetched as they finish. A
    worker that dies mid-task is the scheduler's business: it reruns the task elsewhere (up to its
    allowed-failures, 3 by default).
    The shared data can still be lost with it: every worker can die at once, and a scheduler whose active
    memory manager runs (Dask's default; `CLUSTER_ENV` and the README turn it off) drops the extra
    replicas of a broadcast whenever no task waits on it, between two calls of an optimiser and at the end
    of each, so a worker that held the last copy takes it along. The scheduler then cancels the tasks
    that needed it ("lost dependencies"); those are submitted again with the data scattered afresh from
    this process, at most `_MAX_RESUBMITS` times per task.
    An exception of `fn` is not retried (retries=0): it is the task's deterministic answer, and it
    propagates as on the local pool.
    """

    def __init__(
        self,
        address: str,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        direct_to_workers: bool = True,
    ) -> None:
        self._address = address
        # Straight to the workers, a sweep's 48 MB of candles reach both of two workers in 40-60 ms here;
        # relayed by the scheduler (Dask's default for a client outside the cluster) 60-200 ms, with the
        # scheduler's CPU (0.1 s a sweep) taken from the workers on a small machine.
        self._direct = direct_to_workers
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._error: str | None = None  # the last failed connection's reason (cleared on success)
        self._status_lock = threading.Lock()  # never held across the network, unlike `_lock`
        self._connecting = False
        self._attempted_at: float | None = None
        self._client: distributed.Client | None = None
        self._scattered: list[tuple[object, distributed.Future[Any]]] = []  # most recent last
        self._closed = False

    @property
    def name(self) -> str:
        return "dask"

    @property
    def address(self) -> str:
        return self._address

    @property
    def workers(self) -> int:
        """Threads over the connected workers; at least 1 (tasks wait for a worker to join)."""
        threads: dict[str, int] = self._connect().nthreads()
        return max(1, sum(threads.values()))

    def _connect(self) -> distributed.Client:
        with self._lock:
            if self._closed:
                raise ComputeUnavailable("The compute backend is shut down.", code="compute_unavailable")
            if self._client is not None and self._client.status in ("running", "connecting"):
                return self._client
            from distributed import Client  # the extra: imported only when a scheduler is configured

            self._attempted_at = self._monotonic()
            try:
                self._client = Client(
                    self._address,
                    timeout=_CONNECT_TIMEOUT_S,
                    set_as_default=False,
                    direct_to_workers=self._direct,
                )
            except (OSError, TimeoutError) as exc:
                self._error = f"{type(exc).__name__}: {exc}"[:300]
                raise ComputeUnavailable(
                    f"The Dask scheduler at {self._address} (COMPUTE_SCHEDULER) could not be reached: {exc}",
                    code="compute_unavailable",
                ) from None
            self._error = None
            return self._client

    def status(self) -> ComputeStatus:
        """Never waits on the network. Connected, the counts are the client's cached copy of the
        scheduler's identity, which distributed refreshes itself every couple of seconds
        (``scheduler-info-interval``); ``scheduler_info()`` on a synchronous client would ask the
        scheduler instead. Not connected, one attempt starts in the background (at most every
        `_STATUS_RETRY_S`), so a cluster that comes up after the app shows up without a job."""
        client = self._client
        if client is not None and client.status == "running":
            info = getattr(client, "_scheduler_identity", None) or {}
            workers, threads = info.get("n_workers"), info.get("total_threads")
            return ComputeStatus(
                "dask",
                self._address,
                True,
                workers if isinstance(workers, int) else None,
                threads if isinstance(threads, int) else None,
                None,
            )
        self._connect_soon()
        return ComputeStatus("dask", self._address, False, None, None, self._error)

    def _connect_soon(self) -> None:
        with self._status_lock:
            recent = (
                self._attempted_at is not None and self._monotonic() - self._attempted_at < _STATUS_RETRY_S
            )
            if self._connecting or self._closed or recent:
                return
            self._connecting = True
            self._attempted_at = self._monotonic()

        def attempt() -> None:
            try:
                with contextlib.suppress(ComputeUnavailable):
                    self._connect()
            finally:
                with self._status_lock:
                    self._connecting = False

        threading.Thread(target=attempt, name="dask-connect", daemon=True).start()

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
        from distributed.client import FutureCancelledError

        client = self._connect()
        token = uuid.uuid4().hex
        shared_future = self._scatter(client, shared)  # waits for a first worker, if none has joined yet
        workers = self.workers
        name = _task_name(fn)
        pending = collections.deque(_guided_chunks(len(items), workers))
        stop_of = dict(pending)
        chunk = functools.partial(_dask_chunk, fn)
        futures: list[distributed.Future[list[R]]] = []
        start_of: dict[Hashable, int] = {}  # by task key
        input_of: dict[Hashable, distributed.Future[Any]] = {}  # the scattered data each task read
        finished: queue.SimpleQueue[distributed.Future[list[R]]] = queue.SimpleQueue()

        def submit(start: int, key: str) -> None:
            future: distributed.Future[list[R]] = client.submit(
                chunk,
                items[start : stop_of[start]],
                shared=shared_future,
                key=key,
                pure=False,
                retries=0,
            )
            start_of[future.key] = start
            input_of[future.key] = shared_future
            futures.append(future)
            future.add_done_callback(finished.put)  # called on a client thread: the queue hands it over

        running = [0]  # first submissions out and not yet finished (resubmissions take their place)

        def top_up() -> None:
            # The window follows the cluster's threads as the client last heard of them (refreshed by
            # distributed every few seconds, no round trip), so workers that join mid-call get work.
            info = getattr(client, "_scheduler_identity", None) or {}
            threads = info.get("total_threads")
            window = 2 * max(workers, threads if isinstance(threads, int) else 0)
            while pending and running[0] < window:
                start, _ = pending.popleft()
                submit(start, f"{name}-{token}-{start}")
                running[0] += 1

        # Tasks go out as earlier ones finish, two per worker thread at a time (one running, one waiting
        # on the worker, so it never idles for a round trip), in order. Handed all at once, the scheduler
        # places every task at submission, by duration estimates these tasks of different sizes defeat,
        # and a worker could be left with a large one at the end while the other idles (up to 0.7 s of a
        # 3.6 s sweep on two workers here).
        resubmits: dict[int, int] = {}
        results: dict[int, R] = {}
        try:
            top_up()
            while len(results) < len(items):
                future = _next_finished(finished, should_stop)
                start = start_of[future.key]
                chunk_results: list[R] | None = None
                if not future.cancelled():
                    # A finished task's result can still be lost with its worker and be impossible to rebuild
                    # (its input went too): result() then raises as for a cancelled one.
                    with contextlib.suppress(FutureCancelledError):
                        chunk_results = future.result()  # fn's exception is raised here
                if chunk_results is None:
                    tries = resubmits.get(start, 0) + 1
                    if client.status != "running" or tries > _MAX_RESUBMITS:
                        raise ComputeUnavailable(
                            f"The Dask cluster at {self._address} dropped a task ({future.key}); "
                            "the scheduler may have restarted or the connection was lost.",
                            code="compute_unavailable",
                        )
                    resubmits[start] = tries
                    log.warning(
                        "the Dask cluster at %s dropped task %s (its shared data was lost with a worker); "
                        "submitting it again (%d of %d)",
                        self._address,
                        future.key,
                        tries,
                        _MAX_RESUBMITS,
                    )
                    if input_of[future.key] is shared_future:  # once per loss, not once per cancelled task
                        shared_future = self._scatter(client, shared, fresh=True)
                    submit(start, f"{name}-{token}-{start}-again-{tries}")
                    continue
                running[0] -= 1
                top_up()
                for offset, result in enumerate(chunk_results):
                    results[start + offset] = result
                if progress is not None:
                    progress(len(results), len(items))
            return [results[i] for i in range(len(items))]
        finally:
            # Results are released on the cluster and unfinished tasks stop (a running one ends on its
            # worker, its result dropped). Cleaning up must not hide why the call ended (a lost client).
            try:
                client.cancel([f for f in futures if not f.done()])
                for future in futures:
                    future.release()
            except Exception as exc:  # the original exception, if any, matters more
                log.warning("releasing a compute call's tasks on %s failed: %s", self._address, exc)

    def _scatter(
        self, client: distributed.Client, shared: object, *, fresh: bool = False
    ) -> distributed.Future[Any]:
        """`shared` on every worker: the future scattered for this very object lately, or a new one (always
        a new one when `fresh`: the cluster lost the last copy, though the client may not know it yet)."""
        with self._lock:
            for entry in self._scattered:
                obj, future = entry
                if obj is shared and future.client is client and future.status == "finished" and not fresh:
                    self._scattered.remove(entry)
                    self._scattered.append(entry)
                    return future
        # In a list of one: scatter would split a list or dict into one future per element. hash=False: a
        # fresh key, never another call's data. Broadcast: every worker holds a copy, so one that dies
        # leaves its tasks' input on the others.
        try:
            scattered: list[distributed.Future[Any]] = client.scatter(
                [shared], broadcast=True, hash=False, timeout=_WORKER_WAIT_S
            )
        except TimeoutError:
            raise ComputeUnavailable(
                f"No worker of the Dask cluster at {self._address} took the job's data within "
                f"{_WORKER_WAIT_S:.0f} s; is any worker running?",
                code="compute_unavailable",
            ) from None
        future = scattered[0]
        with self._lock:
            if fresh:  # the lost copy is of no further use
                self._scattered = [entry for entry in self._scattered if entry[0] is not shared]
            self._scattered.append((shared, future))
            evicted = self._scattered[:-_KEEP_SHARED]
            del self._scattered[:-_KEEP_SHARED]
        # The scheduler keeps an evicted key while tasks of a call still running depend on it.
        for _, old in evicted:
            old.release()
        return future

    def close(self) -> None:
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
            self._scattered = []
        if client is not None:
            client.close()
