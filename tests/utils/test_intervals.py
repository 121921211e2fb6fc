"""utils/intervals.py: candle boundaries and the one 'has this candle closed' rule."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from utils.intervals import bars_per_year, floor_open_time, is_closed, next_open_time


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(
    ("now", "interval", "open_time"),
    [
        (ms(2024, 3, 5, 13, 47), "1h", ms(2024, 3, 5, 13)),
        (ms(2024, 3, 5, 13, 47), "4h", ms(2024, 3, 5, 12)),
        (ms(2024, 3, 7, 10), "1w", ms(2024, 3, 4)),  # weeks open on Mondays
        (ms(2024, 2, 29, 23, 59), "1M", ms(2024, 2, 1)),
        (ms(2024, 3, 5), "1d", ms(2024, 3, 5)),
    ],
)
def test_floor_open_time(now: int, interval: str, open_time: int) -> None:
    assert floor_open_time(now, interval) == open_time


@pytest.mark.parametrize(
    ("open_time", "interval", "now", "closed"),
    [
        (ms(2024, 3, 5, 13), "1h", ms(2024, 3, 5, 13, 59, 59), False),
        (ms(2024, 3, 5, 13), "1h", ms(2024, 3, 5, 14), True),
        # January has 31 days: a 30.44-day approximation would call it closed 13 hours early.
        (ms(2024, 1, 1), "1M", ms(2024, 1, 31, 12), False),
        (ms(2024, 1, 1), "1M", ms(2024, 2, 1), True),
        (ms(2024, 2, 1), "1M", ms(2024, 3, 1), True),
    ],
)
def test_is_closed(open_time: int, interval: str, now: int, closed: bool) -> None:
    assert is_closed(open_time, interval, now) is closed


def test_next_open_time_and_bars_per_year() -> None:
    assert next_open_time(ms(2024, 12, 1), "1M") == ms(2025, 1, 1)
    assert bars_per_year("1h") == 365 * 24
    assert bars_per_year("1M") == 12
