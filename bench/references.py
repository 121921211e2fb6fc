"""The reference implementations the benches measure us against, written the way their own docs write
them, in one place so every bench compares with the same thing."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from utils.market_data.candles import Candles


def backtesting_py_sma_cross(candles: Candles, fast: int, slow: int, fee: float) -> pd.Series:
    """The SMA crossover (long on the cross up, flat on the cross down) in backtesting.py: its stats,
    with the trades under ``"_trades"`` and the final equity under ``"Equity Final [$]"``."""
    import backtesting.backtesting
    from backtesting import Strategy
    from backtesting.lib import FractionalBacktest

    # No progress bar (backtesting.py draws one whenever tqdm is installed, as optuna brings it): drawing it
    # is terminal output, not the engine's work, and would flatter every ratio against this reference.
    backtesting.backtesting._tqdm = lambda seq, **_: seq

    def sma(values: np.ndarray, n: int) -> np.ndarray:
        averaged: np.ndarray = pd.Series(values).rolling(n).mean().to_numpy()
        return averaged

    class SmaCross(Strategy):  # type: ignore[misc]  # backtesting.py ships no types
        def init(self) -> None:
            self.fast = self.I(sma, self.data.Close, fast)
            self.slow = self.I(sma, self.data.Close, slow)

        def next(self) -> None:
            f, s = self.fast, self.slow
            if self.position:
                if f[-2] >= s[-2] and f[-1] < s[-1]:
                    self.position.close()
            elif f[-2] <= s[-2] and f[-1] > s[-1]:
                self.buy()

    frame = candles.to_frame()
    frame.index = pd.to_datetime(frame.pop("open_time"), unit="ms")
    frame.columns = ["Open", "High", "Low", "Close", "Volume"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats: pd.Series = FractionalBacktest(frame, SmaCross, cash=10_000, commission=fee).run()
    return stats
