"""Training targets: forward returns over a horizon and the up/down(/flat) class built from them.

``fwd[t] = close[t + horizon] / close[t] - 1``: the return from bar t's close, where a signal is
decided, to the close ``horizon`` bars later. The last ``horizon`` bars have no full future: their
``fwd`` is NaN and they are never usable (dropped, never filled).

Classes: ``DOWN`` (0) when ``fwd < -dead_zone``, ``UP`` (1) when ``fwd > dead_zone``, and "flat" when
``|fwd| <= dead_zone`` (with ``dead_zone = 0`` that is only an exactly unchanged close). A fee-aware
dead zone is the round-trip cost, ``2 * fee_rate`` (``fee_dead_zone``): moves that small cannot pay
for a trade. Flat rows are either dropped (``flat="drop"``: not usable) or their own class ``FLAT``
(2) with ``flat="class"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "DOWN",
    "FLAT",
    "NO_LABEL",
    "UP",
    "FlatMode",
    "Labels",
    "fee_dead_zone",
    "forward_return",
    "make_labels",
]

DOWN, UP, FLAT = 0, 1, 2
NO_LABEL = -1  # the value of ``y`` where ``usable`` is False
FlatMode = Literal["drop", "class"]


@dataclass(frozen=True, eq=False)
class Labels:
    """Per-bar targets aligned with the candles: use ``y[usable]`` (and the features' matching rows)."""

    fwd: np.ndarray  # (n,) float64, NaN for the last `horizon` bars
    y: np.ndarray  # (n,) int8: DOWN, UP, FLAT (flat="class" only) or NO_LABEL where not usable
    usable: np.ndarray  # (n,) bool
    horizon: int
    dead_zone: float
    flat: FlatMode

    @property
    def classes(self) -> tuple[int, ...]:
        """Every class this labelling can produce, in the order models' probabilities use."""
        return (DOWN, UP, FLAT) if self.flat == "class" else (DOWN, UP)


def fee_dead_zone(fee_rate: float) -> float:
    """The round-trip cost of a trade (one fee in, one out): a move within it cannot pay for itself."""
    return 2.0 * fee_rate


def forward_return(close: np.ndarray, horizon: int) -> np.ndarray:
    """``close[t + horizon] / close[t] - 1``; NaN for the last ``horizon`` bars."""
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"horizon must be an integer >= 1, got {horizon!r}")
    close = np.asarray(close, dtype=np.float64)
    fwd = np.full(close.shape[0], np.nan)
    if close.shape[0] > horizon:
        with np.errstate(divide="ignore", invalid="ignore"):
            fwd[:-horizon] = close[horizon:] / close[:-horizon] - 1.0
    return fwd


def make_labels(close: np.ndarray, horizon: int, dead_zone: float = 0.0, flat: FlatMode = "drop") -> Labels:
    """Forward returns and classes for every bar (module docstring has the rules)."""
    if isinstance(dead_zone, bool) or not isinstance(dead_zone, int | float):
        raise ValueError(f"dead_zone must be a number, got {dead_zone!r}")
    if not (math.isfinite(dead_zone) and dead_zone >= 0):
        raise ValueError(f"dead_zone must be finite and >= 0, got {dead_zone!r}")
    if flat not in ("drop", "class"):
        raise ValueError(f"flat must be 'drop' or 'class', got {flat!r}")
    fwd = forward_return(close, horizon)
    known = np.isfinite(fwd)
    up = known & (fwd > dead_zone)
    down = known & (fwd < -dead_zone)
    is_flat = known & ~up & ~down
    y = np.full(fwd.shape[0], NO_LABEL, dtype=np.int8)
    y[up] = UP
    y[down] = DOWN
    if flat == "class":
        y[is_flat] = FLAT
        usable = known
    else:
        usable = up | down
    return Labels(fwd, y, usable, horizon, float(dead_zone), flat)
