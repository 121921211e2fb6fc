"""The indicator registry for the strategy engine: parameter specs, ``INDICATORS`` and ``compute``.

``INDICATORS`` maps each indicator name to an ``IndicatorSpec`` (inputs, parameters with ranges,
output names, warm-up); ``compute`` runs one by name from a candles mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ml_engine.indicators.api import (
    adx,
    atr,
    bollinger,
    cci,
    donchian,
    ema,
    macd,
    obv,
    roc,
    rsi,
    sma,
    stochastic,
    vwap,
    williams_r,
    wma,
)
from ml_engine.indicators.inputs import FloatArray

MAX_PERIOD = 100_000  # TA-Lib's upper bound for every period


@dataclass(frozen=True)
class ParamSpec:
    """One indicator parameter: its type (int or float), default and inclusive range."""

    name: str
    kind: type
    default: int | float
    minimum: int | float
    maximum: int | float

    def coerce(self, value: Any) -> int | float:
        """Validate ``value`` (e.g. from user JSON) and return it as ``kind``; ValueError otherwise."""
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise ValueError(f"parameter {self.name!r} must be a number, got {value!r}")
        if self.kind is int:
            if not float(value).is_integer():
                raise ValueError(f"parameter {self.name!r} must be an integer, got {value!r}")
            value = int(value)
        else:
            value = float(value)
            if not np.isfinite(value):
                raise ValueError(f"parameter {self.name!r} must be finite, got {value!r}")
        if not self.minimum <= value <= self.maximum:
            raise ValueError(
                f"parameter {self.name!r} must be between {self.minimum} and {self.maximum}, got {value}"
            )
        checked: int | float = value
        return checked


@dataclass(frozen=True)
class IndicatorSpec:
    """What the strategy engine needs to know about an indicator to validate and run it.

    ``inputs`` are candle column names passed positionally to ``func``; ``params`` its keyword
    parameters; ``outputs`` names the returned arrays (single-output indicators: ``("value",)``).
    """

    name: str
    func: Callable[..., Any]
    inputs: tuple[str, ...]
    params: tuple[ParamSpec, ...]
    outputs: tuple[str, ...]
    lookback: Callable[[Mapping[str, Any]], int] = field(repr=False)
    check: Callable[[Mapping[str, Any]], None] | None = field(default=None, repr=False)

    def resolve_params(self, params: Mapping[str, Any] | None = None) -> dict[str, int | float]:
        """Defaults filled in, every value checked against its ParamSpec; ValueError on any problem."""
        given = dict(params or {})
        known = {spec.name for spec in self.params}
        unknown = sorted(set(given) - known)
        if unknown:
            raise ValueError(f"{self.name}: unknown parameter(s) {unknown}; expected {sorted(known)}")
        resolved = {spec.name: spec.coerce(given.get(spec.name, spec.default)) for spec in self.params}
        if self.check is not None:
            self.check(resolved)
        return resolved

    def warmup(self, params: Mapping[str, Any] | None = None) -> int:
        """Number of leading NaN bars for NaN-free input (TA-Lib's lookback)."""
        return self.lookback(self.resolve_params(params))


def _period_param(name: str, default: int, minimum: int) -> ParamSpec:
    return ParamSpec(name, int, default, minimum, MAX_PERIOD)


def _check_macd(params: Mapping[str, Any]) -> None:
    if params["fast"] > params["slow"]:
        raise ValueError(f"macd: fast must be <= slow, got fast={params['fast']}, slow={params['slow']}")


_HLC = ("high", "low", "close")
_VALUE = ("value",)


def _one_period(default: int, minimum: int) -> tuple[ParamSpec, ...]:
    return (_period_param("period", default, minimum),)


INDICATORS: dict[str, IndicatorSpec] = {
    spec.name: spec
    for spec in (
        IndicatorSpec("sma", sma, ("close",), _one_period(20, 1), _VALUE, lookback=lambda p: p["period"] - 1),
        IndicatorSpec("ema", ema, ("close",), _one_period(20, 1), _VALUE, lookback=lambda p: p["period"] - 1),
        IndicatorSpec("wma", wma, ("close",), _one_period(20, 1), _VALUE, lookback=lambda p: p["period"] - 1),
        IndicatorSpec("rsi", rsi, ("close",), _one_period(14, 2), _VALUE, lookback=lambda p: p["period"]),
        IndicatorSpec(
            "macd",
            macd,
            ("close",),
            (_period_param("fast", 12, 2), _period_param("slow", 26, 2), _period_param("signal", 9, 1)),
            ("macd", "signal", "hist"),
            lookback=lambda p: p["slow"] + p["signal"] - 2,
            check=_check_macd,
        ),
        IndicatorSpec(
            "bollinger",
            bollinger,
            ("close",),
            (_period_param("period", 20, 2), ParamSpec("k", float, 2.0, 0.0, 10.0)),
            ("upper", "middle", "lower"),
            lookback=lambda p: p["period"] - 1,
        ),
        IndicatorSpec("atr", atr, _HLC, _one_period(14, 1), _VALUE, lookback=lambda p: p["period"]),
        IndicatorSpec(
            "stochastic",
            stochastic,
            _HLC,
            (_period_param("k_period", 14, 1), _period_param("d_period", 3, 1)),
            ("k", "d"),
            lookback=lambda p: p["k_period"] + p["d_period"] - 2,
        ),
        IndicatorSpec("obv", obv, ("close", "volume"), (), _VALUE, lookback=lambda p: 0),
        IndicatorSpec("roc", roc, ("close",), _one_period(10, 1), _VALUE, lookback=lambda p: p["period"]),
        IndicatorSpec(
            "williams_r", williams_r, _HLC, _one_period(14, 2), _VALUE, lookback=lambda p: p["period"] - 1
        ),
        IndicatorSpec("cci", cci, _HLC, _one_period(20, 2), _VALUE, lookback=lambda p: p["period"] - 1),
        IndicatorSpec("adx", adx, _HLC, _one_period(14, 2), _VALUE, lookback=lambda p: 2 * p["period"] - 1),
        IndicatorSpec(
            "donchian",
            donchian,
            ("high", "low"),
            _one_period(20, 1),
            ("upper", "lower"),
            lookback=lambda p: p["period"] - 1,
        ),
        IndicatorSpec(
            "vwap", vwap, (*_HLC, "volume"), _one_period(20, 1), _VALUE, lookback=lambda p: p["period"] - 1
        ),
    )
}


def compute(
    name: str, candles: Mapping[str, ArrayLike], params: Mapping[str, Any] | None = None
) -> tuple[FloatArray, ...]:
    """Run registry indicator ``name`` on ``candles`` (column name -> values) with ``params``
    (defaults for missing ones); always returns a tuple, one array per ``spec.outputs``."""
    spec = INDICATORS.get(name)
    if spec is None:
        raise ValueError(f"unknown indicator {name!r}; known: {sorted(INDICATORS)}")
    resolved = spec.resolve_params(params)
    missing = [column for column in spec.inputs if column not in candles]
    if missing:
        raise ValueError(f"{name} needs candle column(s) {missing}")
    result = spec.func(*(candles[column] for column in spec.inputs), **resolved)
    return result if isinstance(result, tuple) else (result,)
