"""The app's event log: what changed (a job, a decision, an order, the portfolio, the kill switch, a
closed candle), numbered in order, kept for a while so a stream can resume, and handed to waiting
readers without ever waiting on them.

Writers are worker threads and request threads; readers are the live streams' coroutines. A write
appends to a bounded ring under a lock and wakes the readers' event loops with
``call_soon_threadsafe``: it never touches a socket, so a slow or vanished reader cannot hold a
writer up. A reader that falls further behind than the ring holds is told so (``Missed``) and
refetches state through the REST endpoints, as a reader resuming after a restart is.

Event ids are ``<log id>-<sequence>``: the log id is new in every process, so an id from before a
restart (or from another process) is recognised as unknown instead of being taken for a position.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

EventKind = Literal["job", "decision", "order", "portfolio", "kill_switch", "candle"]
EVENT_KINDS: tuple[EventKind, ...] = ("job", "decision", "order", "portfolio", "kill_switch", "candle")
DEFAULT_CAPACITY = 10_000


@dataclass(frozen=True, slots=True)
class Event:
    """One change. `key` names what changed (a job or decision id, a mode, ``SYMBOL@interval``);
    `payload` is the domain object as it was at the change (None where readers load it by key)."""

    seq: int
    id: str
    kind: EventKind
    key: str
    time: int  # epoch ms, by the app's clock
    payload: object = None


@dataclass(frozen=True, slots=True)
class Missed:
    """The reader's position is not in the log (too old, or from before a restart): events between it
    and `resume_seq` are gone, so state must be refetched."""

    after: str | None  # the id the reader asked to resume after
    resume_seq: int  # the sequence the reader goes on from


class EventLog:
    """A bounded, ordered log of events with waiting readers (see the module docstring)."""

    def __init__(self, clock: Callable[[], int], capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.clock = clock
        self.log_id = secrets.token_hex(4)
        self._lock = threading.Lock()
        self._capacity = capacity
        # A circular buffer: event `seq` sits at seq % capacity, so reading k new events costs k.
        self._ring: list[Event | None] = [None] * capacity
        self._seq = 0
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def publish(self, kind: EventKind, key: str, payload: object = None) -> Event:
        with self._lock:
            self._seq += 1
            event = Event(self._seq, f"{self.log_id}-{self._seq}", kind, key, self.clock(), payload)
            self._ring[self._seq % self._capacity] = event
            waiters = list(self._waiters)
        for loop, ready in waiters:
            # RuntimeError: that reader's loop has closed; the reader unregisters itself on its way out.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(ready.set)
        return event

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._seq

    @property
    def readers(self) -> int:
        """Streams waiting on this log now (a closed stream leaves at once)."""
        with self._lock:
            return len(self._waiters)

    def _oldest(self) -> int:
        return max(1, self._seq - self._capacity + 1)

    def position(self, last_event_id: str | None) -> int | Missed:
        """The sequence to read after for a client's Last-Event-ID: the current end for None (a new
        reader gets what happens from now on), or Missed when the id is not one this log can resume."""
        with self._lock:
            end, oldest = self._seq, self._oldest()
        if last_event_id is None:
            return end
        log_id, _, seq_text = last_event_id.partition("-")
        if log_id != self.log_id or not seq_text.isdigit():
            return Missed(last_event_id, end)
        seq = int(seq_text)
        if seq > end or seq < oldest - 1:
            return Missed(last_event_id, end)
        return seq

    def after(self, seq: int) -> list[Event] | Missed:
        """Every event after `seq`, oldest first; Missed when some of them have left the ring."""
        with self._lock:
            if seq >= self._seq:
                return []
            if seq < self._oldest() - 1:
                return Missed(f"{self.log_id}-{seq}", self._seq)
            events = [self._ring[i % self._capacity] for i in range(seq + 1, self._seq + 1)]
        return [e for e in events if e is not None]

    @contextmanager
    def subscribe(self) -> Iterator[asyncio.Event]:
        """Register a reader in the running loop for as long as the block lasts; the event it yields is
        set by each publish. A stream registers here, in a scope it owns, rather than inside `follow`:
        an async generator left suspended at a yield is closed only when it is garbage collected, which
        would keep a vanished client counted (and woken) for an unbounded time."""
        ready = asyncio.Event()
        entry = (asyncio.get_running_loop(), ready)
        with self._lock:
            self._waiters.add(entry)
        try:
            yield ready
        finally:
            with self._lock:
                self._waiters.discard(entry)

    async def follow(
        self, seq: int, idle_s: float, subscription: asyncio.Event | None = None
    ) -> AsyncGenerator[list[Event] | Missed | None, None]:
        """From `seq` on, forever: each batch of new events as it arrives, Missed when the reader fell
        out of the ring (it then goes on from the end), and None after `idle_s` without events (so the
        caller can check on its client). Waits on `subscription` (from `subscribe`) when given, else
        registers for the life of the iteration."""
        if subscription is not None:
            async for item in self._follow(seq, idle_s, subscription):
                yield item
            return
        with self.subscribe() as ready:
            async for item in self._follow(seq, idle_s, ready):
                yield item

    async def _follow(
        self, seq: int, idle_s: float, ready: asyncio.Event
    ) -> AsyncGenerator[list[Event] | Missed | None, None]:
        while True:
            ready.clear()  # before reading: an event published after the read sets it again
            batch = self.after(seq)
            if isinstance(batch, Missed):
                seq = batch.resume_seq
                yield batch
                continue
            if batch:
                seq = batch[-1].seq
                yield batch
                continue
            try:
                await asyncio.wait_for(ready.wait(), timeout=idle_s)
            except TimeoutError:
                yield None
