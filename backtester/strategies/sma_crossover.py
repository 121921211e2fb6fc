"""Built-in strategy sma_crossover: long while a fast SMA is above a slow SMA, entered and left on crosses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backtester.data import Candles
from backtester.strategies import cross_above, cross_below, require, require_int
from ml_engine.indicators import sma

NAME = "sma_crossover"
DESCRIPTION = "Buy when the fast SMA of the close crosses above the slow SMA; sell when it crosses below."


@dataclass(frozen=True, slots=True)
class Params:
    fast: int = 10
    slow: int = 20

    def __post_init__(self) -> None:
        require_int(self.fast, "fast", 1)
        require_int(self.slow, "slow", 2)
        require(self.fast < self.slow, f"fast must be < slow, got fast={self.fast}, slow={self.slow}")


def warmup(params: Params) -> int:
    # The slow SMA's first value is on bar slow-1; a cross also needs the bar before.
    return params.slow


def signals(candles: Candles, params: Params) -> tuple[np.ndarray, np.ndarray]:
    fast = sma(candles.close, params.fast)
    slow = sma(candles.close, params.slow)
    return cross_above(fast, slow), cross_below(fast, slow)
