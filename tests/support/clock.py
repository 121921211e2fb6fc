"""Time the test controls: a clock it moves by hand and a sleep that only remembers what was asked."""

from __future__ import annotations


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
