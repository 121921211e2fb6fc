"""Indicator series for charts (strategy_engine/indicator_series.py) on the real app's market data: the values
are a strategy's operand bit for bit, the warm-up is read before the window, nothing after a bar moves its
value, and every kind of bad input names its field."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from main import create_app
from ml_engine.indicators import INDICATORS
from strategy_engine.indicator_series import IndicatorSeries, indicator_series, parse_params, resolve
from strategy_engine.strategy_parser import trace
from tests.support.candles import edited_after, market_walk
from tests.support.http import ctx_of
from tests.support.settings import make_settings
from utils.errors import InvalidInput
from utils.market_data.candles import Candles
from utils.market_data.market import MarketData

SYMBOL = "SYNUSDT"
BARS = 1500
NAMES = sorted(INDICATORS)
# Parameters other than the defaults, so resolved params are really passed through (one per indicator).
OTHER_PARAMS: dict[str, dict[str, Any]] = {
    "adx": {"period": 9},
    "atr": {"period": 5},
    "bollinger": {"period": 30, "k": 1.5},
    "cci": {"period": 7},
    "donchian": {"period": 55},
    "ema": {"period": 50},
    "macd": {"fast": 5, "slow": 35, "signal": 5},
    "obv": {},
    "roc": {"period": 3},
    "rsi": {"period": 21},
    "sma": {"period": 200},
    "stochastic": {"k_period": 5, "d_period": 5},
    "vwap": {"period": 48},
    "williams_r": {"period": 10},
    "wma": {"period": 15},
}


WALK = market_walk(BARS, seed=11, symbol=SYMBOL)


def rows(candles: Candles) -> np.ndarray:
    """Candles as the store's merge takes them."""
    columns = ("open_time", "open", "high", "low", "close", "volume")
    return np.column_stack([candles.column(c).astype(np.float64) for c in columns])


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One offline app for the module, holding a 1500-bar random walk as an imported series."""
    settings = make_settings(tmp_path_factory.mktemp("indicator-series"))
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        ctx_of(test_client).market.store.merge("file", SYMBOL, "1h", rows(WALK))
        yield test_client


@pytest.fixture
def market(client: TestClient) -> MarketData:
    return ctx_of(client).market


def at_bar(i: int) -> int:
    return int(WALK.open_time[i])


def strategy_sees(candles: Candles, name: str, params: dict[str, Any], output: str) -> np.ndarray:
    """What a strategy over `candles` evaluates for this indicator output (its traced operand)."""
    operand: dict[str, Any] = {"indicator": name, "params": params}
    if len(INDICATORS[name].outputs) > 1:
        operand["output"] = output
    spec = {
        "name": "probe",
        "symbol": SYMBOL,
        "interval": "1h",
        "entry": {"left": operand, "op": ">", "right": 0.0},
        "stop_loss": 0.5,
    }
    return trace(spec, candles).operands["entry.left"]


def as_array(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def by_output(answer: IndicatorSeries) -> dict[str, np.ndarray]:
    return {s.name: as_array(s.values) for s in answer.series}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("given", ["defaults", "other"])
def test_values_are_the_strategy_operand_bit_for_bit(market: MarketData, name: str, given: str) -> None:
    params = {} if given == "defaults" else OTHER_PARAMS[name]
    answer = indicator_series(market, SYMBOL, "1h", name, params, limit=100, start_ms=at_bar(700))
    assert answer.times == [at_bar(i) for i in range(700, 800)]
    assert (answer.source, answer.stale, answer.history_start_time) == ("file", False, at_bar(0))
    assert answer.params == INDICATORS[name].resolve_params(params)
    assert [s.name for s in answer.series] == list(INDICATORS[name].outputs)
    for output, values in by_output(answer).items():
        expected = strategy_sees(WALK, name, params, output)[700:800]
        np.testing.assert_array_equal(values, expected)  # NaN where NaN, else identical bits
        assert not np.isnan(values).any(), "bar 700 is past every warm-up here"


@pytest.mark.parametrize("name", NAMES)
def test_the_first_value_comes_exactly_when_the_history_allows_it(market: MarketData, name: str) -> None:
    params = OTHER_PARAMS[name]
    warmup = INDICATORS[name].warmup(params)
    first = indicator_series(market, SYMBOL, "1h", name, params, limit=3, start_ms=at_bar(warmup))
    assert first.warmup == warmup
    assert all(s.values[0] is not None for s in first.series), "the warm-up before the window was read"
    if warmup > 0:
        early = indicator_series(market, SYMBOL, "1h", name, params, limit=3, start_ms=at_bar(warmup - 1))
        assert all(s.values[0] is None for s in early.series), "one bar short of the warm-up: no value"
        assert all(s.values[1] == f.values[0] for s, f in zip(early.series, first.series, strict=True))


@pytest.mark.parametrize("name", NAMES)
def test_a_narrow_window_equals_the_same_bars_of_a_wide_one(market: MarketData, name: str) -> None:
    params = OTHER_PARAMS[name]
    narrow = indicator_series(market, SYMBOL, "1h", name, params, limit=5, start_ms=at_bar(400))
    wide = indicator_series(market, SYMBOL, "1h", name, params, limit=1000, start_ms=at_bar(100))
    latest = indicator_series(market, SYMBOL, "1h", name, params, limit=5, end_ms=at_bar(404))
    assert narrow.times == wide.times[300:305] == latest.times
    for a, b, c in zip(narrow.series, wide.series, latest.series, strict=True):
        assert a.values == b.values[300:305] == c.values


@pytest.mark.parametrize("index", range(len(NAMES)))
def test_changing_candles_after_a_bar_leaves_its_value_alone(market: MarketData, index: int) -> None:
    name, params = NAMES[index], OTHER_PARAMS[NAMES[index]]
    symbol = f"EDIT{index:02d}USDT"  # its own series: this test rewrites candles
    original = replace(WALK, symbol=symbol)
    market.store.merge("file", symbol, "1h", rows(original))
    t = 899
    before = indicator_series(market, symbol, "1h", name, params, limit=200, start_ms=at_bar(800))
    market.store.merge("file", symbol, "1h", rows(edited_after(original, at_bar(t), seed=index)))
    after = indicator_series(market, symbol, "1h", name, params, limit=200, start_ms=at_bar(800))
    assert after.times == before.times
    cut = t - 800 + 1  # bars 800..t
    for old, new in zip(before.series, after.series, strict=True):
        assert new.values[:cut] == old.values[:cut], f"{name}.{old.name} at or before bar {t} moved"
        assert new.values[cut:] != old.values[cut:], "the edit did change the later candles' values"


def test_a_window_with_no_candles_has_empty_series(market: MarketData) -> None:
    answer = indicator_series(market, SYMBOL, "1h", "macd", {}, limit=10, end_ms=at_bar(0) - 1)
    assert (answer.times, answer.history_start_time) == ([], None)
    assert [(s.name, s.values) for s in answer.series] == [("macd", []), ("signal", []), ("hist", [])]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, {}),
        ("", {}),
        ("  ", {}),
        ('{"period": 14}', {"period": 14}),
        ('{"period": 20, "k": 1.5}', {"period": 20, "k": 1.5}),
        ("{}", {}),
    ],
)
def test_params_are_a_json_object(text: str | None, expected: dict[str, Any]) -> None:
    assert parse_params(text) == expected


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("period=14", "params"),
        ("[14]", "params"),
        ("14", "params"),
        ('"period"', "params"),
        ('{"period": 14', "params"),
        ('{"period": NaN}', "params"),
        ('{"period": Infinity}', "params"),
        ('{"period": 14, "period": 15}', "params.period"),
        ("[" * 900 + "]" * 900, "params"),
        ('{"period": ' + "1" * 995 + "}", "params"),  # longer than MAX_PARAMS_TEXT
        ("__import__('os').system('true')", "params"),
    ],
)
def test_params_that_are_not_a_json_object_name_the_field(text: str, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_params(text)
    assert caught.value.details["field"] == field


@pytest.mark.parametrize(
    ("name", "params", "field", "words"),
    [
        ("nope", {}, "name", "Unknown indicator 'nope'"),
        ("RSI", {}, "name", "Unknown indicator"),
        ("rsi", {"periods": 14}, "params.periods", "no parameter 'periods'"),
        ("obv", {"period": 14}, "params.period", "its parameters: none"),
        ("rsi", {"period": "14"}, "params.period", "must be a number"),
        ("rsi", {"period": True}, "params.period", "must be a number"),
        ("rsi", {"period": None}, "params.period", "must be a number"),
        ("rsi", {"period": [14]}, "params.period", "must be a number"),
        ("rsi", {"period": 14.5}, "params.period", "must be an integer"),
        ("rsi", {"period": 1}, "params.period", "between 2 and 100000"),
        ("sma", {"period": 100_001}, "params.period", "between 1 and 100000"),
        ("bollinger", {"k": -0.1}, "params.k", "between 0.0 and 10.0"),
        ("macd", {"fast": 30, "slow": 20}, "params", "fast must be <= slow"),
    ],
)
def test_a_bad_indicator_or_parameter_names_its_field(
    name: str, params: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        resolve(name, params)
    assert caught.value.details["field"] == field
    assert words in caught.value.message


def test_bad_input_is_refused_before_any_candle_is_read(market: MarketData) -> None:
    """No candles exist for this symbol: the parameter error still wins, so bad input costs nothing."""
    with pytest.raises(InvalidInput) as caught:
        indicator_series(market, "NOSUCHUSDT", "1h", "rsi", {"period": 0}, limit=5)
    assert caught.value.details["field"] == "params.period"
