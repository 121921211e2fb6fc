"""Spec to signals: operators, crossovers and offsets on tiny arrays, missing data, indicator caching,
agreement with a direct computation through ml_engine.indicators, warm-up, and the test-only leak hook."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backtester.runner import BacktestConfig
from ml_engine import indicators as ind
from strategy_engine import strategy_parser
from strategy_engine.spec import validate_spec
from strategy_engine.strategy_parser import Signals, backtest_config, evaluate, trace, warmup
from tests.support.candles import make_candles, random_candles
from utils.errors import InvalidInput

EXAMPLES = Path(__file__).resolve().parents[2] / "storage" / "strategies" / "examples"
NAN = np.nan


def spec(entry: Any, exit_: Any = None, **top: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "t",
        "symbol": "BTCUSDT",
        "interval": "1h",
        "entry": entry,
        "stop_loss": 0.5,
    }
    if exit_ is not None:
        raw["exit"] = exit_
    raw.update(top)
    return raw


def cmp(left: Any, op: str, right: Any) -> dict[str, Any]:
    return {"left": left, "op": op, "right": right}


CLOSE, OPEN = {"price": "close"}, {"price": "open"}


def close_of(offset: int) -> dict[str, Any]:
    return {"price": "close", "offset": offset}


def entries(entry: Any, close: list[float], open_: list[float] | None = None) -> list[bool]:
    candles = make_candles(np.array(close), None if open_ is None else np.array(open_))
    return evaluate(spec(entry), candles).entries.tolist()


T, F = True, False

# (left series as close, right series as open or a number, op, expected) — derived by hand from the rule.
COMPARE_CASES = [
    ([1, 2, 3], 2.0, "<", [T, F, F]),
    ([1, 2, 3], 2.0, "<=", [T, T, F]),
    ([1, 2, 3], 2.0, ">", [F, F, T]),
    ([1, 2, 3], 2.0, ">=", [F, T, T]),
    ([1, NAN, 3], 2.0, "<", [T, F, F]),  # NaN compares False
    ([1, NAN, 3], 2.0, ">=", [F, F, T]),
    ([1, 5, 3], [2, 5, 1], "<", [T, F, F]),
    ([1, 5, 3], [2, 5, 1], ">=", [F, T, T]),
    ([1, 5, 3], [2, NAN, 1], "<=", [T, F, F]),
]


@pytest.mark.parametrize(("left", "right", "op", "expected"), COMPARE_CASES)
def test_comparison_table(left: list[float], right: Any, op: str, expected: list[bool]) -> None:
    if isinstance(right, list):
        assert entries(cmp(CLOSE, op, OPEN), left, right) == expected
    else:
        assert entries(cmp(CLOSE, op, right), left) == expected


CROSS_CASES = [
    # strict: below-or-equal on t-1, above on t
    ([1, 2, 3], 2.0, "crosses_above", [F, F, T]),
    ([1, 3, 1, 3], 2.0, "crosses_above", [F, T, F, T]),
    ([1, 3, 1, 3], 2.0, "crosses_below", [F, F, T, F]),
    ([3, 2, 1], 2.0, "crosses_below", [F, F, T]),
    ([1, 2, 1], 2.0, "crosses_above", [F, F, F]),  # touching is not crossing
    ([3, 3, 3], 2.0, "crosses_above", [F, F, F]),  # already above: bar 0 never crosses
    ([1, NAN, 3], 2.0, "crosses_above", [F, F, F]),  # NaN on either bar: no cross
    ([NAN, 1, 3], 2.0, "crosses_above", [F, F, T]),
    ([1, 3, 3], [2, 2, 4], "crosses_above", [F, T, F]),
    ([2, 3, 1], [2, 2, 2], "crosses_above", [F, T, F]),  # equal then above counts
    ([5, 1, 5], [2, NAN, 2], "crosses_below", [F, F, F]),
]


@pytest.mark.parametrize(("left", "right", "op", "expected"), CROSS_CASES)
def test_crossover_table(left: list[float], right: Any, op: str, expected: list[bool]) -> None:
    if isinstance(right, list):
        assert entries(cmp(CLOSE, op, OPEN), left, right) == expected
    else:
        assert entries(cmp(CLOSE, op, right), left) == expected


def test_a_number_on_the_left_of_a_cross() -> None:
    # "2 crosses above close": 2 <= close before and 2 > close now, i.e. close falls through 2.
    assert entries(cmp(2.0, "crosses_above", CLOSE), [3, 1, 1, 3, 1]) == [F, T, F, F, T]
    assert entries(cmp(2.0, "crosses_below", CLOSE), [1, 3, 3, 1, 3]) == [F, T, F, F, T]


OFFSET_CASES = [
    (cmp(close_of(1), "<", CLOSE), [1, 2, 3, 2], [F, T, T, F]),  # rising
    (cmp(close_of(2), ">", 0.0), [1, 2, 3, 4, 5], [F, F, T, T, T]),  # first 2 bars have no value
    (cmp(close_of(1), ">", 3.0), [1, 1, 1, 5], [F, F, F, F]),  # never wraps around to the last bar
    (cmp(close_of(4), ">", 0.0), [1, 2, 3], [F, F, F]),  # offset beyond the data
    (cmp(close_of(1), "crosses_above", 2.0), [1, 3, 1, 3, 3], [F, F, T, F, T]),
    (cmp({"price": "open", "offset": 1}, "<", close_of(1)), [2, 3, 4], [F, F, T]),  # open = previous close
    ({"not": cmp(close_of(1), "<", CLOSE)}, [1, 2, 1, 1], [F, F, T, T]),  # not: unknown bar 0 stays False
]


@pytest.mark.parametrize(("entry", "close", "expected"), OFFSET_CASES)
def test_offset_table(entry: Any, close: list[float], expected: list[bool]) -> None:
    assert entries(entry, close) == expected


LOGIC_CASES = [
    # close: [NaN, 1, 3, 5]; a = close > 2 -> [F?, F, T, T] (bar 0 unknown), b = close < 4 -> [?, T, T, F]
    ({"all": [cmp(CLOSE, ">", 2.0), cmp(CLOSE, "<", 4.0)]}, [F, F, T, F]),
    ({"any": [cmp(CLOSE, ">", 2.0), cmp(CLOSE, "<", 4.0)]}, [F, T, T, T]),
    ({"not": cmp(CLOSE, ">", 2.0)}, [F, T, F, F]),  # missing data is unknown, not false
    ({"not": {"not": cmp(CLOSE, ">", 2.0)}}, [F, F, T, T]),
    ({"not": {"all": [cmp(CLOSE, ">", 2.0), cmp(CLOSE, "<", 4.0)]}}, [F, T, F, T]),
    ({"not": {"any": [cmp(CLOSE, ">", 2.0), cmp(CLOSE, "<", 4.0)]}}, [F, F, F, F]),
    # all: one member known false makes it known false even where the other is unknown
    ({"not": {"all": [cmp(CLOSE, ">", 2.0), cmp(close_of(1), ">", 0.0)]}}, [F, T, F, F]),
    # any: one member true makes it true even where the other is unknown
    ({"not": {"any": [cmp(CLOSE, "<", 2.0), cmp(close_of(2), ">", 0.0)]}}, [F, F, F, F]),
    ({"any": [{"not": cmp(CLOSE, ">", 2.0)}, cmp(close_of(1), ">", 2.0)]}, [F, T, F, T]),
]


@pytest.mark.parametrize(("entry", "expected"), LOGIC_CASES)
def test_logic_table_with_missing_data(entry: Any, expected: list[bool]) -> None:
    assert entries(entry, [NAN, 1, 3, 5]) == expected


def test_no_exit_means_no_exit_signal_and_signals_are_fresh_bool_arrays() -> None:
    candles = random_candles(50)
    result = evaluate(spec(cmp(CLOSE, ">", 0.0)), candles)
    assert isinstance(result, Signals)
    entries_, exits_ = result  # unpacks like the built-ins' (entries, exits)
    assert entries_.dtype == np.bool_ and exits_.dtype == np.bool_
    assert entries_.shape == exits_.shape == (50,)
    assert entries_.all() and not exits_.any()


def test_every_distinct_indicator_is_computed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    real = ind.compute  # what strategy_parser imported

    def counting(name: str, candles: Any, params: Any) -> Any:
        calls.append((name, dict(params)))
        return real(name, candles, params)

    monkeypatch.setattr(strategy_parser, "compute", counting)
    rsi = {"indicator": "rsi", "params": {"period": 14}}
    macd = {"indicator": "macd", "params": {}}
    raw = spec(
        {
            "all": [
                cmp(rsi, "<", 30.0),
                cmp({"indicator": "rsi"}, ">", 10.0),  # defaults resolve to the same (name, params)
                cmp({**macd, "output": "macd"}, "crosses_above", {**macd, "output": "signal"}),
                cmp({**macd, "output": "hist", "offset": 2}, "<", {**rsi, "offset": 1}),
            ]
        },
        {"any": [cmp(rsi, ">", 70.0), cmp({"indicator": "rsi", "params": {"period": 7}}, ">", 80.0)]},
    )
    evaluate(raw, random_candles(300))
    assert sorted(name for name, _ in calls) == ["macd", "rsi", "rsi"]
    assert {"period": 7} in [p for n, p in calls if n == "rsi"]


def crosses_below(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros(a.shape, dtype=bool)
    out[1:] = (a[:-1] >= b[:-1]) & (a[1:] < b[1:])
    return out


def crosses_above(a: np.ndarray, b: np.ndarray | float) -> np.ndarray:
    b = np.broadcast_to(b, a.shape)
    out = np.zeros(a.shape, dtype=bool)
    out[1:] = (a[:-1] <= b[:-1]) & (a[1:] > b[1:])
    return out


def lag(x: np.ndarray, n: int) -> np.ndarray:
    return np.concatenate((np.full(n, np.nan), x[:-n]))


def test_rsi_example_matches_a_direct_computation() -> None:
    candles = random_candles(3000, seed=4)
    c = candles.close
    raw = json.loads((EXAMPLES / "rsi_dip_trend.spec.json").read_text())
    rsi = ind.rsi(c, 14)
    with np.errstate(invalid="ignore"):
        expected_entries = (rsi < 30) & (c > ind.sma(c, 200))
        expected_exits = (rsi > 70) | crosses_below(ind.ema(c, 12), ind.ema(c, 26))
    result = evaluate(raw, candles)
    assert expected_entries.any() and expected_exits.any()
    np.testing.assert_array_equal(result.entries, expected_entries)
    np.testing.assert_array_equal(result.exits, expected_exits)


def test_macd_bollinger_example_matches_a_direct_computation() -> None:
    candles = random_candles(3000, seed=5)
    c = candles.close
    raw = json.loads((EXAMPLES / "macd_bollinger_combo.spec.json").read_text())
    line, signal, hist = ind.macd(c, 12, 26, 9)
    upper, _middle, lower = ind.bollinger(c, 20, 2.0)
    ema50 = ind.ema(c, 50)
    with np.errstate(invalid="ignore"):
        trigger = crosses_above(line, signal) | crosses_above(c, lower)
        # not(x > y) is true only where both inputs exist (missing data is unknown, not false)
        not_overextended = ~np.isnan(upper) & ~(c > upper)
        expected_entries = trigger & not_overextended & (c > lag(c, 1)) & (hist >= lag(hist, 1))
        below_ema50 = ~np.isnan(ema50) & ~(c > ema50)
        expected_exits = (c > upper) | ((hist < 0) & below_ema50)
    result = evaluate(raw, candles)
    assert expected_entries.any() and expected_exits.any()
    np.testing.assert_array_equal(result.entries, expected_entries)
    np.testing.assert_array_equal(result.exits, expected_exits)


@pytest.mark.parametrize("name", sorted(ind.INDICATORS))
def test_every_indicator_and_output_is_the_library_value(name: str) -> None:
    candles = random_candles(400, seed=7)
    indicator = ind.INDICATORS[name]
    columns = {column: candles.column(column) for column in indicator.inputs}
    reference = ind.compute(name, columns, {})
    outputs = indicator.outputs if len(indicator.outputs) > 1 else (None,)
    for output, values in zip(outputs, reference, strict=True):
        operand: dict[str, Any] = {"indicator": name, "offset": 3}
        if output is not None:
            operand["output"] = output
        result = trace(spec(cmp(operand, ">", 0.0)), candles)
        np.testing.assert_array_equal(result.operands["entry.left"], lag(values, 3))
        with np.errstate(invalid="ignore"):
            np.testing.assert_array_equal(result.entries, lag(values, 3) > 0)


def test_warmup() -> None:
    rsi_example = json.loads((EXAMPLES / "rsi_dip_trend.spec.json").read_text())
    assert warmup(rsi_example) == ind.INDICATORS["sma"].warmup({"period": 200})  # 199
    macd_hist = {"indicator": "macd", "output": "hist"}
    assert warmup(spec(cmp(macd_hist, ">", 0.0))) == 33  # slow + signal - 2
    assert warmup(spec(cmp({**macd_hist, "offset": 1}, ">", 0.0))) == 34
    assert warmup(spec(cmp({**macd_hist, "offset": 1}, "crosses_above", 0.0))) == 35
    assert warmup(spec(cmp(CLOSE, ">", 0.0))) == 0
    assert warmup(spec(cmp(close_of(5), "crosses_below", CLOSE))) == 6


def test_no_signal_before_warmup_and_the_first_known_bar_is_the_warmup() -> None:
    candles = random_candles(500, seed=3)
    raw = spec(
        {"any": [cmp({"indicator": "sma", "params": {"period": 50}, "offset": 2}, "crosses_above", CLOSE)]},
        {"not": cmp({"indicator": "adx"}, ">", 200.0)},  # true wherever ADX exists
    )
    bars = warmup(raw)
    result = trace(raw, candles)
    assert not result.entries[:bars].any()
    first_known = [int(np.argmax(c.known)) for c in result.comparisons]
    assert first_known == [50 - 1 + 2 + 1, ind.INDICATORS["adx"].warmup({})]
    assert max(first_known) == bars
    assert not result.exits[: first_known[1]].any() and result.exits[first_known[1] :].all()


def test_a_raw_spec_is_validated() -> None:
    with pytest.raises(InvalidInput) as info:
        evaluate(spec(cmp({"indicator": "nope"}, ">", 1.0)), random_candles(10))
    assert info.value.details["path"] == "entry.left.indicator"


def test_empty_and_short_candles_give_no_signal() -> None:
    raw = spec(cmp({"indicator": "rsi"}, "<", 30.0), cmp(close_of(3), "crosses_above", CLOSE))
    for n in (0, 1, 5):
        result = evaluate(raw, random_candles(n))
        assert result.entries.shape == (n,) and not result.entries.any() and not result.exits.any()


def test_the_leak_hook_reads_the_future() -> None:
    candles = random_candles(100, seed=1)
    raw = spec(cmp(CLOSE, ">", {"indicator": "sma", "params": {"period": 5}}))
    leaky = strategy_parser._with_lookahead(validate_spec(raw), bars=2)
    values = trace(leaky, candles).operands
    np.testing.assert_array_equal(values["entry.left"][:-2], candles.close[2:])
    assert np.isnan(values["entry.left"][-2:]).all()
    np.testing.assert_array_equal(values["entry.right"][:-2], ind.sma(candles.close, 5)[2:])
    # The original is untouched and the public format cannot carry the hook.
    assert validate_spec(leaky.to_dict()).to_dict() == validate_spec(raw).to_dict()
    np.testing.assert_array_equal(trace(raw, candles).operands["entry.left"], candles.close)


def test_backtest_config_takes_the_specs_stops_and_the_base_money_settings() -> None:
    model = validate_spec(
        spec(cmp(CLOSE, ">", 1.0), stop_loss=0.02, take_profit=0.1, trailing_stop=0.05, position_size=0.5)
    )
    config = backtest_config(model, BacktestConfig(initial_capital=500.0, fee_rate=0.002, stop_loss=0.9))
    assert config == BacktestConfig(
        initial_capital=500.0,
        fee_rate=0.002,
        stop_loss=0.02,
        take_profit=0.1,
        trailing_stop=0.05,
        position_size=0.5,
    )
    assert backtest_config(model).fee_rate == BacktestConfig().fee_rate
