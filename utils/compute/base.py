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
