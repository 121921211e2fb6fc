"""Walk-forward windows: where each in-sample and out-of-sample range of an optimisation lies in the bars.

Bars are positions 0..n_bars-1 in time order; every range is half-open ``[start, end)``. The out-of-sample
(OOS) windows are ``n_windows`` equal, adjacent ranges that end at the last bar, so the most recent data is
always tested; together they cover ``[n_bars - n_windows * oos, n_bars)``. Window i optimises on its
in-sample (IS) range, which ends ``gap`` bars before its OOS range starts (the purge: bars whose
indicators or trades could straddle the boundary are used by neither side):

* rolling: every IS range has the same length ``in_sample`` and slides forward with its OOS range;
  bars before the first IS range (when the lengths do not fill n_bars) are not used.
* anchored: every IS range starts at bar 0 and expands; ``in_sample`` is the length of the first
  (shortest) one, which also takes any bars the lengths leave over.

A later IS range may contain an earlier window's OOS bars: that is walk-forward, each window only ever
looks back. An IS range never overlaps its own OOS range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["MAX_WINDOWS", "Window", "walk_forward_windows"]

# The most windows the API accepts: each window is a full optimisation, so 50 already multiplies the
# cost of one study by 50, and OOS windows shorter than a few dozen bars say little.
MAX_WINDOWS = 50

Mode = Literal["anchored", "rolling"]


@dataclass(frozen=True, slots=True)
class Window:
    """One walk-forward window: in-sample ``[is_start, is_end)``, out-of-sample ``[oos_start, oos_end)``."""

    index: int
    is_start: int
    is_end: int
    oos_start: int
    oos_end: int

    @property
    def is_bars(self) -> int:
        return self.is_end - self.is_start

    @property
    def oos_bars(self) -> int:
        return self.oos_end - self.oos_start

    @property
    def gap(self) -> int:
        """Bars purged between the in-sample end and the out-of-sample start."""
        return self.oos_start - self.is_end


def walk_forward_windows(
    n_bars: int,
    n_windows: int,
    *,
    mode: Mode = "rolling",
    in_sample: int | float | None = None,
    out_of_sample: int | float | None = None,
    gap: int = 0,
) -> tuple[Window, ...]:
    """The walk-forward windows over ``n_bars`` bars, in time order (layout: module docstring).

    ``in_sample`` / ``out_of_sample``: a length in bars (int >= 1) or a fraction of ``n_bars`` (float
    strictly between 0 and 1, rounded down to whole bars). When one is None it takes what is left:
    ``out_of_sample = (n_bars - in_sample - gap) // n_windows`` or ``in_sample = n_bars - gap - n_windows *
    out_of_sample``; when both are None, ``out_of_sample = (n_bars - gap) // (n_windows + 1)`` and the
    in-sample takes the rest (at least one OOS length), as ``ml_engine.walk_forward_splits`` does.
    ``gap``: bars between each IS end and its OOS start (default 0).

    ValueError with the numbers when the request is impossible: n_bars < 2, n_windows < 1 or above
    MAX_WINDOWS, gap < 0, an unknown mode, a bad length or fraction, a window shorter than one bar, or
    ``in_sample + gap + n_windows * out_of_sample > n_bars``.
    """
    _require_int(n_bars, "n_bars", 2)
    _require_int(n_windows, "n_windows", 1)
    if n_windows > MAX_WINDOWS:
        raise ValueError(f"n_windows must be at most {MAX_WINDOWS}, got {n_windows}")
    _require_int(gap, "gap", 0)
    if mode not in ("anchored", "rolling"):
        raise ValueError(f"mode must be 'anchored' or 'rolling', got {mode!r}")

    is_len = None if in_sample is None else _bars(in_sample, n_bars, "in_sample")
    oos_len = None if out_of_sample is None else _bars(out_of_sample, n_bars, "out_of_sample")
    if is_len is None and oos_len is None:
        oos_len = (n_bars - gap) // (n_windows + 1)
    if oos_len is None:
        assert is_len is not None
        oos_len = (n_bars - is_len - gap) // n_windows
    if is_len is None:
        is_len = n_bars - gap - n_windows * oos_len
    # The fewest bars the request could work with (each range at least one bar), for the message.
    needed = max(is_len, 1) + gap + n_windows * max(oos_len, 1)
    if oos_len < 1 or is_len < 1 or needed > n_bars:
        raise ValueError(
            f"too few bars for {n_windows} walk-forward window(s): an in-sample of {is_len} bar(s), a gap "
            f"of {gap} and out-of-sample windows of {oos_len} bar(s) need at least {needed} bars and every "
            f"range at least 1 bar; there are {n_bars}"
        )

    first_oos = n_bars - n_windows * oos_len
    windows = []
    for i in range(n_windows):
        oos_start = first_oos + i * oos_len
        is_end = oos_start - gap
        is_start = 0 if mode == "anchored" else is_end - is_len
        windows.append(Window(i, is_start, is_end, oos_start, oos_start + oos_len))
    return tuple(windows)


def _require_int(value: object, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _bars(length: int | float, n_bars: int, name: str) -> int:
    """A length in bars from bars (int) or a fraction of n_bars (float in (0, 1))."""
    if isinstance(length, bool):
        raise ValueError(f"{name} must be a number of bars or a fraction, got {length!r}")
    if isinstance(length, int):
        if length < 1:
            raise ValueError(f"{name} must be at least 1 bar, got {length}")
        return length
    if isinstance(length, float) and math.isfinite(length) and 0.0 < length < 1.0:
        return math.floor(length * n_bars)
    raise ValueError(
        f"{name} must be an int >= 1 (bars) or a float in (0, 1) (fraction of bars), got {length!r}"
    )
