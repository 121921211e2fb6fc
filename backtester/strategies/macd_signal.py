"""Built-in strategy macd_signal: long while the MACD line is above its signal line, traded on crosses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backtester.strategies import IndicatorUse, crosses, require, require_int
from ml_engine.indicators import macd
from utils.market_data.candles import Candles

NAME = "macd_signal"
DESCRIPTION = "Buy when the MACD line crosses above its signal line; sell when it crosses below."


@dataclass(frozen=True, slots=True)
class Params:
    fast: int = 12
    slow: int = 26
    signal: int = 9

    def __post_init__(self) -> None:
        require_int(self.fast, "fast", 2)
        require_int(self.slow, "slow", 2)
        require_int(self.signal, "signal", 1)
        require(self.fast < self.slow, f"fast must be < slow, got fast={self.fast}, slow={self.slow}")


def warmup(params: Params) -> int:
    # TA-Lib's MACD and signal line both start on bar slow + signal - 2; a cross needs the bar before.
    return params.slow + params.signal - 1


def signals(candles: Candles, params: Params) -> tuple[np.ndarray, np.ndarray]:
    line, signal_line, _ = macd(candles.close, params.fast, params.slow, params.signal)
    return crosses(line, signal_line)


def indicators(params: Params) -> tuple[IndicatorUse, ...]:
    return (IndicatorUse("macd", {"fast": params.fast, "slow": params.slow, "signal": params.signal}),)
