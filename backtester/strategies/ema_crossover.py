"""Built-in strategy ema_crossover: long while a fast EMA is above a slow EMA, entered and left on crosses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backtester.strategies import IndicatorUse, crosses, require_fast_slow
from ml_engine.indicators import ema
from utils.market_data.candles import Candles

NAME = "ema_crossover"
DESCRIPTION = "Buy when the fast EMA of the close crosses above the slow EMA; sell when it crosses below."


@dataclass(frozen=True, slots=True)
class Params:
    fast: int = 12
    slow: int = 26

    def __post_init__(self) -> None:
        require_fast_slow(self.fast, self.slow)


def warmup(params: Params) -> int:
    # TA-Lib seeds the EMA with an SMA, so the slow EMA starts on bar slow-1; a cross needs the bar before.
    return params.slow


def signals(candles: Candles, params: Params) -> tuple[np.ndarray, np.ndarray]:
    return crosses(ema(candles.close, params.fast), ema(candles.close, params.slow))


def indicators(params: Params) -> tuple[IndicatorUse, ...]:
    return IndicatorUse("ema", {"period": params.fast}), IndicatorUse("ema", {"period": params.slow})
