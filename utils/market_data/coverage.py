"""Which open-time ranges a stored Binance series covers (asked for and answered), and which rows of
an answer may be stored: a range is covered once Binance answered for it, and a row only when it keeps
every candle rule."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from utils.market_data.candles import ohlcv_problems

log = logging.getLogger(__name__)


def union(ranges: Sequence[Sequence[int]], step: int) -> list[list[int]]:
    """Merge ranges that overlap or touch (a gap smaller than one candle is no gap)."""
    merged: list[list[int]] = []
    for a, b in sorted((int(a), int(b)) for a, b in ranges):
        if merged and a <= merged[-1][1] + step:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return merged


def valid_rows(rows: np.ndarray, symbol: str, interval: str) -> tuple[np.ndarray, int | None]:
    """The rows that keep every candle rule, and the open time of the first one that does not."""
    bad = np.zeros(len(rows), dtype=bool)
    reasons: list[str] = []
    for mask, reason in ohlcv_problems(rows[:, 1:6]):
        if mask.any():
            reasons.append(reason)
        bad |= mask
    if not bad.any():
        return rows, None
    first = int(rows[int(np.argmax(bad)), 0])
    log.warning(
        "Binance sent %d invalid %s %s candle(s), the first opening at %d (%s); they are not stored",
        int(bad.sum()),
        symbol,
        interval,
        first,
        " ".join(reasons),
    )
    return rows[~bad], first


def subtract(lo: int, hi: int, covered: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """The parts of [lo, hi] no covered range holds."""
    missing: list[tuple[int, int]] = []
    cursor = lo
    for a, b in sorted((int(a), int(b)) for a, b in covered):
        if b < cursor or a > hi:
            continue
        if a > cursor:
            missing.append((cursor, a - 1))
        cursor = max(cursor, b + 1)
    if cursor <= hi:
        missing.append((cursor, hi))
    return missing
