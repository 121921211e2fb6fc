"""Test-only crash points: the process dies at a named point between two writes, as a kill -9 would.

Off unless ``CRASH_POINT`` names a point (a typed setting; create_app arms it). The suite starts a real
server with it set, makes the request that reaches the point, and restarts the server to check that the
start-up reconciliation (``utils.recovery``) brings the database and the files back into agreement.
``os._exit`` skips every ``finally``, flush and atexit handler, as SIGKILL does.
"""

from __future__ import annotations

import logging
import os
from typing import Literal, get_args

__all__ = ["CRASH_POINTS", "CrashPointName", "arm", "crash_point"]

CrashPointName = Literal[
    "strategy_committed",  # a strategy's rows committed, its file not yet written
    "strategy_renamed",  # a renamed strategy's new file written, the old one not yet removed
    "model_files_written",  # a model's artifact and metadata written, the registry row not committed
    "decision_recorded",  # a decision stored as PENDING, its order not yet placed
    "order_committed",  # an order committed, neither the decision nor trades.jsonl updated
    "live_order_sent",  # Binance accepted a live order, its answer not yet recorded
    "candles_temp_written",  # a candle file's temp copy written, not yet renamed over the file
]
CRASH_POINTS: tuple[str, ...] = get_args(CrashPointName)
EXIT_CODE = 86  # what a crashed server exits with, so a test can tell a crash from another death

log = logging.getLogger(__name__)
_armed: list[str] = []  # set once by create_app from settings; a list so arming needs no `global`


def arm(name: str | None) -> None:
    """Arm the crash point `name` (None disarms). Only create_app calls this, from CRASH_POINT."""
    _armed.clear()
    if name is not None:
        if name not in CRASH_POINTS:
            raise ValueError(f"unknown crash point {name!r}; known: {', '.join(CRASH_POINTS)}")
        log.warning("CRASH_POINT=%s is set: this process will exit at that point (test setting)", name)
        _armed.append(name)


def crash_point(name: CrashPointName) -> None:
    """Exit the process at once if `name` is the armed crash point; otherwise nothing."""
    if _armed and _armed[0] == name:
        os._exit(EXIT_CODE)
