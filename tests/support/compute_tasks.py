"""Task functions for the compute backends' tests (tests/utils/test_compute.py): module-level, so a local
pool's spawned processes and the Dask workers (this project on their PYTHONPATH) import them by name."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from utils.errors import InvalidInput

# Per process: how many times each payload (by nonce) was unpickled there, i.e. reached that process.
_LOADS: Counter[str] = Counter()


@dataclass
class Payload:
    """The shared data of one map call: an array the tasks compute with, and what they should do."""

    nonce: str
    values: np.ndarray = field(default_factory=lambda: np.linspace(0.1, 9.7, 10_000))
    delay_s: float = 0.0
    fail_on: int | None = None  # this item raises ValueError
    invalid_on: int | None = None  # this item raises InvalidInput with a code and details
    kill_on: int | None = None  # this item kills its own process, once: when `marker` does not exist yet
    marker: str | None = None

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        _LOADS[self.nonce] += 1


@dataclass(frozen=True)
class Outcome:
    value: float
    pid: int
    loads: int  # unpicklings of this call's payload in this process when the task ran
    start: float  # time.monotonic(): one clock for every process of the machine
    end: float


def value_of(shared: Payload, item: int) -> float:
    """What a task computes: floats whose bits show whether every backend computed the same."""
    return float(np.sum(np.sqrt(shared.values * (item + 1))) / 7.0)


def task(shared: Payload, item: int) -> Outcome:
    start = time.monotonic()
    if item == shared.kill_on and shared.marker is not None and not Path(shared.marker).exists():
        Path(shared.marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    if item == shared.fail_on:
        raise ValueError(f"boom {item}")
    if item == shared.invalid_on:
        raise InvalidInput(f"bad item {item}", code="not_enough_candles", details={"item": item})
    if shared.delay_s:
        time.sleep(shared.delay_s)
    return Outcome(value_of(shared, item), os.getpid(), _LOADS[shared.nonce], start, time.monotonic())
