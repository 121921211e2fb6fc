"""Whether the exchange answers, as `GET /api/health` reports it: one ping at most every `ttl_ms`,
made in a background thread, so a health check never waits on the network and never costs a call
of its own.

The first read (and the first after the answer has aged out) starts a ping and returns what is known
so far (``unknown`` the very first time); `wait()` lets a caller (tests, start-up) block until the
ping in flight has answered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from utils.errors import AppError
from utils.logger import redact

ProbeStatus = Literal["offline", "unknown", "reachable", "unreachable"]
DEFAULT_TTL_MS = 60_000


@dataclass(frozen=True, slots=True)
class ProbeState:
    status: ProbeStatus
    checked_at: int | None = None  # epoch ms of the last answer (or failure)
    latency_ms: float | None = None
    error: str | None = None


class ExchangeProbe:
    """See the module docstring. `ping` is None when the app runs offline."""

    def __init__(
        self,
        ping: Callable[[], None] | None,
        clock: Callable[[], int],
        ttl_ms: int = DEFAULT_TTL_MS,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self._ping = ping
        self._secrets = secrets  # an error message is public (health): never with a key in it
        self._clock = clock
        self._ttl_ms = ttl_ms
        self._lock = threading.Lock()
        self._state = ProbeState("offline" if ping is None else "unknown")
        self._done = threading.Event()
        self._done.set()  # nothing in flight

    def state(self) -> ProbeState:
        """The latest answer; starts a ping when there is none younger than the TTL."""
        if self._ping is None:
            return self._state
        with self._lock:
            state = self._state
            aged = state.checked_at is None or self._clock() - state.checked_at >= self._ttl_ms
            start = aged and self._done.is_set()
            if start:
                self._done.clear()
        if start:
            threading.Thread(target=self._run, name="exchange-probe", daemon=True).start()
        return state

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no ping is in flight; False on timeout."""
        return self._done.wait(timeout)

    def _run(self) -> None:
        assert self._ping is not None
        started = time.perf_counter()
        try:
            self._ping()
            state = ProbeState("reachable", self._clock(), round((time.perf_counter() - started) * 1000, 1))
        except AppError as exc:
            state = ProbeState("unreachable", self._clock(), None, redact(exc.message, self._secrets))
        except Exception as exc:  # a probe must report, whatever the client raised
            state = ProbeState("unreachable", self._clock(), None, redact(type(exc).__name__, self._secrets))
        with self._lock:
            self._state = state
        self._done.set()
