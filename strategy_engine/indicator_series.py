"""Indicator series for charts: one registry indicator over a candle window, valued as a strategy sees it.

``indicator_series(market, symbol, interval, name, params, limit=..., start_ms=..., end_ms=...)`` takes the
window ``MarketData.candles`` answers for the same arguments (the candles endpoint's window) and gives the
values of ``ml_engine.indicators`` indicator ``name`` on each of its candles, one series per output.
``parse_params`` reads the ``params`` query: a JSON object of numbers (``{"period": 14}``), parsed as
data and never evaluated; absent or empty means every default.

Why the values can be trusted:

* The same values a strategy sees: they are computed over the stored series from its first candle up to
  the window's last one, the candles a health check (and a backtest over the stored history) evaluates.
  The library is causal and prefix-stable (its values on a prefix are bit-identical to the first values
  on the whole series), so each value equals, bit for bit, a strategy's operand at that bar. Reading
  only the warm-up before the window would not: the recursive indicators (EMA, RSI, ATR, ADX, MACD, OBV)
  depend on every earlier bar, not just their lookback (OBV's level on where the series starts), and
  even the windowed sums (Bollinger's) round differently when they start on another bar.
* Honest warm-up: online, the ``warmup`` bars (TA-Lib's lookback) before the window's first candle are
  synced first, so a value is null only when the stored series truly has too few bars before it (the
  first candles of a listing, of an imported file or of the sample series).
* No lookahead: nothing after the window's last candle is read, and the value at bar t uses candles up to
  t only (``ml_engine.indicators``' contract, pinned by tests/strategy_engine/test_indicator_series.py).

Bad input is ``InvalidInput`` whose ``details["field"]`` names it: ``name`` (unknown indicator),
``params`` (not a JSON object, or parameters that conflict) or ``params.<key>`` (unknown, not a number,
not an integer, out of range); the market data call's own errors (start after end, no data) pass through.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml_engine.indicators import INDICATORS, IndicatorSpec, compute
from utils.errors import InvalidInput
from utils.intervals import interval_ms
from utils.market_data.candles import DataSource, Partition
from utils.market_data.market import CandleAnswer, MarketData

__all__ = [
    "INDICATOR_NAMES",
    "MAX_PARAMS_TEXT",
    "IndicatorSeries",
    "OutputSeries",
    "indicator_series",
    "parse_params",
    "resolve",
]

MAX_PARAMS_TEXT = 1000  # characters of the params query: a few numbers need far less
INDICATOR_NAMES: tuple[str, ...] = tuple(sorted(INDICATORS))

# Which store partition served a window: a stored Binance series answers as "cache" once fetched.
_PARTITION: dict[DataSource, Partition] = {
    "binance": "binance",
    "cache": "binance",
    "file": "file",
    "sample": "sample",
}


@dataclass(frozen=True, slots=True)
class OutputSeries:
    """One output of the indicator, one value per candle of the window (None: no value yet)."""

    name: str
    values: list[float | None]


@dataclass(frozen=True, slots=True)
class IndicatorSeries:
    symbol: str
    interval: str
    source: DataSource
    stale: bool
    indicator: str
    params: dict[str, int | float]
    warmup: int  # bars before the first value on a series with no gaps in its numbers
    history_start_time: int | None  # open time of the first candle the values were computed from
    times: list[int]
    series: list[OutputSeries]


def _invalid(field: str, message: str, **extra: Any) -> InvalidInput:
    return InvalidInput(message, details={"field": field, **extra})


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _invalid(f"params.{key}", f"params: {key!r} is given twice.")
        seen[key] = value
    return seen


def _no_constant(name: str) -> Any:
    raise _invalid("params", f"params: {name} is not a number an indicator can use.")


def parse_params(text: str | None) -> dict[str, Any]:
    """The ``params`` query as a mapping: a JSON object (``{"period": 14}``); None or blank: ``{}``."""
    if text is None or not text.strip():
        return {}
    if len(text) > MAX_PARAMS_TEXT:
        raise _invalid("params", f"params: at most {MAX_PARAMS_TEXT} characters.")
    try:
        value = json.loads(text, object_pairs_hook=_object_without_duplicates, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise _invalid(
            "params", 'params: expected a JSON object of numbers, such as {"period": 14}.'
        ) from None
    if not isinstance(value, dict):
        raise _invalid("params", 'params: expected a JSON object of numbers, such as {"period": 14}.')
    return value


def resolve(name: str, params: Mapping[str, Any]) -> tuple[IndicatorSpec, dict[str, int | float]]:
    """The registry entry of ``name`` and its parameters with every default filled in and each checked."""
    spec = INDICATORS.get(name)
    if spec is None:
        raise _invalid(
            "name",
            f"Unknown indicator {name!r}; known: {', '.join(INDICATOR_NAMES)}.",
            known=list(INDICATOR_NAMES),
        )
    known = [p.name for p in spec.params]
    unknown = sorted(set(params) - set(known))
    if unknown:
        allowed = ", ".join(known) if known else "none"
        raise _invalid(
            f"params.{unknown[0]}", f"{name} has no parameter {unknown[0]!r}; its parameters: {allowed}."
        )
    resolved: dict[str, int | float] = {}
    for param in spec.params:
        try:
            resolved[param.name] = param.coerce(params.get(param.name, param.default))
        except ValueError as exc:
            raise _invalid(f"params.{param.name}", f"{name}: {exc}.") from None
    if spec.check is not None:
        try:
            spec.check(resolved)
        except ValueError as exc:
            raise _invalid("params", f"{exc}.") from None
    return spec, resolved


def indicator_series(
    market: MarketData,
    symbol: str,
    interval: str,
    name: str,
    params: Mapping[str, Any],
    *,
    limit: int,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> IndicatorSeries:
    """The indicator over the candles window of (``limit``, ``start_ms``, ``end_ms``); see the module."""
    spec, resolved = resolve(name, params)  # before any data is read: bad input costs nothing
    window = market.candles(symbol, interval, limit=limit, start_ms=start_ms, end_ms=end_ms)
    times = window.candles.open_time
    stale = window.stale or _sync_warmup(market, window, symbol, interval, spec.lookback(resolved))
    history = (
        market.store.load(_PARTITION[window.source], symbol, interval, None, int(times[-1]))
        if len(times)
        else window.candles
    )
    columns = [np.full(len(times), np.nan) for _ in spec.outputs]
    if len(history):
        outputs = compute(spec.name, {column: history.column(column) for column in spec.inputs}, resolved)
        # The window's candles by position in the history; one missing there (the store changed between
        # the two reads) gets no value rather than a neighbour's.
        at = np.minimum(np.searchsorted(history.open_time, times), len(history) - 1)
        columns = [np.where(history.open_time[at] == times, values[at], np.nan) for values in outputs]
    return IndicatorSeries(
        symbol=symbol,
        interval=interval,
        source=window.source,
        stale=stale,
        indicator=spec.name,
        params=resolved,
        warmup=spec.lookback(resolved),
        history_start_time=int(history.open_time[0]) if len(history) else None,
        times=[int(t) for t in times.tolist()],
        series=[OutputSeries(output, _values(v)) for output, v in zip(spec.outputs, columns, strict=True)],
    )


def _sync_warmup(market: MarketData, window: CandleAnswer, symbol: str, interval: str, warmup: int) -> bool:
    """Online, store the ``warmup`` bars before a Binance window (already stored ranges cost no request);
    True when Binance could not be reached for them."""
    if (
        warmup == 0
        or len(window.candles) == 0
        or market.exchange is None
        or window.stale
        or _PARTITION[window.source] != "binance"
    ):
        return False
    first = int(window.candles.open_time[0])
    # One bar of slack: a month's length is only approximated by interval_ms.
    lo = max(0, first - (warmup + 1) * interval_ms(interval))
    if lo > first - 1:
        return False
    return market.history(symbol, interval, start_ms=lo, end_ms=first - 1).stale


def _values(values: np.ndarray) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values.tolist()]
