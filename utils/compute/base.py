"""The compute interface both backends implement: `Compute`, its status, its cancellation, and the
constants they share (see utils/compute/__init__.py for the promises)."""

from __future__ import annotations

import functools
import queue
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")

Progress = Callable[[int, int], None]
ShouldStop = Callable[[], bool]

_POLL_S = 0.1  # how often should_stop is asked while tasks run

# The last shared objects published (a pickle file, a scattered future), kept by identity so repeated
# calls with one object send it once; the backend holds a reference to each until it is evicted.
_KEEP_SHARED = 2


# Items per task shrink as the work runs out (guided scheduling), on both backends: each task takes
# 1/_GUIDED_SHARE of a worker's share of the items not yet handed out. The first tasks are large, so the
# few milliseconds of coordination per task (Dask's scheduler and client, the local pool's parent process)
# stay small beside the work (on a small machine they take their CPU from the workers), and the last tasks
# hold one item each, so the workers finish together. On Dask, equal tasks of 1/16 of a share left a worker
# idle for up to one whole task at the end: 0.1 to 0.2 s of a 2.7 s sweep on two workers. Halves rather
# than quarters: 20 tasks for 256 items on two workers instead of 38, which halved the scheduler's and the
# client's CPU per sweep here (0.2 s each to 0.1 s), with the same finish; a whole share (GSS's classic
# choice) would leave items of unequal cost unbalanced behind the first large task.
_GUIDED_SHARE = 2
# Up to this many items per worker each is a task of its own: few items are likely long ones (walk-forward
# windows, agent fits), where a task's overhead is nothing and progress per item is what a user watches.
_ONE_PER_TASK_UP_TO = 16


def _guided_chunks(n: int, workers: int) -> list[tuple[int, int]]:
    """(start, stop) of each task's items, in order: sizes shrinking from n / (_GUIDED_SHARE * workers)
    to 1, or 1 throughout for a short list."""
    if n <= _ONE_PER_TASK_UP_TO * workers:
        return [(i, i + 1) for i in range(n)]
    bounds = []
    start = 0
    while start < n:
        size = max(1, (n - start) // (_GUIDED_SHARE * workers))
        bounds.append((start, start + size))
        start += size
    return bounds


def _run_items(fn: Callable[[Any, Any], Any], shared: Any, items: list[Any]) -> list[Any]:
    """One task's work on either backend: `fn` over its items, in order, against the worker's copy."""
    return [fn(shared, item) for item in items]


class ComputeCancelled(Exception):
    """`should_stop` answered True: the outstanding tasks were cancelled and the results dropped."""


F = TypeVar("F")


def _next_finished(finished: queue.SimpleQueue[F], should_stop: ShouldStop | None) -> F:
    """The next task a backend's done-callback handed over, asking `should_stop` every `_POLL_S` while none
    has (True raises ComputeCancelled: the caller cancels what is outstanding)."""
    while True:
        if should_stop is not None and should_stop():
            raise ComputeCancelled("cancelled")
        try:
            return finished.get(timeout=_POLL_S)
        except queue.Empty:
            continue


@dataclass(frozen=True, slots=True)
class ComputeStatus:
    """Where the research work runs, as last known (reading it never waits on the network)."""

    backend: Literal["local", "dask"]
    address: str | None  # the scheduler's (dask)
    connected: bool  # local: always; dask: a client is connected to the scheduler now
    workers: int | None  # worker processes (dask: as the scheduler last reported; None before it has)
    threads: int | None  # tasks run at once
    error: str | None  # why the last connection attempt failed


class Compute(Protocol):
    """Runs `fn(shared, item)` for every item, in parallel (see the module docstring for the promises)."""

    @property
    def name(self) -> str: ...  # "local" or "dask"

    @property
    def workers(self) -> int: ...  # how many tasks run at once

    def map(
        self,
        fn: Callable[[S, T], R],
        items: Sequence[T],
        shared: S,
        *,
        progress: Progress | None = None,
        should_stop: ShouldStop | None = None,
    ) -> list[R]: ...

    def status(self) -> ComputeStatus: ...

    def close(self) -> None: ...


def _task_name(fn: Callable[..., Any]) -> str:
    inner = fn.func if isinstance(fn, functools.partial) else fn
    return str(getattr(inner, "__name__", "task"))
