"""The compute backends keep the same promises (utils/compute/), each checked on a local pool of one and of
two processes and on a real Dask cluster of two worker processes: order, bit-equal results, shared data
once per worker per call, progress, cancel, exceptions, and no result lost to a killed worker."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.compute_tasks import Outcome, Payload, task, value_of
from tests.support.dask_cluster import MISSING, DaskCluster, distributed_missing
from tests.support.dask_cluster import dask_cluster as start_dask_cluster
from tests.support.server import wait_until
from utils.compute import (
    Compute,
    ComputeCancelled,
    ComputeStatus,
    ComputeUnavailable,
    DaskCompute,
    make_compute,
)
from utils.compute.base import _GUIDED_SHARE, _ONE_PER_TASK_UP_TO, _guided_chunks
from utils.errors import InvalidInput

# Each test's limit, its cluster's start included: a call that stops getting results fails, not hangs.
pytestmark = pytest.mark.timeout(240)

BACKENDS = ["local-1", "local-2", "dask"]


@pytest.fixture(scope="module", params=BACKENDS)
def compute(request: pytest.FixtureRequest) -> Iterator[Compute]:
    """One backend for the whole module (a local pool spawns once, as in the app)."""
    if request.param == "dask":
        cluster: DaskCluster = request.getfixturevalue("dask_cluster")
        backend = make_compute(cluster.address, local_workers=1)
    else:
        backend = make_compute(None, local_workers=int(request.param.split("-")[1]))
    yield backend
    backend.close()


def payload(**changes: object) -> Payload:
    return Payload(nonce=uuid.uuid4().hex, **changes)  # type: ignore[arg-type]


def test_names_and_workers(compute: Compute, request: pytest.FixtureRequest) -> None:
    expected = {"local-1": ("local", 1), "local-2": ("local", 2), "dask": ("dask", 2)}
    assert (compute.name, compute.workers) == expected[request.node.callspec.params["compute"]]


def test_results_come_in_the_items_order_and_equal_a_one_process_run_bit_for_bit(compute: Compute) -> None:
    shared = payload()
    items = list(range(40))[::-1]  # not the order they finish in
    outcomes = compute.map(task, items, shared)
    assert [o.value for o in outcomes] == [value_of(shared, i) for i in items]
    assert all(o.pid != os.getpid() for o in outcomes)  # worker processes ran them, not this one


def test_shared_data_reaches_each_worker_once_per_call(compute: Compute) -> None:
    for _ in range(2):  # and again for the next call: its own data, loaded once more per worker
        outcomes = compute.map(task, list(range(30)), payload(delay_s=0.01))
        assert {o.loads for o in outcomes} == {1}, "a worker process received the shared data more than once"
        assert 1 <= len({o.pid for o in outcomes}) <= compute.workers


def test_the_same_shared_object_again_is_not_sent_again(compute: Compute) -> None:
    """An optimiser maps batch after batch over one shared object: the workers keep what they hold."""
    shared = payload(delay_s=0.01)
    for _ in range(3):
        assert {o.loads for o in compute.map(task, list(range(20)), shared)} == {1}
    # Only the last few objects are kept: after two others, the first one is sent anew.
    for _ in range(2):
        compute.map(task, list(range(20)), payload(delay_s=0.01))
    assert max(o.loads for o in compute.map(task, list(range(20)), shared)) == 2


def test_progress_counts_results_as_they_arrive(compute: Compute) -> None:
    seen: list[tuple[int, int]] = []
    compute.map(task, list(range(12)), payload(), progress=lambda done, total: seen.append((done, total)))
    assert seen == [(k, 12) for k in range(1, 13)]
    # Many items (a cluster runs several per task): counts still rise to the total, never back.
    seen.clear()
    compute.map(task, list(range(100)), payload(), progress=lambda done, total: seen.append((done, total)))
    assert [done for done, _ in seen] == sorted({done for done, _ in seen}) and seen[-1] == (100, 100)


def test_no_more_tasks_run_at_once_than_workers(compute: Compute) -> None:
    outcomes = compute.map(task, list(range(8)), payload(delay_s=0.25))
    # Most tasks running at one moment: at some task's start (when the count can grow), those under way.
    most = max(sum(1 for o in outcomes if o.start <= t.start < o.end) for t in outcomes)
    assert most <= compute.workers
    if compute.workers > 1:
        spans = sorted((round(o.start, 2), round(o.end, 2), o.pid) for o in outcomes)
        assert most > 1, f"two workers never ran at the same time: {spans}"


# A cancel that stops the local pool's processes leaves its futures to the broken pool: one cancelled
# first made CPython 3.11's pool thread raise InvalidStateError (in 1 of 7 runs here): these fail on it.
NO_THREAD_ERRORS = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")


def map_until_cancelled(
    compute: Compute, n: int, delay_s: float, stop: Callable[[list[int]], bool]
) -> list[int]:
    """Map `n` items of `delay_s` each until `stop(progress counts so far)`; the counts. The call must end
    cancelled."""
    done: list[int] = []
    with pytest.raises(ComputeCancelled):
        compute.map(
            task,
            list(range(n)),
            payload(delay_s=delay_s),
            progress=lambda count, _total: done.append(count),
            should_stop=lambda: stop(done),
        )
    return done


def assert_serves_the_next_call_in_full(compute: Compute) -> None:
    shared = payload()
    assert [o.value for o in compute.map(task, [1, 2, 3], shared)] == [value_of(shared, i) for i in (1, 2, 3)]


@NO_THREAD_ERRORS
def test_should_stop_cancels_the_outstanding_tasks(compute: Compute) -> None:
    started = time.monotonic()
    n = _ONE_PER_TASK_UP_TO * compute.workers  # the most items that still run one per task
    done = map_until_cancelled(compute, n, 0.25, lambda done: len(done) >= 2)
    # n tasks of 0.25 s take 4 s at the least on the workers; the cancel ends it long before.
    assert time.monotonic() - started < 3
    assert 2 <= len(done) < n
    assert_serves_the_next_call_in_full(compute)


@NO_THREAD_ERRORS
def test_should_stop_ends_a_call_while_its_tasks_of_many_items_run(compute: Compute) -> None:
    """Past `_ONE_PER_TASK_UP_TO` items per worker a task holds several: the first ones a quarter of the
    list on two workers, half on one. A cancel may not wait for those to end."""
    n = 4 * _ONE_PER_TASK_UP_TO * compute.workers
    first_task_s = 0.1 * (n // (_GUIDED_SHARE * compute.workers))  # 3.2 s
    started = time.monotonic()
    done = map_until_cancelled(compute, n, 0.1, lambda _done: time.monotonic() - started > 0.3)
    assert done == [], "no task had finished when the cancel came"
    assert time.monotonic() - started < first_task_s - 0.7, "the call waited for a task under way"
    assert_serves_the_next_call_in_full(compute)


def test_an_exception_in_a_task_propagates_with_its_code_and_details(compute: Compute) -> None:
    with pytest.raises(ValueError, match="boom 5"):
        compute.map(task, list(range(10)), payload(fail_on=5))
    with pytest.raises(InvalidInput) as raised:
        compute.map(task, list(range(10)), payload(invalid_on=3))
    assert (raised.value.code, raised.value.details, raised.value.message) == (
        "not_enough_candles",
        {"item": 3},
        "bad item 3",
    )


def test_a_worker_killed_mid_call_loses_no_result(
    compute: Compute, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    marker = tmp_path / "killed"
    shared = payload(delay_s=0.05, kill_on=4, marker=str(marker))
    outcomes = compute.map(task, list(range(16)), shared)
    assert marker.exists(), "the task never killed its worker"
    assert [o.value for o in outcomes] == [value_of(shared, i) for i in range(16)]
    if compute.name == "dask":  # the nanny restarts the worker: the next tests get both again
        request.getfixturevalue("dask_cluster").wait_for_workers(2)


def test_a_dask_worker_killed_from_outside_mid_call_loses_no_result(dask_cluster: DaskCluster) -> None:
    compute = make_compute(dask_cluster.address, local_workers=1)
    try:
        victim = next(iter(dask_cluster.worker_pids().values()))
        killed: list[int] = []

        def kill_one(done: int, _total: int) -> None:
            if done >= 3 and not killed:  # progress counts items, and a task can hold several
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)

        shared = payload(delay_s=0.1)
        outcomes: list[Outcome] = compute.map(task, list(range(20)), shared, progress=kill_one)
        assert killed
        assert [o.value for o in outcomes] == [value_of(shared, i) for i in range(20)]
    finally:
        compute.close()
        dask_cluster.wait_for_workers(2)


def test_a_dask_call_whose_shared_data_dies_with_every_worker_still_completes(
    dask_cluster: DaskCluster,
) -> None:
    """Every worker killed at once takes every copy of the scattered data along: the scheduler cancels the
    tasks that needed it ("lost dependencies"), and the call sends the data again and resubmits them. (The
    same happens with one killed worker on a scheduler whose active memory manager trimmed the others.)"""
    compute = make_compute(dask_cluster.address, local_workers=1)
    try:
        victims = list(dask_cluster.worker_pids().values())
        killed: list[int] = []

        def kill_all(done: int, _total: int) -> None:
            if done >= 3 and not killed:  # progress counts items, and a task can hold several
                for pid in victims:
                    os.kill(pid, signal.SIGKILL)
                killed.extend(victims)

        shared = payload(delay_s=0.1)
        outcomes: list[Outcome] = compute.map(task, list(range(20)), shared, progress=kill_all)
        assert killed == victims
        assert [o.value for o in outcomes] == [value_of(shared, i) for i in range(20)]
        late = {o.pid for o in outcomes[-4:]}
        assert not late & set(victims), "the last results came from the killed workers"
    finally:
        compute.close()
        dask_cluster.wait_for_workers(2)


def test_a_dask_client_reaching_only_the_scheduler_gets_the_same_results(dask_cluster: DaskCluster) -> None:
    """COMPUTE_DIRECT_TO_WORKERS=false: the shared data and the results go through the scheduler."""
    compute = make_compute(dask_cluster.address, local_workers=1, direct_to_workers=False)
    try:
        assert compute._connect().direct_to_workers is False  # type: ignore[attr-defined]
        shared = payload()
        outcomes = compute.map(task, list(range(12)), shared)
        assert [o.value for o in outcomes] == [value_of(shared, i) for i in range(12)]
        assert {o.loads for o in outcomes} == {1}
    finally:
        compute.close()


def test_a_dask_client_sends_to_the_workers_directly_by_default(dask_cluster: DaskCluster) -> None:
    compute = make_compute(dask_cluster.address, local_workers=1)
    try:
        assert compute._connect().direct_to_workers is True  # type: ignore[attr-defined]
    finally:
        compute.close()


def _tasks_under_way(dask_scheduler: Any) -> int:
    """On the scheduler: tasks submitted and not yet finished (the scattered data is in memory)."""
    states = {"waiting", "queued", "processing", "no-worker"}
    return sum(ts.state in states for ts in dask_scheduler.tasks.values())


def test_a_dask_call_keeps_two_tasks_per_worker_out_at_a_time(dask_cluster: DaskCluster) -> None:
    """The next task goes out as one finishes: all at once, the scheduler would place every task at
    submission and could leave one worker a large task at the end while the other idles."""
    compute = make_compute(dask_cluster.address, local_workers=1)
    try:
        client = compute._connect()  # type: ignore[attr-defined]
        under_way: list[int] = []
        shared = payload(delay_s=0.01)
        items = list(range(80))  # several items per task (more than 16 per worker)

        def count(_done: int, _total: int) -> None:
            under_way.append(client.run_on_scheduler(_tasks_under_way))

        outcomes = compute.map(task, items, shared, progress=count)
        assert [o.value for o in outcomes] == [value_of(shared, i) for i in items]
        assert 2 <= max(under_way) <= 2 * compute.workers, under_way
    finally:
        compute.close()


def test_a_cluster_with_dasks_default_memory_manager_still_completes_a_batch_after_batch_job() -> None:
    """Dask's default settings (the active memory manager on, trimming the broadcast to one copy between
    calls): an optimiser's batches over one shared object, a worker killed between two of them, still give
    every result."""
    if distributed_missing() is not None:
        pytest.skip(MISSING)
    amm_on = {
        "DASK_DISTRIBUTED__SCHEDULER__ACTIVE_MEMORY_MANAGER__START": "True",
        "DASK_DISTRIBUTED__SCHEDULER__ACTIVE_MEMORY_MANAGER__INTERVAL": "100ms",
    }
    with start_dask_cluster(2, settings=amm_on) as cluster:
        compute = make_compute(cluster.address, local_workers=1)
        try:
            shared = payload(delay_s=0.01)
            client = compute._connect()  # type: ignore[attr-defined]
            first = compute.map(task, list(range(20)), shared)
            # Trimmed to one copy once no task waits on it: the worker holding it is the one to kill.
            holders: list[str] = []

            def trimmed() -> bool:
                holders[:] = [w for ws in client.who_has().values() for w in ws]
                return len(holders) == 1

            wait_until(trimmed, timeout=30, what="the memory manager to trim the broadcast to one copy")
            os.kill(cluster.worker_pids()[holders[0]], signal.SIGKILL)
            second = compute.map(task, list(range(20)), shared)
            expected = [value_of(shared, i) for i in range(20)]
            assert [o.value for o in first] == expected and [o.value for o in second] == expected
        finally:
            compute.close()


def test_a_scheduler_without_the_distributed_package_is_refused_with_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # what find_spec reports for a missing package
    with pytest.raises(ComputeUnavailable, match=r"requirements-distributed\.txt"):
        make_compute("tcp://127.0.0.1:8786", local_workers=2)


def test_an_unreachable_scheduler_is_compute_unavailable() -> None:
    compute = make_compute("tcp://127.0.0.1:9", local_workers=1)  # discard: nothing listens there
    try:
        with pytest.raises(ComputeUnavailable, match="could not be reached"):
            compute.map(task, [1], payload())
    finally:
        compute.close()


def test_a_status_read_tries_to_connect_in_the_background_at_most_every_few_seconds() -> None:
    now = [0.0]
    compute = DaskCompute("tcp://127.0.0.1:9", monotonic=lambda: now[0])  # discard: nothing listens

    def attempts() -> int:
        return sum(t.name == "dask-connect" for t in threading.enumerate())

    try:
        assert compute.status() == ComputeStatus("dask", "tcp://127.0.0.1:9", False, None, None, None)
        assert attempts() == 1, "the first read starts an attempt and returns at once"
        wait_until(lambda: attempts() == 0, timeout=30, what="the background attempt to fail")
        failed = compute.status()
        assert failed.connected is False and failed.error is not None and "127.0.0.1:9" in failed.error
        assert attempts() == 0, "a read right after a failed attempt starts none"
        now[0] += 10.0
        compute.status()
        assert attempts() == 1, "a read after the retry interval tries again"
    finally:
        compute.close()


@pytest.mark.parametrize(("n", "workers"), [(1, 1), (1, 2), (7, 2), (40, 2), (256, 2), (256, 8), (1000, 3)])
def test_dask_tasks_cover_every_item_once_in_order_and_shrink_to_one(n: int, workers: int) -> None:
    bounds = _guided_chunks(n, workers)
    assert [start for start, _ in bounds] == [0] + [stop for _, stop in bounds[:-1]], "contiguous, in order"
    assert bounds[-1][1] == n
    sizes = [stop - start for start, stop in bounds]
    assert min(sizes) >= 1 and sizes == sorted(sizes, reverse=True)
    assert sizes[-1] == 1, "the last task holds one item, so the workers finish together"
    if n <= _ONE_PER_TASK_UP_TO * workers:
        assert sizes == [1] * n, "a short list runs one item per task"
    else:
        assert sizes[0] == n // (_GUIDED_SHARE * workers) > 1, "the first holds a part of a worker's share"
