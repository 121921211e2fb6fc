"""Built-in strategy rsi_mean_reversion: buy an oversold RSI, sell an overbought one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backtester.strategies import IndicatorUse, require, require_float, require_int
from ml_engine.indicators import rsi
from utils.market_data.candles import Candles

NAME = "rsi_mean_reversion"
DESCRIPTION = "Buy when the RSI of the close is below the oversold level; sell when it is above overbought."


@dataclass(frozen=True, slots=True)
class Params:
    period: int = 14
    oversold: float = 30.0
    overbought: float = 70.0

    def __post_init__(self) -> None:
        require_int(self.period, "period", 2)
        require_float(self.oversold, "oversold", 0.0, 100.0)
        require_float(self.overbought, "overbought", 0.0, 100.0)
        require(
            self.oversold < self.overbought,
            f"oversold must be < overbought, got oversold={self.oversold}, overbought={self.overbought}",
        )


def warmup(params: Params) -> int:
    # RSI needs `period` price changes: its first value is on bar `period`.
    return params.period


def signals(candles: Candles, params: Params) -> tuple[np.ndarray, np.ndarray]:
    value = rsi(candles.close, params.period)
    # Levels, not crosses: the engine ignores an entry while in a position and an exit while flat.
    # NaN (warm-up) compares False, so there is no signal before the first RSI value.
    return value < params.oversold, value > params.overbought


def indicators(params: Params) -> tuple[IndicatorUse, ...]:
    return (IndicatorUse("rsi", {"period": params.period}, (params.oversold, params.overbought)),)
