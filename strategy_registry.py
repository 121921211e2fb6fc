"""The one entry point to every strategy: list them, find one by name, and produce its signals.

Today that means the built-ins of `backtester/strategies/`; saved JSON strategies join here
later, so callers (backtests, sweeps, the Mother AI) never care where a strategy came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from backtester.data import Candles
from backtester.strategies import BUILTINS, BuiltinStrategy
from utils.errors import InvalidInput, NotFound


@dataclass(frozen=True, slots=True)
class StrategyInfo:
    name: str
    kind: str  # "builtin" (saved JSON strategies come later)
    description: str
    parameters: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class ResolvedStrategy:
    """A strategy with concrete, validated parameters, ready to produce signals."""

    name: str
    params: dict[str, Any]
    warmup: int
    _builtin: BuiltinStrategy
    _params: Any

    def signals(self, candles: Candles) -> tuple[np.ndarray, np.ndarray]:
        """Entry and exit booleans per candle; the value on bar t uses candles up to t only."""
        return self._builtin.signals(candles, self._params)


def list_strategies() -> list[StrategyInfo]:
    return [
        StrategyInfo(s.name, "builtin", s.description, s.parameters())
        for s in sorted(BUILTINS.values(), key=_name)
    ]


def resolve(name: str, params: Mapping[str, Any] | None = None) -> ResolvedStrategy:
    """The named strategy with `params` applied over its defaults; 404 unknown name, 422 bad params."""
    builtin = BUILTINS.get(name)
    if builtin is None:
        raise NotFound(
            f"Unknown strategy {name!r}; available: {', '.join(sorted(BUILTINS))}.",
            code="unknown_strategy",
            details={"available": sorted(BUILTINS)},
        )
    try:
        concrete = builtin.make_params(params)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"params: {exc}", details={"field": "params"}) from None
    values = {p["name"]: getattr(concrete, p["name"]) for p in builtin.parameters()}
    return ResolvedStrategy(builtin.name, values, builtin.warmup(concrete), builtin, concrete)


def _name(strategy: BuiltinStrategy) -> str:
    return strategy.name
