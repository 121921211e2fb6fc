"""Built-in strategies: each module turns candles and typed parameters into entry/exit signal arrays.

Every strategy module exposes ``NAME``, ``DESCRIPTION`` (one line), a frozen dataclass ``Params`` with typed
defaults that validates itself, ``warmup(params) -> int`` (bars before the first possible signal),
``signals(candles, params) -> (entries, exits)``: boolean arrays, one value per candle, where the value on
bar t uses candles up to t only, and ``indicators(params)``: the registry indicators ``signals`` reads,
with the levels it compares them with (what a report draws beside the price). Indicators come from
``ml_engine.indicators`` (TA-Lib-exact), never a copy.

``BUILTINS`` maps each name to a ``BuiltinStrategy``; ``strategy_registry.py`` is the one place that looks a
strategy up by name.

Crossover rule (the project's documented rule): ``a`` crosses above ``b`` on bar t when ``a <= b`` on bar
t-1 and ``a > b`` on bar t; below when ``a >= b`` on t-1 and ``a < b`` on t. A NaN on either bar is no cross.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from utils.market_data.candles import Candles

# Bars per block of a cross test: its four comparisons read each input once from memory rather than four
# times (on a million bars each input is 8 MB, and two workers on two cores share the memory traffic).
_CROSS_BLOCK = 131_072


def _cross(a: np.ndarray, b: np.ndarray | float, before: np.ufunc, now: np.ufunc) -> np.ndarray:
    """``before(a, b)`` on the previous bar and ``now(a, b)`` on this one, bar by bar (False on bar 0)."""
    b_arr = np.broadcast_to(np.asarray(b, dtype=np.float64), a.shape)
    out = np.zeros(a.shape, dtype=bool)
    n = a.shape[0]
    # NaN compares False, so warm-up bars never cross.
    for start in range(1, n, _CROSS_BLOCK):
        stop = min(start + _CROSS_BLOCK, n)
        np.logical_and(
            before(a[start - 1 : stop - 1], b_arr[start - 1 : stop - 1]),
            now(a[start:stop], b_arr[start:stop]),
            out=out[start:stop],
        )
    return out


def cross_above(a: np.ndarray, b: np.ndarray | float) -> np.ndarray:
    """True on bars where `a` crosses above `b` (strict: a <= b on the previous bar, a > b now)."""
    return _cross(a, b, np.less_equal, np.greater)


def cross_below(a: np.ndarray, b: np.ndarray | float) -> np.ndarray:
    """True on bars where `a` crosses below `b` (strict: a >= b on the previous bar, a < b now)."""
    return _cross(a, b, np.greater_equal, np.less)


def crosses(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(entries, exits) of a crossover strategy: `a` crossing above `b`, and crossing below it."""
    return cross_above(a, b), cross_below(a, b)


def require(ok: bool, message: str) -> None:
    """Parameter validation: a ValueError whose message names the parameter."""
    if not ok:
        raise ValueError(message)


def require_int(value: object, name: str, minimum: int) -> int:
    # bool is an int subclass; True as a period is a bug, not a 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    require(value >= minimum, f"{name} must be >= {minimum}, got {value!r}")
    return value


def require_float(value: object, name: str, low: float, high: float) -> float:
    """A real number in the open interval (low, high)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    require(low < value < high, f"{name} must be > {low} and < {high}, got {value!r}")
    return float(value)


def require_fast_slow(fast: object, slow: object) -> None:
    """The periods of a fast/slow moving-average pair: integers, fast >= 1, slow >= 2, fast < slow."""
    fast_period = require_int(fast, "fast", 1)
    slow_period = require_int(slow, "slow", 2)
    require(fast_period < slow_period, f"fast must be < slow, got fast={fast}, slow={slow}")


@dataclass(frozen=True, slots=True)
class IndicatorUse:
    """An indicator a strategy reads: a registry name (``ml_engine.indicators.INDICATORS``), its
    parameters, and the constant levels the strategy compares it with (RSI 30 and 70)."""

    name: str
    params: dict[str, int | float]
    levels: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class BuiltinStrategy:
    """One built-in strategy as the registry sees it."""

    name: str
    description: str
    params_type: type[Any]  # the module's frozen Params dataclass
    warmup: Callable[[Any], int]
    signals: Callable[[Candles, Any], tuple[np.ndarray, np.ndarray]]
    indicators: Callable[[Any], tuple[IndicatorUse, ...]]

    def default_params(self) -> Any:
        return self.params_type()

    def make_params(self, values: Mapping[str, Any] | None = None) -> Any:
        """Params from a mapping (e.g. a JSON body): unknown names and invalid values raise ValueError."""
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(self.params_type)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown parameter(s) for {self.name}: {', '.join(unknown)}; allowed: "
                f"{', '.join(sorted(known))}"
            )
        # A whole float (10.0 from JSON) is accepted where an int is expected.
        for field in dataclasses.fields(self.params_type):
            value = values.get(field.name)
            if field.type == "int" and isinstance(value, float) and value.is_integer():
                values[field.name] = int(value)
        return self.params_type(**values)

    def parameters(self) -> list[dict[str, Any]]:
        """Name, type and default of each parameter, for listings."""
        defaults = self.params_type()
        return [
            {"name": f.name, "type": str(f.type), "default": getattr(defaults, f.name)}
            for f in dataclasses.fields(self.params_type)
        ]


# Imported after the helpers above, which the strategy modules use.
from backtester.strategies import (  # noqa: E402
    bollinger_breakout,
    ema_crossover,
    macd_signal,
    rsi_mean_reversion,
    sma_crossover,
)

_MODULES = (sma_crossover, ema_crossover, rsi_mean_reversion, macd_signal, bollinger_breakout)
BUILTINS: dict[str, BuiltinStrategy] = {
    m.NAME: BuiltinStrategy(m.NAME, m.DESCRIPTION, m.Params, m.warmup, m.signals, m.indicators)
    for m in _MODULES
}

__all__ = ["BUILTINS", "BuiltinStrategy", "IndicatorUse", "cross_above", "cross_below", "crosses"]
