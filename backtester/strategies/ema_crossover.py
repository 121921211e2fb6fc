"""Built-in strategy ema_crossover: long while a fast EMA is above a slow EMA, entered and left on crosses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backtester.data import Candles
from backtester.strategies import cross_above, cross_below, require, require_int
from ml_engine.indicators import ema

NAME = "ema_crossover"
DESCRIPTION = "Buy when the fast EMA of the close crosses above the slow EMA; sell when it crosses below."


@dataclass(frozen=True, slots=True)
class Params:
    fast: int = 12
    slow: int = 26

    def __post_init__(self) -> None:
        require_int(self.fast, "fast", 1)
        require_int(self.slow, "slow", 2)
        require(self.fast < self.slow, f"fast must be < slow, got fast={self.fast}, slow={self.slow}")


def warmup(params: Params) -> int:
    # TA-Lib seeds the EMA with an SMA, so the slow EMA starts on bar slow-1; a cross needs the bar before.
    return params.slow


def signals(candles: Candles, params: Params) -> tuple[np.ndarray, np.ndarray]:
    fast = ema(candles.close, params.fast)
    slow = ema(candles.close, params.slow)
    return cross_above(fast, slow), cross_below(fast, slow)
