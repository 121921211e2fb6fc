"""Time the test controls: a clock it moves by hand, a sleep that only remembers what was asked, and
pauses between a loop's rounds that the test steps."""

from __future__ import annotations

import queue
import threading


class Clock:
    """An injectable clock (epoch ms) the test moves by hand."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class RecordedSleeps(list[float]):
    """An injectable sleep: remembers how long the code under test wanted to wait, waits for nothing."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


class SteppedWaits:
    """An injectable pause between a loop's rounds (mother_ai.recovery's `Wait`), stepped by the test: each
    pause remembers its seconds, says it began (`began`), and lasts until the test lets the next round run
    (`next_round`) or the loop's stop event is set."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.began: queue.SimpleQueue[int] = queue.SimpleQueue()  # how many pauses so far, as each begins
        self._go = threading.Semaphore(0)

    def __call__(self, stop: threading.Event, seconds: float) -> bool:
        self.seconds.append(seconds)
        self.began.put(len(self.seconds))
        while not self._go.acquire(timeout=0.02):  # polled: the stop event has no wait-for-either
            if stop.is_set():
                return True
        return stop.is_set()

    def next_round(self) -> None:
        self._go.release()

    def wait_for_pause(self, timeout: float = 10.0) -> int:
        """Until a pause begins (the round before it finished): the number of pauses so far."""
        return self.began.get(timeout=timeout)
