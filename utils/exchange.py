"""The exchange as the rest of the backend sees it: candles, prices, symbols and their filters.

Binance (through python-binance) is the adapter we ship; another exchange is one new class
that satisfies `Exchange`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

Clock = Callable[[], int]  # milliseconds since the epoch, UTC
Sleep = Callable[[float], None]


@dataclass(frozen=True, slots=True)
class SymbolFilters:
    """A symbol's trading rules. Sizes are decimal strings exactly as the exchange sends them."""

    symbol: str
    status: str
    base_asset: str
    quote_asset: str
    tick_size: str
    step_size: str
    min_qty: str
    max_qty: str
    min_notional: str


@dataclass(frozen=True, slots=True)
class KlinePage:
    """One page of closed candles: `rows` is an (n, 6) float64 array of
    open_time, open, high, low, close, volume, ascending by open time.

    `forming_from` is the open time of a candle the exchange returned that had not closed yet
    (dropped from `rows`): nothing from that time on may be considered known.
    """

    rows: np.ndarray
    used_weight: int | None
    forming_from: int | None = None


class Exchange(Protocol):
    name: str
    request_count: int  # requests sent so far, for politeness reports

    def iter_klines(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> Iterator[KlinePage]:
        """Closed candles with start_ms <= open_time <= end_ms, page by page, ascending."""
        ...

    def price(self, symbol: str) -> float: ...

    def symbols(self) -> list[SymbolFilters]: ...
