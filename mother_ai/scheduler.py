"""The decision scheduler: after each candle of SCHEDULER_INTERVAL closes, resolve past predictions,
retrain the agents that are due (SCHEDULER_RETRAIN_EVERY, the replay's rule) and run a decision for
SCHEDULER_SYMBOLS in the app's process, never two runs at once.

Off unless SCHEDULER_ENABLED. All timing logic is in ``run_if_due(now_ms)``, which tests call with
any time they like; ``start()``/``stop()`` only wrap it in a daemon thread that waits on a
``threading.Event`` (so ``stop()`` returns at once instead of after a sleep).

- A run is due at each candle close (the next candle's open time) plus a short grace period, so
  the exchange has published the closed candle. Each close is run at most once; the first run
  is at the first close after the scheduler was created (a restart never re-runs a close).
- No overlap: a run holds a lock; a close that falls due while a run is still going is skipped
  and logged (``run_if_due`` answers "skipped" at once when called from another thread; in the
  scheduler's own thread, closes that passed during a long run are logged as skipped when it ends).
- A failing run is logged and reported; the thread keeps going.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from agents.generic_agent import AgentConfig, retrain_due
from db.locks import Leadership
from mother_ai.mother_ai import MotherAI
from utils.errors import AppError
from utils.intervals import floor_open_time, next_open_time
from utils.settings import SchedulerSettings

log = logging.getLogger(__name__)


class _Record(Protocol):
    @property
    def active_version(self) -> str | None: ...


class Retrainer(Protocol):
    """What scheduled retraining needs from ``agents.service.AgentService``."""

    def agent_config(self, symbol: str) -> AgentConfig | None: ...

    def record(self, symbol: str) -> _Record: ...

    def train_now(self, symbol: str) -> dict[str, Any]: ...


DEFAULT_GRACE_MS = 5_000  # after a close, before the run: Binance publishes the closed kline
MAX_WAIT_S = 60.0  # the thread re-checks at least this often, so a clock jump is noticed

Status = Literal["ran", "failed", "skipped", "not_due", "standby"]


@dataclass(frozen=True, slots=True)
class TickResult:
    status: Status
    close_ms: int  # the candle close this tick was about
    message: str = ""
    result: Any = None


class DecisionScheduler:
    """Runs `job` once after each candle close of `interval` (see the module docstring)."""

    def __init__(
        self,
        job: Callable[[], Any],
        interval: str,
        *,
        clock: Callable[[], int],
        grace_ms: int = DEFAULT_GRACE_MS,
        name: str = "mother-ai-scheduler",
        leadership: Leadership | None = None,
    ) -> None:
        self.job = job
        # With several API processes on one database only the lease holder runs (None: this one always).
        self.leadership = leadership
        self.interval = interval
        self.clock = clock
        self.grace_ms = grace_ms
        self.name = name
        # The close that has been handled (run or skipped): the latest one at creation, so the
        # first run waits for the next close.
        self._last_close = floor_open_time(clock(), interval)
        self._state = threading.Lock()  # guards _last_close
        self._running = threading.Lock()  # held for the whole of a run: no overlap
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: TickResult | None = None  # the latest run, failure or skip (GET /api/health)

    @classmethod
    def for_mother_ai(
        cls,
        mother: MotherAI,
        settings: SchedulerSettings,
        *,
        clock: Callable[[], int],
        grace_ms: int = DEFAULT_GRACE_MS,
        agents: Retrainer | None = None,
        leadership: Leadership | None = None,
    ) -> DecisionScheduler:
        """Each run resolves predictions (so weights are current), retrains the agents that are due
        (SCHEDULER_RETRAIN_EVERY > 0 and `agents` given), then decides for SCHEDULER_SYMBOLS,
        executing when SCHEDULER_EXECUTE. The replay runs the same three steps in the same order."""
        symbols: Sequence[str] = list(settings.symbols)
        execute = settings.execute
        every = settings.retrain_every
        tried: set[str] = set()  # agents trained (or tried) by this scheduler: see retrain_due

        def retrain() -> list[dict[str, Any]]:
            if agents is None or every <= 0:
                return []
            done = []
            for symbol in symbols:
                config = agents.agent_config(symbol)
                if config is None:
                    continue
                has_model = symbol in tried or agents.record(symbol).active_version is not None
                close = floor_open_time(clock(), config.interval)
                if not retrain_due(has_model, close, config.interval, every):
                    continue
                tried.add(symbol)
                try:
                    trained = agents.train_now(symbol)
                    done.append({"symbol": symbol, "version": trained["version"], "ok": True})
                    log.info(
                        "scheduler: retrained %s at the close %d: model %s", symbol, close, trained["version"]
                    )
                except AppError as exc:
                    # The previous model (if any) stays active; the next retrain point tries again.
                    log.warning("scheduler: retraining %s failed: %s", symbol, exc.message)
                    done.append({"symbol": symbol, "ok": False, "error": exc.message})
            return done

        def job() -> dict[str, Any]:
            resolved = mother.resolve()
            retrained = retrain()
            outcome = mother.decide(symbols, execute=execute)
            decision = outcome.decision
            return {
                "resolved": resolved,
                "retrained": retrained,
                "decision_id": decision.id,
                "action": decision.action,
                "symbol": decision.symbol,
                "executed": decision.executed,
            }

        return cls(job, settings.interval, clock=clock, grace_ms=grace_ms, leadership=leadership)

    # --- timing ---------------------------------------------------------------------------------

    def next_due_ms(self) -> int:
        """When the next run is due: the close after the last handled one, plus the grace period."""
        with self._state:
            return next_open_time(self._last_close, self.interval) + self.grace_ms

    def run_if_due(self, now_ms: int | None = None) -> TickResult:
        """Run the job if a close not yet handled is at least `grace_ms` old at `now_ms`."""
        now = self.clock() if now_ms is None else now_ms
        close = floor_open_time(now, self.interval)  # the latest close at `now`
        with self._state:
            if close <= self._last_close or now < close + self.grace_ms:
                return TickResult("not_due", close)
            if self.leadership is not None and not self.leadership.held():
                self._last_close = close  # another process ran (or runs) this close
                return TickResult("standby", close, "another process runs the scheduler")
            if not self._running.acquire(blocking=False):
                self._last_close = close
                log.warning(
                    "scheduler: the run for the close at %d is skipped: the previous run is still going",
                    close,
                )
                self._last = TickResult("skipped", close, "the previous run is still going")
                return self._last
            self._last_close = close
        try:
            result = self._run(close)
            with self._state:
                self._last = result
            return result
        finally:
            self._running.release()
            self._skip_closes_passed_during_run(close)

    @property
    def last(self) -> TickResult | None:
        """The latest tick that did something: a run (ran or failed) or a skip."""
        with self._state:
            return self._last

    tick = run_if_due

    def _run(self, close: int) -> TickResult:
        log.info("scheduler: running for the %s close at %d", self.interval, close)
        try:
            result = self.job()
        except AppError as exc:
            log.warning("scheduler: the run for the close at %d failed: %s", close, exc.message)
            return TickResult("failed", close, exc.message)
        except Exception as exc:  # the thread must survive any failure of one run
            log.exception("scheduler: the run for the close at %d failed", close)
            return TickResult("failed", close, f"{type(exc).__name__}: {exc}")
        return TickResult("ran", close, "", result)

    def _skip_closes_passed_during_run(self, close: int) -> None:
        latest = floor_open_time(self.clock(), self.interval)
        with self._state:
            if latest > self._last_close:
                log.warning(
                    "scheduler: the run for the close at %d outlasted the next close(s); "
                    "skipped up to the close at %d",
                    close,
                    latest,
                )
                self._last_close = latest

    # --- the thread -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        if self.leadership is not None:
            self.leadership.held()  # claimed now, so health says at once whether this process leads
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()
        log.info("scheduler started: a decision after each %s close", self.interval)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the thread; a run in progress finishes first (up to `timeout` seconds)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            log.info("scheduler stopped")
        if self.leadership is not None:
            self.leadership.release()

    @property
    def leader(self) -> bool:
        """Whether this process holds the scheduler's lease (always, without a leadership)."""
        return self.leadership is None or self.leadership.is_mine

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.leadership is not None:
                self.leadership.held()  # renewed at least every MAX_WAIT_S, well inside its lease
            self.run_if_due()
            wait_s = (self.next_due_ms() - self.clock()) / 1000
            self._stop.wait(min(MAX_WAIT_S, max(0.05, wait_s)))
