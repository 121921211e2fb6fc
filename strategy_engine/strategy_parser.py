"""Spec to signals: evaluates a StrategySpec over candles into entry and exit boolean arrays, vectorised.

Semantics (tests/strategy_engine/test_strategy_parser.py pins each rule on hand-made arrays):

* Operands: a number is the same on every bar; ``{"price": f}`` is the candle column; an indicator is
  ``ml_engine.indicators.compute(name, candles, params)`` and ``output`` picks one of its arrays. Each
  distinct (name, params) is computed once per evaluation however often it appears (every output is
  sliced from that one computation), and each distinct operand (with its offset) is built once.
* ``offset`` n: the value n bars ago; the first n bars have no value (NaN). Never wraps around.
* Comparisons ``< <= > >=`` are element-wise; a bar where either input is NaN compares False.
* ``crosses_above`` / ``crosses_below`` follow the project's one crossover rule
  (``backtester.strategies.cross_above`` / ``cross_below``): left <= right on the previous bar and
  left > right now (mirrored for below); a NaN on either bar is no cross, and bar 0 never crosses.
* Missing data is *unknown*, not false: ``not`` of a comparison whose inputs are missing is also False,
  and ``all``/``any`` follow three-valued (Kleene) logic: ``all`` is false as soon as one member is
  known false, ``any`` is true as soon as one member is true, otherwise they are unknown. At the root,
  unknown means no signal. So ``not (close > sma200)`` never signals during the SMA's warm-up.
* ``exit`` absent: exits are all False (stops close positions instead).

A value on bar t only ever uses candles 0..t. The spec is data: operators and node types dispatch
through dicts; there is no eval, exec, getattr on user strings or dynamic import.

Speed: six comparisons over four distinct indicators on 1,000,000 bars evaluate in well under the 150 ms
budget (``bench/strategy_bench.py``); the indicators dominate, the logic is a few array operations each.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from backtester.runner import BacktestConfig
from backtester.strategies import cross_above, cross_below
from ml_engine.indicators import INDICATORS, compute
from strategy_engine.spec import (
    CROSS_OPERATORS,
    STOP_FIELDS,
    AllCondition,
    AnyCondition,
    Comparison,
    IndicatorOperand,
    NotCondition,
    PriceOperand,
    StrategySpec,
    spec_comparisons,
    validate_spec,
)
from utils.market_data.candles import Candles

__all__ = [
    "STOP_FIELDS",
    "ComparisonTrace",
    "Signals",
    "Trace",
    "backtest_config",
    "evaluate",
    "trace",
    "warmup",
]

# What a strategy spec decides about its backtest, beyond the signals: its stops and position size.


class Signals(NamedTuple):
    """Entry and exit booleans, one per candle (unpacks like the built-ins' ``(entries, exits)``)."""

    entries: np.ndarray
    exits: np.ndarray


@dataclass(frozen=True, slots=True)
class ComparisonTrace:
    """One comparison's inputs (after offsets) and result, for the health check."""

    path: str
    op: str
    left: np.ndarray | float
    right: np.ndarray | float
    result: np.ndarray  # bool; False where unknown
    known: np.ndarray  # bool; both inputs exist on this bar (and on the previous one for crosses)


@dataclass(frozen=True, slots=True)
class Trace:
    """A whole evaluation: the signals, every comparison, and every price/indicator operand by path."""

    entries: np.ndarray
    exits: np.ndarray
    comparisons: list[ComparisonTrace]
    operands: dict[str, np.ndarray]


def evaluate(spec: StrategySpec | Mapping[str, Any], candles: Candles) -> Signals:
    """Entry and exit signals of ``spec`` over ``candles``; a raw spec is validated first (InvalidInput)."""
    evaluator = _Evaluator(validate_spec(spec), candles, tracing=False)
    return Signals(*evaluator.run())


def trace(spec: StrategySpec | Mapping[str, Any], candles: Candles) -> Trace:
    """``evaluate`` plus every intermediate array (slower; for the health check)."""
    evaluator = _Evaluator(validate_spec(spec), candles, tracing=True)
    entries, exits = evaluator.run()
    return Trace(entries, exits, evaluator.comparisons, evaluator.operands)


def warmup(spec: StrategySpec | Mapping[str, Any]) -> int:
    """Bars before every input of every condition has a value (for NaN-free candles).

    The largest over comparisons of max(operand warm-ups) + 1 for a crossover, where an operand's warm-up
    is its offset plus, for an indicator, its TA-Lib lookback. A backtest needs more candles than this.
    """
    spec = validate_spec(spec)
    longest = 0
    for _, comparison in spec_comparisons(spec):
        bars = max(_operand_warmup(comparison.left), _operand_warmup(comparison.right))
        longest = max(longest, bars + (comparison.op in CROSS_OPERATORS))
    return longest


def backtest_config(
    spec: StrategySpec | None, base: BacktestConfig | None = None, **given: Any
) -> BacktestConfig:
    """``base`` (money and fill settings; default ``BacktestConfig()``) with the spec's stops and
    position size (``STOP_FIELDS``), then the fields in `given`, a caller's explicit choices, over
    both. One ``BacktestConfig`` is validated, with the merged values (ValueError as its own)."""
    stops = {} if spec is None else {name: getattr(spec, name) for name in STOP_FIELDS}
    return dataclasses.replace(base or BacktestConfig(), **(stops | given))


def _operand_warmup(operand: Any) -> int:
    if isinstance(operand, PriceOperand):
        return operand.offset
    if isinstance(operand, IndicatorOperand):
        return INDICATORS[operand.indicator].warmup(operand.params) + operand.offset
    return 0


def _with_lookahead(spec: StrategySpec, bars: int = 1) -> StrategySpec:
    """TEST HOOK: a copy of ``spec`` whose every price and indicator operand reads ``bars`` bars into the
    future (the value of bar t + bars on bar t). The public format cannot express this; tests use it to
    prove that the health check's lookahead test catches a leaking strategy."""
    leaky = validate_spec(spec).model_copy(deep=True)
    for _, comparison in spec_comparisons(leaky):
        for operand in (comparison.left, comparison.right):
            if isinstance(operand, PriceOperand | IndicatorOperand):
                operand._lookahead = bars
    return leaky


def _shift(values: np.ndarray, bars: int) -> np.ndarray:
    """``values`` moved ``bars`` later (bars > 0: the value bars ago; < 0: the future), NaN-filled."""
    if bars == 0:
        return values
    n = values.shape[0]
    out = np.empty(n, dtype=np.float64)
    if abs(bars) >= n:
        out[:] = np.nan
    elif bars > 0:
        out[:bars] = np.nan
        out[bars:] = values[: n - bars]
    else:
        out[n + bars :] = np.nan
        out[: n + bars] = values[-bars:]
    return out


_COMPARE: dict[str, Callable[..., np.ndarray]] = {
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
}
_CROSS: dict[str, Callable[[np.ndarray, np.ndarray | float], np.ndarray]] = {
    "crosses_above": cross_above,
    "crosses_below": cross_below,
}

# (value, known): value is False wherever the result is unknown; known is None when nobody asked for it.
_Result = tuple[np.ndarray, np.ndarray | None]


class _Evaluator:
    """One evaluation of one spec over one candle series, with its per-evaluation caches."""

    def __init__(self, spec: StrategySpec, candles: Candles, *, tracing: bool) -> None:
        self.spec = spec
        self.candles = candles
        self.n = len(candles)
        self.tracing = tracing
        self.indicators: dict[tuple[Any, ...], tuple[np.ndarray, ...]] = {}
        self.series: dict[tuple[Any, ...], np.ndarray] = {}
        self.comparisons: list[ComparisonTrace] = []
        self.operands: dict[str, np.ndarray] = {}

    def run(self) -> tuple[np.ndarray, np.ndarray]:
        entries, _ = self.condition(self.spec.entry, "entry", need_known=False)
        if self.spec.exit is None:
            exits = np.zeros(self.n, dtype=bool)
        else:
            exits, _ = self.condition(self.spec.exit, "exit", need_known=False)
        return entries, exits

    # ---------------------------------------------------------------------------------------- operands

    def operand(self, operand: Any, path: str) -> np.ndarray | float:
        if isinstance(operand, float):
            return operand
        if isinstance(operand, PriceOperand):
            key: tuple[Any, ...] = ("price", operand.price, operand.offset, operand._lookahead)
            values = self.series.get(key)
            if values is None:
                column = np.asarray(self.candles.column(operand.price), dtype=np.float64)
                values = self.series[key] = _shift(column, operand.offset - operand._lookahead)
        else:
            params = tuple(sorted(operand.params.items()))
            key = ("indicator", operand.indicator, params, operand.output, operand.offset, operand._lookahead)
            values = self.series.get(key)
            if values is None:
                outputs = self.indicator(operand.indicator, params)
                spec = INDICATORS[operand.indicator]
                index = spec.outputs.index(operand.output) if operand.output is not None else 0
                values = self.series[key] = _shift(outputs[index], operand.offset - operand._lookahead)
        if self.tracing:
            self.operands[path] = values
        return values

    def indicator(self, name: str, params: tuple[tuple[str, Any], ...]) -> tuple[np.ndarray, ...]:
        key = (name, params)
        outputs = self.indicators.get(key)
        if outputs is None:
            columns = {column: self.candles.column(column) for column in INDICATORS[name].inputs}
            outputs = self.indicators[key] = compute(name, columns, dict(params))
        return outputs

    # -------------------------------------------------------------------------------------- conditions

    def condition(self, node: Any, path: str, *, need_known: bool) -> _Result:
        return _HANDLERS[type(node)](self, node, path, need_known)

    def comparison(self, node: Comparison, path: str, need_known: bool) -> _Result:
        left = self.operand(node.left, f"{path}.left")
        right = self.operand(node.right, f"{path}.right")
        crossing = node.op in _CROSS
        if crossing:
            series = left if isinstance(left, np.ndarray) else np.full(self.n, left)
            result = _CROSS[node.op](series, right)
        else:
            result = _COMPARE[node.op](left, right)
        known = None
        if need_known or self.tracing:
            known = _present(left, self.n)
            if isinstance(right, np.ndarray):
                known = known & ~np.isnan(right)
            if crossing:
                known[1:] &= known[:-1].copy()
                known[:1] = False
        if self.tracing:
            assert known is not None
            self.comparisons.append(ComparisonTrace(path, node.op, left, right, result, known))
        return result, known

    def group(self, path: str, children: list[Any], key: str, need_known: bool) -> _Result:
        results = [
            self.condition(child, f"{path}.{key}[{i}]", need_known=need_known)
            for i, child in enumerate(children)
        ]
        values = [value for value, _ in results]
        if key == "all":
            value = values[0] if len(values) == 1 else np.logical_and.reduce(values)
        else:
            value = values[0] if len(values) == 1 else np.logical_or.reduce(values)
        if not need_known:
            return value, None
        knowns = [known for _, known in results]
        if key == "all":
            # Known where true, or where some member is known false.
            known = value | np.logical_or.reduce(
                [np.asarray(k) & ~v for v, k in zip(values, knowns, strict=True)]
            )
        else:
            # Known where true, or where every member is known.
            known = value | np.logical_and.reduce([np.asarray(k) for k in knowns])
        return value, known

    def all_of(self, node: AllCondition, path: str, need_known: bool) -> _Result:
        return self.group(path, node.all, "all", need_known)

    def any_of(self, node: AnyCondition, path: str, need_known: bool) -> _Result:
        return self.group(path, node.any, "any", need_known)

    def negate(self, node: NotCondition, path: str, need_known: bool) -> _Result:
        value, known = self.condition(node.not_, f"{path}.not", need_known=True)
        assert known is not None
        return known & ~value, known


_HANDLERS: dict[type, Callable[[_Evaluator, Any, str, bool], _Result]] = {
    Comparison: _Evaluator.comparison,
    AllCondition: _Evaluator.all_of,
    AnyCondition: _Evaluator.any_of,
    NotCondition: _Evaluator.negate,
}


def _present(values: np.ndarray | float, n: int) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return np.asarray(~np.isnan(values))
    return np.ones(n, dtype=bool)
