"""Built-in strategy bollinger_breakout: buy a close breaking above the upper Bollinger band."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backtester.strategies import IndicatorUse, cross_above, require_float, require_int
from ml_engine.indicators import bollinger
from utils.market_data.candles import Candles

NAME = "bollinger_breakout"
DESCRIPTION = "Buy when the close crosses above the upper Bollinger band; sell when it closes below the mid."


@dataclass(frozen=True, slots=True)
class Params:
    period: int = 20
    k: float = 2.0  # band width in standard deviations

    def __post_init__(self) -> None:
        require_int(self.period, "period", 2)
        require_float(self.k, "k", 0.0, 10.0)


def warmup(params: Params) -> int:
    # The bands start on bar period-1; the breakout (a cross) needs the bar before, and the exit
    # only matters once a position exists.
    return params.period


def signals(candles: Candles, params: Params) -> tuple[np.ndarray, np.ndarray]:
    upper, middle, _ = bollinger(candles.close, params.period, params.k)
    exits = candles.close < middle
    exits[: params.period] = False  # keep the warm-up silent on both arrays
    return cross_above(candles.close, upper), exits


def indicators(params: Params) -> tuple[IndicatorUse, ...]:
    return (IndicatorUse("bollinger", {"period": params.period, "k": params.k}),)
