"""Fewer points for a picture, extremes kept: a drawdown's bottom, an equity peak or a wick never vanish.

A series of ``n`` points is cut into consecutive buckets of ``ceil(n / max_buckets)`` points (so at most
``max_buckets`` of them), by position, which on a candle series is by time:

* ``minmax_indices``: for a line, the lowest and the highest point of each bucket, in their order, plus
  the first and last point of the series. The drawn line passes through every extreme of the original;
  what it loses is the wiggle between them. NaN points break a line: a bucket that is all NaN keeps one,
  so the break stays visible.
* ``ohlc_buckets``: candles merged per bucket into one (first open, highest high, lowest low, last close,
  summed volume, the first open time): the candle of the longer interval.
* ``bar_buckets``: bars summed per bucket (volume), or the largest kept.
* ``event_indices``: sparse events (trade markers) over the x range cut into equal widths; each width
  keeps its lowest and highest event when there are more events than ``max_events``.

No bucket is ever invented: every point returned is a point of the input, at its own x.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

__all__ = ["bar_buckets", "bucket_size", "event_indices", "minmax_indices", "ohlc_buckets"]


def bucket_size(n: int, max_buckets: int) -> int:
    """Points per bucket so that ``n`` points make at most ``max_buckets`` buckets (1: no downsampling)."""
    if max_buckets < 1:
        raise ValueError(f"max_buckets must be >= 1, got {max_buckets}")
    return max(1, math.ceil(n / max_buckets))


def _padded(values: np.ndarray, size: int, fill: float) -> np.ndarray:
    """``values`` padded with ``fill`` to whole buckets and shaped (buckets, size)."""
    n = values.shape[0]
    buckets = math.ceil(n / size)
    out = np.full(buckets * size, fill, dtype=np.float64)
    out[:n] = values
    return out.reshape(buckets, size)


def minmax_indices(y: np.ndarray, max_buckets: int) -> np.ndarray:
    """Sorted positions to draw of ``y``: each bucket's minimum and maximum, the first and last point."""
    values = np.asarray(y, dtype=np.float64)
    n = values.shape[0]
    size = bucket_size(n, max_buckets)
    if size == 1:
        return np.arange(n)
    finite = np.isfinite(values)
    starts = np.arange(0, n, size)
    low = np.argmin(_padded(np.where(finite, values, np.inf), size, np.inf), axis=1) + starts
    high = np.argmax(_padded(np.where(finite, values, -np.inf), size, -np.inf), axis=1) + starts
    any_finite = _padded(finite.astype(np.float64), size, 0.0).max(axis=1) > 0
    # A bucket with no finite value keeps its first point (a NaN): the line's break stays drawn.
    keep = np.concatenate([low[any_finite], high[any_finite], starts[~any_finite], [0, n - 1]])
    return np.unique(np.minimum(keep, n - 1))


def ohlc_buckets(
    x: np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    max_buckets: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Candles merged per bucket: (x, open, high, low, close, bucket size)."""
    n = np.asarray(x).shape[0]
    size = bucket_size(n, max_buckets)
    if size == 1:
        return np.asarray(x), np.asarray(open_), np.asarray(high), np.asarray(low), np.asarray(close), 1
    starts = np.arange(0, n, size)
    ends = np.minimum(starts + size, n) - 1
    return (
        np.asarray(x)[starts],
        np.asarray(open_)[starts],
        np.maximum.reduceat(np.asarray(high, dtype=np.float64), starts),
        np.minimum.reduceat(np.asarray(low, dtype=np.float64), starts),
        np.asarray(close)[ends],
        size,
    )


def bar_buckets(
    x: np.ndarray, y: np.ndarray, max_buckets: int, how: Literal["sum", "max"] = "sum"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Bars per bucket: (x of each bucket's first bar, its sum or maximum, bucket starts, bucket size)."""
    values = np.asarray(y, dtype=np.float64)
    n = values.shape[0]
    size = bucket_size(n, max_buckets)
    starts = np.arange(0, n, size)
    if size == 1:
        return np.asarray(x), values, starts, 1
    if how == "sum":
        merged = np.add.reduceat(np.nan_to_num(values), starts)
    else:
        merged = np.fmax.reduceat(values, starts)
    return np.asarray(x)[starts], merged, starts, size


def event_indices(x: np.ndarray, y: np.ndarray, max_events: int) -> np.ndarray:
    """Sorted positions of the events to draw: all of them when they fit in ``max_events``; otherwise the
    x range cut into ``max_events // 2`` equal widths, each keeping its lowest and highest event."""
    xs = np.asarray(x, dtype=np.float64)
    n = xs.shape[0]
    if n <= max_events:
        return np.arange(n)
    if max_events < 2:
        raise ValueError(f"max_events must be >= 2, got {max_events}")
    widths = max_events // 2
    lo, hi = float(np.nanmin(xs)), float(np.nanmax(xs))
    span = hi - lo if hi > lo else 1.0
    bucket = np.minimum(((xs - lo) / span * widths).astype(np.int64), widths - 1)
    values = np.asarray(y, dtype=np.float64)
    order = np.lexsort((values, bucket))  # by bucket, then by y: a bucket's first is its lowest
    sorted_bucket = bucket[order]
    first = np.flatnonzero(np.r_[True, sorted_bucket[1:] != sorted_bucket[:-1]])
    last = np.r_[first[1:] - 1, n - 1]
    return np.unique(np.concatenate([order[first], order[last]]))
