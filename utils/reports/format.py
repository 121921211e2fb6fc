"""Table and caption text for reports: times, fractions, money and plain numbers, one way everywhere.

Undefined values (None, NaN, infinities) read as an em dash, never as "nan".
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

__all__ = ["count", "dash", "money", "number", "pct", "price", "time_range", "utc"]

DASH = "—"


def _defined(value: float | int | None) -> bool:
    return value is not None and not (isinstance(value, float) and not math.isfinite(value))


def dash(value: float | int | None, text: str) -> str:
    return text if _defined(value) else DASH


def utc(ms: int | float | None, seconds: bool = False) -> str:
    """Epoch milliseconds as ``2024-01-31 12:00 UTC``."""
    if not _defined(ms):
        return DASH
    assert ms is not None
    moment = datetime.fromtimestamp(float(ms) / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


def time_range(start_ms: int | float | None, end_ms: int | float | None) -> str:
    return f"{utc(start_ms)} to {utc(end_ms)}"


def pct(value: float | int | None, digits: int = 2, signed: bool = False) -> str:
    """A fraction as a percentage: 0.1234 -> ``12.34%``."""
    if not _defined(value):
        return DASH
    assert value is not None
    return f"{float(value) * 100:{'+' if signed else ''}.{digits}f}%"


def number(value: float | int | None, digits: int = 4) -> str:
    """A plain number with ``digits`` significant digits (integers as they are, with separators)."""
    if not _defined(value):
        return DASH
    assert value is not None
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{float(value):,.{digits}g}" if abs(float(value)) < 10**digits else f"{float(value):,.0f}"


def money(value: float | int | str | None, digits: int = 2) -> str:
    """An amount with thousands separators and ``digits`` decimals (decimal strings accepted)."""
    if isinstance(value, str):
        try:
            amount = float(value)
        except ValueError:
            return value
    elif value is None:
        return DASH
    else:
        amount = float(value)
    if not _defined(amount):
        return DASH
    return f"{amount:,.{digits}f}"


def price(value: float | int | str | None) -> str:
    """A price with the decimals its size needs: 2 from 1,000 up, 4 from 1, else 6 significant digits."""
    try:
        amount = float(value) if value is not None else math.nan
    except ValueError:
        return str(value)
    if not math.isfinite(amount):
        return DASH
    if abs(amount) >= 1000:
        return f"{amount:,.2f}"
    if abs(amount) >= 1:
        return f"{amount:,.4f}"
    return f"{amount:.6g}"


def count(value: int) -> str:
    return f"{value:,}"
