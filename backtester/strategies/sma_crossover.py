"""Built-in strategy sma_crossover: long while a fast SMA is above a slow SMA, entered and left on crosses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backtester.strategies import IndicatorUse, crosses, require_fast_slow
from ml_engine.indicators import sma
from utils.market_data.candles import Candles

NAME = "sma_crossover"
DESCRIPTION = "Buy when the fast SMA of the close crosses above the slow SMA; sell when it crosses below."


@dataclass(frozen=True, slots=True)
class Params:
    fast: int = 10
    slow: int = 20

    def __post_init__(self) -> None:
        require_fast_slow(self.fast, self.slow)


def warmup(params: Params) -> int:
    # The slow SMA's first value is on bar slow-1; a cross also needs the bar before.
    return params.slow


def signals(candles: Candles, params: Params) -> tuple[np.ndarray, np.ndarray]:
    return crosses(sma(candles.close, params.fast), sma(candles.close, params.slow))


def indicators(params: Params) -> tuple[IndicatorUse, ...]:
    return IndicatorUse("sma", {"period": params.fast}), IndicatorUse("sma", {"period": params.slow})
