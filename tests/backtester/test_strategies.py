"""Built-in strategies: metadata, parameter validation, warm-up, no look-ahead, and TA-Lib-equal signals."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import talib
from backtesting.test import EURUSD, GOOG

from backtester.strategies import BUILTINS, BuiltinStrategy, cross_above, cross_below
from tests.support.candles import frame_candles, make_candles, random_candles

NAMES = ["sma_crossover", "ema_crossover", "rsi_mean_reversion", "macd_signal", "bollinger_breakout"]


def test_every_builtin_is_registered_once_under_its_name() -> None:
    assert sorted(BUILTINS) == sorted(NAMES)
    for name, strategy in BUILTINS.items():
        assert isinstance(strategy, BuiltinStrategy) and strategy.name == name


@pytest.mark.parametrize("name", NAMES)
def test_metadata_and_typed_defaults(name: str) -> None:
    strategy = BUILTINS[name]
    assert strategy.description and "\n" not in strategy.description and len(strategy.description) <= 100
    params = strategy.default_params()
    assert dataclasses.is_dataclass(params)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(params, dataclasses.fields(params)[0].name, 3)
    for field in dataclasses.fields(params):
        assert field.type in ("int", "float")
        assert type(getattr(params, field.name)).__name__ == field.type
    listed = strategy.parameters()
    assert [p["name"] for p in listed] == [f.name for f in dataclasses.fields(params)]


@pytest.mark.parametrize("name", NAMES)
def test_signals_are_bool_arrays_silent_during_warmup(name: str) -> None:
    strategy = BUILTINS[name]
    params = strategy.default_params()
    warmup = strategy.warmup(params)
    for seed in range(5):
        candles = random_candles(400, seed)
        entries, exits = strategy.signals(candles, params)
        for arr in (entries, exits):
            assert arr.dtype == np.bool_ and arr.shape == (400,)
            assert not arr[:warmup].any()
    short = random_candles(warmup, 9)  # shorter than the warm-up: no signal at all, no error
    assert not any(a.any() for a in strategy.signals(short, params))


def _decline_then_spike(length: int, spike_at: int | None) -> np.ndarray:
    close = 100.0 - np.arange(length, dtype=np.float64) * 0.5
    if spike_at is not None:
        close[spike_at:] += 100.0
    return close


def _accelerating_decline_then_spike(length: int, spike_at: int) -> np.ndarray:
    close = 1000.0 - 0.05 * np.arange(length, dtype=np.float64) ** 2
    close[spike_at:] += 200.0
    return close


# Series on which each strategy's first possible entry comes exactly at its warm-up bar.
FIRST_SIGNAL_SERIES = {
    "sma_crossover": lambda w: _decline_then_spike(w + 5, w),
    "ema_crossover": lambda w: _decline_then_spike(w + 5, w),
    "rsi_mean_reversion": lambda w: _decline_then_spike(w + 5, None),  # RSI 0 from its first value
    # On a straight line the MACD equals its signal line up to rounding (1e-16 either way), so the
    # strict cross would hinge on the last bit; an accelerating fall keeps MACD strictly below.
    "macd_signal": lambda w: _accelerating_decline_then_spike(w + 5, w),
    "bollinger_breakout": lambda w: _decline_then_spike(w + 5, w),
}


@pytest.mark.parametrize("name", NAMES)
def test_warmup_is_exactly_the_first_possible_signal(name: str) -> None:
    strategy = BUILTINS[name]
    params = strategy.default_params()
    warmup = strategy.warmup(params)
    entries, _ = strategy.signals(make_candles(FIRST_SIGNAL_SERIES[name](warmup)), params)
    assert int(np.argmax(entries)) == warmup and entries[warmup]


@pytest.mark.parametrize("name", NAMES)
def test_signals_use_no_future_bars(name: str) -> None:
    strategy = BUILTINS[name]
    params = strategy.default_params()
    candles = random_candles(700, 42)
    entries, exits = strategy.signals(candles, params)
    assert entries.any() and exits.any()
    for stop in (1, 30, 35, 101, 333, 699):
        prefix_entries, prefix_exits = strategy.signals(candles.slice(0, stop), params)
        np.testing.assert_array_equal(prefix_entries, entries[:stop])
        np.testing.assert_array_equal(prefix_exits, exits[:stop])


def _talib_signals(name: str, close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same rules computed from TA-Lib itself (the reference the indicator library matches)."""
    if name == "sma_crossover":
        fast, slow = talib.SMA(close, 10), talib.SMA(close, 20)
        return cross_above(fast, slow), cross_below(fast, slow)
    if name == "ema_crossover":
        fast, slow = talib.EMA(close, 12), talib.EMA(close, 26)
        return cross_above(fast, slow), cross_below(fast, slow)
    if name == "rsi_mean_reversion":
        value = talib.RSI(close, 14)
        return value < 30, value > 70
    if name == "macd_signal":
        line, signal, _ = talib.MACD(close, 12, 26, 9)
        return cross_above(line, signal), cross_below(line, signal)
    upper, middle, _ = talib.BBANDS(close, 20, 2.0, 2.0)
    exits = close < middle
    exits[:20] = False
    return cross_above(close, upper), exits


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("frame,interval", [(GOOG, "1d"), (EURUSD, "1h")], ids=["GOOG", "EURUSD"])
def test_signals_equal_talib_based_rules_on_real_data(name: str, frame: object, interval: str) -> None:
    candles = frame_candles(frame, interval)
    entries, exits = BUILTINS[name].signals(candles, BUILTINS[name].default_params())
    want_entries, want_exits = _talib_signals(name, candles.close)
    assert entries.sum() > 3
    np.testing.assert_array_equal(entries, want_entries)
    np.testing.assert_array_equal(exits, want_exits)


@pytest.mark.parametrize(
    "name,values,field",
    [
        ("sma_crossover", {"fast": 20, "slow": 20}, "fast"),
        ("sma_crossover", {"fast": 0}, "fast"),
        ("sma_crossover", {"slow": 2.5}, "slow"),
        ("sma_crossover", {"fast": True}, "fast"),
        ("ema_crossover", {"fast": 30, "slow": 10}, "fast"),
        ("rsi_mean_reversion", {"period": 1}, "period"),
        ("rsi_mean_reversion", {"oversold": 70.0, "overbought": 30.0}, "oversold"),
        ("rsi_mean_reversion", {"overbought": 100.0}, "overbought"),
        ("rsi_mean_reversion", {"oversold": "30"}, "oversold"),
        ("macd_signal", {"fast": 26, "slow": 12}, "fast"),
        ("macd_signal", {"signal": 0}, "signal"),
        ("bollinger_breakout", {"k": 0.0}, "k"),
        ("bollinger_breakout", {"period": 1}, "period"),
        ("bollinger_breakout", {"window": 5}, "window"),
    ],
)
def test_invalid_params_raise_value_error_naming_the_field(name: str, values: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        BUILTINS[name].make_params(values)


def test_make_params_accepts_json_numbers() -> None:
    params = BUILTINS["sma_crossover"].make_params({"fast": 5.0, "slow": 50})
    assert (params.fast, params.slow) == (5, 50) and type(params.fast) is int
    rsi = BUILTINS["rsi_mean_reversion"].make_params({"oversold": 25})
    assert rsi.oversold == 25 and rsi.overbought == 70.0
    assert BUILTINS["macd_signal"].make_params(None) == BUILTINS["macd_signal"].default_params()


@pytest.mark.parametrize(
    "a,b,above,below",
    [
        ([1, 2, 2, 1, 3], [2] * 5, [0, 0, 0, 0, 1], [0, 0, 0, 1, 0]),
        # Touching then rising is a cross; falling back to equal is not.
        ([2, 3, 2], [2] * 3, [0, 1, 0], [0, 0, 0]),
        ([3, 1], [2, 2], [0, 0], [0, 1]),
        ([np.nan, 1, 3, np.nan, 3], [2] * 5, [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]),  # NaN on either bar: no cross
    ],
)
def test_crossover_rule(a: list[float], b: list[float], above: list[int], below: list[int]) -> None:
    a_arr, b_arr = np.array(a, dtype=float), np.array(b, dtype=float)
    np.testing.assert_array_equal(cross_above(a_arr, b_arr), np.array(above, dtype=bool))
    np.testing.assert_array_equal(cross_below(a_arr, b_arr), np.array(below, dtype=bool))


def test_a_long_series_crosses_in_blocks_as_in_one_pass() -> None:
    """The cross tests run in blocks of bars: a cross on a block's first bar (its previous bar in the
    block before) and NaNs and ties around the boundaries are found as by the rule over the whole array."""
    from backtester import strategies

    block = strategies._CROSS_BLOCK
    rng = np.random.default_rng(3)
    n = 3 * block + 17
    a = np.round(rng.normal(0.0, 1.0, n), 1)  # rounded: many ties with b
    b = np.round(rng.normal(0.0, 1.0, n), 1)
    for edge in (block, 2 * block, 3 * block):
        a[edge - 1], b[edge - 1], a[edge], b[edge] = 1.0, 1.0, 2.0, 1.0  # crosses above on the edge bar
    a[block + 1] = np.nan
    b[2 * block - 2] = np.nan
    whole_above = np.zeros(n, dtype=bool)
    whole_below = np.zeros(n, dtype=bool)
    whole_above[1:] = (a[:-1] <= b[:-1]) & (a[1:] > b[1:])
    whole_below[1:] = (a[:-1] >= b[:-1]) & (a[1:] < b[1:])
    np.testing.assert_array_equal(cross_above(a, b), whole_above)
    np.testing.assert_array_equal(cross_below(a, b), whole_below)
    assert all(cross_above(a, b)[edge] for edge in (block, 2 * block, 3 * block))
    assert whole_above.sum() > 10_000 and whole_below.sum() > 10_000
    np.testing.assert_array_equal(cross_above(a, 0.5), np.r_[False, (a[:-1] <= 0.5) & (a[1:] > 0.5)])
