"""Binance kline intervals: the allowed set, their lengths, and candle-time alignment."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal, TypeGuard, get_args

# The Literal is the one list: INTERVALS is read from it, so the two never disagree.
Interval = Literal[
    "1m",
    "3m",
    "5m",
    "15m",
    "30m",
    "1h",
    "2h",
    "4h",
    "6h",
    "8h",
    "12h",
    "1d",
    "3d",
    "1w",
    "1M",
]
INTERVALS: tuple[Interval, ...] = get_args(Interval)

_MINUTE = 60_000
_FIXED_MS: dict[str, int] = {
    "1m": _MINUTE,
    "3m": 3 * _MINUTE,
    "5m": 5 * _MINUTE,
    "15m": 15 * _MINUTE,
    "30m": 30 * _MINUTE,
    "1h": 60 * _MINUTE,
    "2h": 120 * _MINUTE,
    "4h": 240 * _MINUTE,
    "6h": 360 * _MINUTE,
    "8h": 480 * _MINUTE,
    "12h": 720 * _MINUTE,
    "1d": 1440 * _MINUTE,
    "3d": 3 * 1440 * _MINUTE,
    "1w": 7 * 1440 * _MINUTE,
}
# A calendar month has no fixed length; 30.4375 days is its mean, used only where an
# approximate length is enough (bars per year, page-size estimates).
_MONTH_MS_APPROX = int(30.4375 * 1440 * _MINUTE)
_YEAR_MS = 365 * 1440 * _MINUTE  # crypto trades every day: a 365-day calendar
# Binance's weekly candles open on Mondays; the Unix epoch was a Thursday.
_WEEK_OFFSET_MS = 4 * 1440 * _MINUTE


def is_interval(value: str) -> TypeGuard[Interval]:
    return value in INTERVALS


def as_interval(value: str) -> Interval:
    """`value` typed as an interval; a ValueError when it is none (a stored row always holds one)."""
    if not is_interval(value):
        raise ValueError(f"not a kline interval: {value!r}")
    return value


def interval_ms(interval: str) -> int:
    """Length of one candle in milliseconds (the mean length for the calendar month)."""
    if interval == "1M":
        return _MONTH_MS_APPROX
    try:
        return _FIXED_MS[interval]
    except KeyError:
        raise ValueError(f"unknown interval {interval!r}; allowed: {', '.join(INTERVALS)}") from None


def bars_per_year(interval: str) -> float:
    """Number of candles in a 365-day year, used to annualise per-bar statistics."""
    if interval == "1M":
        return 12.0
    return _YEAR_MS / interval_ms(interval)


def floor_open_time(ts_ms: int, interval: str) -> int:
    """Open time of the candle that contains `ts_ms`."""
    if interval == "1M":
        dt = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
        return int(datetime(dt.year, dt.month, 1, tzinfo=UTC).timestamp() * 1000)
    step = interval_ms(interval)
    offset = _WEEK_OFFSET_MS if interval == "1w" else 0
    return (ts_ms - offset) // step * step + offset


def next_open_time(open_ms: int, interval: str) -> int:
    """Open time of the candle after the one opening at `open_ms`."""
    if interval == "1M":
        dt = datetime.fromtimestamp(open_ms / 1000, tz=UTC)
        year, month = (dt.year + 1, 1) if dt.month == 12 else (dt.year, dt.month + 1)
        return int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000)
    return open_ms + interval_ms(interval)


def is_closed(open_ms: int, interval: str, now_ms: int) -> bool:
    """Whether the candle opening at `open_ms` has closed by `now_ms` (exact for calendar months)."""
    return next_open_time(open_ms, interval) <= now_ms
