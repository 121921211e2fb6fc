"""ml_engine/indicators/ against TA-Lib (the reference), causality, edge cases and the registry."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import talib
from talib._ta_lib import MA_Type  # where talib defines it; `talib.MA_Type` is an implicit re-export

from ml_engine import indicators as ind
from ml_engine.indicators.workspace import SCRATCH_POOL, BufferPool, Workspace
from tests.support.data import shared_csv

Candles = dict[str, np.ndarray]
Outputs = tuple[np.ndarray, ...]

RTOL = 1e-8


def random_walk(n: int, seed: int, price: float = 30_000.0, vol: float = 0.01) -> Candles:
    """OHLCV with a geometric random-walk close, highs/lows around it, a few flat and dead bars."""
    rng = np.random.default_rng(seed)
    close = price * np.exp(np.cumsum(rng.normal(0.0, vol, n)))
    open_ = np.concatenate((close[:1], close[:-1]))
    high = np.maximum(open_, close) * (1.0 + np.abs(rng.normal(0.0, vol / 2, n)))
    low = np.minimum(open_, close) * (1.0 - np.abs(rng.normal(0.0, vol / 2, n)))
    volume = rng.lognormal(3.0, 1.0, n)
    flat = rng.random(n) < 0.002  # flat candles (and no trades) as in real data
    high[flat] = low[flat] = open_[flat] = close[flat]
    volume[flat] = 0.0
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


SAMPLE = random_walk(500, 13)  # small general-purpose series (has flat, zero-volume bars)


def load_real() -> Candles:
    frame = shared_csv("BTC_USDT_2h.csv")
    columns = ("open", "high", "low", "close", "volume")
    return {column: frame[column].to_numpy(dtype=float) for column in columns}


DATASETS: dict[str, Callable[[], Candles]] = {
    "rw-seed1": lambda: random_walk(5_000, 1),
    "rw-seed2": lambda: random_walk(5_000, 2, vol=0.03),
    "rw-micro-price": lambda: random_walk(5_000, 3, price=2e-5),  # a SHIB-like quote
    "rw-long-200k": lambda: random_walk(200_000, 4, vol=0.005),  # precision drift over many bars
    "btc-usdt-2h": load_real,
}


@pytest.fixture(scope="module", params=list(DATASETS))
def candles(request: pytest.FixtureRequest) -> Candles:
    return DATASETS[request.param]()


# --------------------------------------------------------------------------------------------------
# Comparison with TA-Lib
# --------------------------------------------------------------------------------------------------

# Absolute floors, only where a value is a difference of prices and so can sit near zero while its
# rounding error stays proportional to the price level: a relative test alone would demand more
# digits than double precision holds there.
NO_FLOOR: Callable[[Candles], float | np.ndarray] = lambda c: 0.0  # noqa: E731
# MACD line/signal/hist are differences of EMAs of price: rounding ~1e-15 x price, floor 1e-12 x price.
PRICE_FLOOR: Callable[[Candles], float | np.ndarray] = lambda c: 1e-12 * np.abs(c["close"])  # noqa: E731
# CCI's numerator is (typical - its mean); near CCI = 0 its rounding (< 1e-9 in CCI units on these
# data) dominates. 1e-7 is 1e-9 of a typical +-100 reading.
CCI_FLOOR: Callable[[Candles], float | np.ndarray] = lambda c: 1e-7  # noqa: E731


def _talib_vwap(c: Candles, period: int) -> np.ndarray:
    """SUM(TYPPRICE * volume) / SUM(volume), undefined (NaN) where the window traded nothing.

    Which windows those are is decided exactly, by counting trading bars: TA-Lib's running SUM
    leaves a rounding residue instead of 0 after zero-volume bars.
    """
    value = talib.SUM(talib.TYPPRICE(c["high"], c["low"], c["close"]) * c["volume"], period)
    result = value / talib.SUM(c["volume"], period)
    trading_bars = talib.SUM((c["volume"] > 0).astype(float), period)
    result[np.round(np.nan_to_num(trading_bars, nan=1.0)) == 0] = np.nan
    return result


def _cases() -> list[tuple[str, Callable[[Candles], Outputs], Callable[[Candles], Outputs], Callable]]:
    cases: list[tuple[str, Callable[[Candles], Outputs], Callable[[Candles], Outputs], Callable]] = []

    def add(name: str, ours: Callable, ref: Callable, floor: Callable = NO_FLOOR) -> None:
        def as_tuple(f: Callable) -> Callable[[Candles], Outputs]:
            return lambda c: (lambda r: r if isinstance(r, tuple) else (r,))(f(c))

        cases.append((name, as_tuple(ours), as_tuple(ref), floor))

    for p in (1, 2, 20, 200):
        add(f"sma-{p}", lambda c, p=p: ind.sma(c["close"], p), lambda c, p=p: talib.SMA(c["close"], p))
    for p in (1, 2, 12, 200):
        add(f"ema-{p}", lambda c, p=p: ind.ema(c["close"], p), lambda c, p=p: talib.EMA(c["close"], p))
    for p in (1, 2, 20, 100):
        add(f"wma-{p}", lambda c, p=p: ind.wma(c["close"], p), lambda c, p=p: talib.WMA(c["close"], p))
    for p in (2, 14, 50):
        add(f"rsi-{p}", lambda c, p=p: ind.rsi(c["close"], p), lambda c, p=p: talib.RSI(c["close"], p))
    for f, s, g in ((12, 26, 9), (5, 35, 5), (2, 3, 1), (8, 8, 4)):
        add(
            f"macd-{f}-{s}-{g}",
            lambda c, f=f, s=s, g=g: ind.macd(c["close"], f, s, g),
            lambda c, f=f, s=s, g=g: talib.MACD(c["close"], f, s, g),
            PRICE_FLOOR,
        )
    for p, k in ((20, 2.0), (5, 1.5), (100, 3.0)):
        add(
            f"bollinger-{p}-{k}",
            lambda c, p=p, k=k: ind.bollinger(c["close"], p, k),
            lambda c, p=p, k=k: talib.BBANDS(c["close"], p, k, k, MA_Type.SMA),
        )
    for p in (1, 14, 50):
        add(
            f"atr-{p}",
            lambda c, p=p: ind.atr(c["high"], c["low"], c["close"], p),
            lambda c, p=p: talib.ATR(c["high"], c["low"], c["close"], p),
        )
    for kp, dp in ((14, 3), (5, 1), (21, 7)):
        add(
            f"stochastic-{kp}-{dp}",
            lambda c, kp=kp, dp=dp: ind.stochastic(c["high"], c["low"], c["close"], kp, dp),
            lambda c, kp=kp, dp=dp: talib.STOCHF(c["high"], c["low"], c["close"], kp, dp, MA_Type.SMA),
        )
    add("obv", lambda c: ind.obv(c["close"], c["volume"]), lambda c: talib.OBV(c["close"], c["volume"]))
    for p in (1, 10, 100):
        add(f"roc-{p}", lambda c, p=p: ind.roc(c["close"], p), lambda c, p=p: talib.ROC(c["close"], p))
    for p in (2, 14, 50):
        add(
            f"williams_r-{p}",
            lambda c, p=p: ind.williams_r(c["high"], c["low"], c["close"], p),
            lambda c, p=p: talib.WILLR(c["high"], c["low"], c["close"], p),
        )
    for p in (2, 20, 100):
        add(
            f"cci-{p}",
            lambda c, p=p: ind.cci(c["high"], c["low"], c["close"], p),
            lambda c, p=p: talib.CCI(c["high"], c["low"], c["close"], p),
            CCI_FLOOR,
        )
    for p in (2, 14, 50):
        add(
            f"adx-{p}",
            lambda c, p=p: ind.adx(c["high"], c["low"], c["close"], p),
            lambda c, p=p: talib.ADX(c["high"], c["low"], c["close"], p),
        )
    for p in (2, 20, 55):
        add(
            f"donchian-{p}",
            lambda c, p=p: ind.donchian(c["high"], c["low"], p),
            lambda c, p=p: (talib.MAX(c["high"], p), talib.MIN(c["low"], p)),
        )
    for p in (2, 20, 100):
        add(
            f"vwap-{p}",
            lambda c, p=p: ind.vwap(c["high"], c["low"], c["close"], c["volume"], p),
            lambda c, p=p: _talib_vwap(c, p),
        )
    return cases


CASES = _cases()


def assert_matches(ours: np.ndarray, ref: np.ndarray, floor: float | np.ndarray = 0.0) -> None:
    assert isinstance(ours, np.ndarray) and ours.dtype == np.float64
    assert ours.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref), err_msg="NaN positions differ")
    valid = ~np.isnan(ref)
    atol = np.broadcast_to(floor, ref.shape)[valid]
    excess = np.abs(ours[valid] - ref[valid]) - (RTOL * np.abs(ref[valid]) + atol)
    assert not (excess > 0).any(), f"{int((excess > 0).sum())} values off, worst by {excess.max():.3g}"


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_matches_talib(candles: Candles, case: tuple) -> None:
    _, ours, ref, floor = case
    got, want = ours(candles), ref(candles)
    assert len(got) == len(want)
    for mine, theirs in zip(got, want, strict=True):
        assert_matches(mine, theirs, floor(candles))


def test_obv_is_bit_identical_to_talib() -> None:
    c = random_walk(20_000, 7)
    np.testing.assert_array_equal(ind.obv(c["close"], c["volume"]), talib.OBV(c["close"], c["volume"]))


def test_leading_nans_are_skipped_like_talib() -> None:
    c = random_walk(400, 8)
    close, high = c["close"].copy(), c["high"].copy()
    close[:7] = np.nan
    high[:11] = np.nan
    assert_matches(ind.ema(close, 10), talib.EMA(close, 10))
    assert_matches(ind.rsi(close, 14), talib.RSI(close, 14))
    assert_matches(ind.atr(high, c["low"], close, 14), talib.ATR(high, c["low"], close, 14))
    assert_matches(ind.adx(high, c["low"], close, 5), talib.ADX(high, c["low"], close, 5))
    for mine, theirs in zip(ind.macd(close), talib.MACD(close), strict=True):
        assert_matches(mine, theirs, 1e-12 * np.nan_to_num(np.abs(close)))


def test_flat_market_matches_talib() -> None:
    """No movement at all: every zero-division guard gives TA-Lib's value."""
    x = np.full(80, 5.0)
    assert_matches(ind.rsi(x, 14), talib.RSI(x, 14))
    assert_matches(ind.adx(x, x, x, 5), talib.ADX(x, x, x, 5))
    assert_matches(ind.cci(x, x, x, 5), talib.CCI(x, x, x, 5))
    assert_matches(ind.williams_r(x, x, x, 5), talib.WILLR(x, x, x, 5))
    for mine, theirs in zip(
        ind.stochastic(x, x, x, 5, 3), talib.STOCHF(x, x, x, 5, 3, MA_Type.SMA), strict=True
    ):
        assert_matches(mine, theirs)
    for mine, theirs in zip(ind.bollinger(x, 5), talib.BBANDS(x, 5), strict=True):
        assert_matches(mine, theirs)


def test_adx_holds_through_flat_stretches_like_talib() -> None:
    rng = np.random.default_rng(9)
    moving = np.arange(130) < 50
    close = np.concatenate((100 + np.cumsum(rng.normal(0, 1, 50)), np.full(80, 120.0)))
    high, low = close + moving, close - moving
    assert_matches(ind.adx(high, low, close, 5), talib.ADX(high, low, close, 5))
    close = np.concatenate((np.full(40, 100.0), 100 + np.cumsum(rng.normal(0, 1, 60))))
    high, low = close + (np.arange(100) >= 40), close - (np.arange(100) >= 40)
    assert_matches(ind.adx(high, low, close, 5), talib.ADX(high, low, close, 5))


def test_one_bar_channels() -> None:
    """Donchian and VWAP have no TA-Lib twin at period 1 (MAX/SUM need 2): check the definitions."""
    c = SAMPLE
    upper, lower = ind.donchian(c["high"], c["low"], 1)
    np.testing.assert_array_equal(upper, c["high"])
    np.testing.assert_array_equal(lower, c["low"])
    typical = (c["high"] + c["low"] + c["close"]) / 3
    got = ind.vwap(c["high"], c["low"], c["close"], c["volume"], 1)
    traded = c["volume"] > 0
    np.testing.assert_allclose(got[traded], typical[traded], rtol=1e-15)
    assert np.isnan(got[~traded]).all() and (~traded).any()


def test_roc_of_a_zero_price_is_zero_like_talib() -> None:
    x = np.array([0.0, 1, 2, 0, 3, 4, 0, 0, 5])
    assert_matches(ind.roc(x, 1), talib.ROC(x, 1))


# --------------------------------------------------------------------------------------------------
# Causality: bar t only ever sees bars 0..t
# --------------------------------------------------------------------------------------------------

CAUSALITY_PARAMS: list[tuple[str, dict[str, float]]] = [(name, {}) for name in ind.INDICATORS] + [
    ("ema", {"period": 3}),
    ("rsi", {"period": 2}),
    ("macd", {"fast": 3, "slow": 7, "signal": 4}),
    ("bollinger", {"period": 7, "k": 1.0}),
    ("adx", {"period": 3}),
    ("wma", {"period": 9}),
]


@pytest.mark.parametrize(
    ("name", "params"),
    CAUSALITY_PARAMS,
    ids=[name + "".join(f"-{k}={v}" for k, v in params.items()) for name, params in CAUSALITY_PARAMS],
)
def test_causal(name: str, params: dict) -> None:
    """A prefix gives exactly the same values, and changing the future changes nothing before it."""
    c = random_walk(3_000, 10)
    full = ind.compute(name, c, params)
    rng = np.random.default_rng(11)
    for cut in (1, 5, 33, 250, 1_024, 1_025, 2_047, 2_999):
        prefix = ind.compute(name, {k: v[:cut] for k, v in c.items()}, params)
        for whole, part in zip(full, prefix, strict=True):
            np.testing.assert_array_equal(part, whole[:cut], err_msg=f"{name} prefix of {cut}")
        # Other futures: rescaled bars, a missing bar, a dead flat market (ADX's hold path).
        for kind in ("rescaled", "nan", "flat"):
            future = {k: v.copy() for k, v in c.items()}
            for column in future.values():
                if kind == "rescaled":
                    column[cut:] *= rng.uniform(0.5, 1.5, column.size - cut)
                elif kind == "nan":
                    column[min(cut + 3, column.size - 1)] = np.nan
                else:
                    column[cut:] = 100.0
            changed = ind.compute(name, future, params)
            for whole, other in zip(full, changed, strict=True):
                np.testing.assert_array_equal(other[:cut], whole[:cut], err_msg=f"{name} {kind} after {cut}")


def test_interior_nan_blanks_only_what_depends_on_it() -> None:
    c = random_walk(300, 12)
    close = c["close"].copy()
    close[150] = np.nan
    clean_ema, clean_sma = ind.ema(c["close"], 10), ind.sma(c["close"], 10)
    got_ema, got_sma = ind.ema(close, 10), ind.sma(close, 10)
    np.testing.assert_array_equal(got_ema[:150], clean_ema[:150])
    assert np.isnan(got_ema[150:]).all()  # recursive: every later bar
    np.testing.assert_array_equal(got_sma[:150], clean_sma[:150])
    assert np.isnan(got_sma[150:160]).all()  # window: the windows containing bar 150
    np.testing.assert_array_equal(got_sma[160:], clean_sma[160:])


# --------------------------------------------------------------------------------------------------
# Inputs, outputs and errors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ind.INDICATORS))
def test_short_input(name: str) -> None:
    spec = ind.INDICATORS[name]
    warmup = spec.warmup()
    for n in (0, warmup):
        outputs = ind.compute(name, {k: v[:n] for k, v in SAMPLE.items()})
        assert all(out.shape == (n,) and np.isnan(out).all() for out in outputs)
    outputs = ind.compute(name, {k: v[: warmup + 1] for k, v in SAMPLE.items()})
    assert all(np.isnan(out[:warmup]).all() and np.isfinite(out[warmup]) for out in outputs)


@pytest.mark.parametrize("name", list(ind.INDICATORS))
def test_warmup_is_the_leading_nan_count(name: str) -> None:
    spec = ind.INDICATORS[name]
    for params in ({}, {p.name: min(p.maximum, 2 * p.default + 1) for p in spec.params if p.kind is int}):
        if name == "macd" and params:
            params = {"fast": 5, "slow": 53, "signal": 19}
        warmup = spec.warmup(params)
        for out in ind.compute(name, SAMPLE, params):
            assert np.isnan(out[:warmup]).all() and not np.isnan(out[warmup:]).any()


@pytest.mark.parametrize("name", list(ind.INDICATORS))
def test_pandas_series_and_lists_give_the_same_arrays(name: str) -> None:
    spec = ind.INDICATORS[name]
    arrays = [SAMPLE[column] for column in spec.inputs]
    index = pd.date_range("2024-01-01", periods=arrays[0].size, freq="2h")
    expected = ind.compute(name, SAMPLE)
    for converted in ([pd.Series(a, index=index) for a in arrays], [a.tolist() for a in arrays]):
        result = spec.func(*converted, **spec.resolve_params())
        result = result if isinstance(result, tuple) else (result,)
        for got, want in zip(result, expected, strict=True):
            assert type(got) is np.ndarray and got.dtype == np.float64
            np.testing.assert_array_equal(got, want)


def test_inputs_are_never_modified_and_outputs_never_shared() -> None:
    before = {k: v.copy() for k, v in SAMPLE.items()}
    first = {name: ind.compute(name, SAMPLE) for name in ind.INDICATORS}
    kept = {name: tuple(out.copy() for out in outs) for name, outs in first.items()}
    for name in ind.INDICATORS:  # a second round reuses the scratch memory of the first
        ind.compute(name, random_walk(500, 14))
    for k, v in SAMPLE.items():
        np.testing.assert_array_equal(v, before[k])
    for name, outs in first.items():
        for out, copy in zip(outs, kept[name], strict=True):
            np.testing.assert_array_equal(out, copy)


def test_threads_get_the_same_values() -> None:
    series = [random_walk(20_000, 20 + i) for i in range(4)]
    jobs = [(name, c) for c in series for name in ind.INDICATORS]
    expected = [ind.compute(name, c) for name, c in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda job: ind.compute(*job), jobs))
    for outs, want in zip(got, expected, strict=True):
        for a, b in zip(outs, want, strict=True):
            np.testing.assert_array_equal(a, b)


def test_scratch_pool_lends_best_fit_and_keeps_the_smallest_within_its_limit() -> None:
    pool = BufferPool(limit_bytes=8 * 1000)
    with Workspace(pool) as ws:
        sizes = [ws.take(n).size for n in (100, 500, 2000)]  # buffers of ~170, ~580 and ~2130 floats
        assert sizes == [100, 500, 2000]
    assert 0 < pool.nbytes <= pool.limit_bytes  # the largest did not fit next to the other two
    kept = pool.nbytes
    small, large = pool.lend(150), pool.lend(150)  # best fit first: the ~170 buffer, then the ~580
    assert small is not None and large is not None and 150 <= small.size < 500 <= large.size
    assert pool.lend(1) is None and pool.nbytes == 0
    pool.keep([large, small])
    assert pool.nbytes == kept


def test_indicators_draw_on_the_one_bounded_scratch_pool() -> None:
    ind.compute("macd", random_walk(300_000, 21))
    assert 0 < SCRATCH_POOL.nbytes <= SCRATCH_POOL.limit_bytes == 64 * 2**20


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ind.sma(SAMPLE["close"], 0), "period must be >= 1"),
        (lambda: ind.ema(SAMPLE["close"], -3), "period must be >= 1"),
        (lambda: ind.rsi(SAMPLE["close"], 1), "period must be >= 2"),
        (lambda: ind.bollinger(SAMPLE["close"], 1), "period must be >= 2"),
        (lambda: ind.williams_r(SAMPLE["high"], SAMPLE["low"], SAMPLE["close"], 1), "period must be >= 2"),
        (lambda: ind.cci(SAMPLE["high"], SAMPLE["low"], SAMPLE["close"], 1), "period must be >= 2"),
        (lambda: ind.adx(SAMPLE["high"], SAMPLE["low"], SAMPLE["close"], 1), "period must be >= 2"),
        (lambda: ind.atr(SAMPLE["high"], SAMPLE["low"], SAMPLE["close"], 0), "period must be >= 1"),
        (lambda: ind.stochastic(SAMPLE["high"], SAMPLE["low"], SAMPLE["close"], 0), "k_period must be >= 1"),
        (
            lambda: ind.stochastic(SAMPLE["high"], SAMPLE["low"], SAMPLE["close"], 9, 0),
            "d_period must be >= 1",
        ),
        (lambda: ind.macd(SAMPLE["close"], 1, 26, 9), "fast must be >= 2"),
        (lambda: ind.macd(SAMPLE["close"], 12, 26, 0), "signal must be >= 1"),
        (lambda: ind.macd(SAMPLE["close"], 26, 12, 9), "fast must be <= slow"),
        (lambda: ind.sma(SAMPLE["close"], 14.0), "period must be an integer"),  # type: ignore[arg-type]  # deliberately a float
        (lambda: ind.sma(SAMPLE["close"], True), "period must be an integer"),
        (lambda: ind.sma(SAMPLE["close"], "14"), "period must be an integer"),  # type: ignore[arg-type]  # deliberately a str
        (lambda: ind.bollinger(SAMPLE["close"], 20, -1.0), "k must be finite and >= 0"),
        (lambda: ind.bollinger(SAMPLE["close"], 20, float("nan")), "k must be finite and >= 0"),
        (lambda: ind.atr(SAMPLE["high"], SAMPLE["low"][:-1], SAMPLE["close"]), "same length"),
        (lambda: ind.sma(np.ones((10, 2)), 3), "one-dimensional"),
    ],
)
def test_invalid_arguments_raise(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ind.INDICATORS))
def test_spec_describes_its_function(name: str) -> None:
    spec = ind.INDICATORS[name]
    assert spec.name == name
    assert set(spec.inputs) <= {"open", "high", "low", "close", "volume"}
    parameters = list(inspect.signature(spec.func).parameters)
    assert parameters == [*parameters[: len(spec.inputs)], *(p.name for p in spec.params)]
    assert len(parameters) == len(spec.inputs) + len(spec.params)
    for param in spec.params:
        assert param.kind in (int, float)
        assert param.minimum <= param.default <= param.maximum
    assert len(ind.compute(name, SAMPLE)) == len(spec.outputs)


def test_compute_validates_user_parameters() -> None:
    close = {"close": SAMPLE["close"]}
    rsi_14 = ind.compute("rsi", close, {"period": 14.0})  # JSON numbers may arrive as floats
    np.testing.assert_array_equal(rsi_14[0], ind.rsi(SAMPLE["close"], 14))
    bands = ind.compute("bollinger", close, {"k": 1})
    for got, want in zip(bands, ind.bollinger(SAMPLE["close"], 20, 1.0), strict=True):
        np.testing.assert_array_equal(got, want)
    for params, message in (
        ({"period": 1}, "between 2 and 100000"),
        ({"period": 14.5}, "must be an integer"),
        ({"period": True}, "must be a number"),
        ({"period": "14"}, "must be a number"),
        ({"length": 14}, "unknown parameter"),
    ):
        with pytest.raises(ValueError, match=message):
            ind.compute("rsi", close, params)
    with pytest.raises(ValueError, match="fast must be <= slow"):
        ind.compute("macd", close, {"fast": 30})
    with pytest.raises(ValueError, match="unknown indicator 'supertrend'"):
        ind.compute("supertrend", close)
    with pytest.raises(ValueError, match=r"needs candle column\(s\) \['high', 'low'\]"):
        ind.compute("atr", close)


def test_warmup_reads_defaults_and_rejects_bad_params() -> None:
    assert ind.INDICATORS["macd"].warmup() == 33
    assert ind.INDICATORS["adx"].warmup({"period": 7}) == 13
    assert ind.INDICATORS["obv"].warmup() == 0
    with pytest.raises(ValueError):
        ind.INDICATORS["sma"].warmup({"period": 0})


@pytest.mark.parametrize("period", [1, 2, 3, 20, 131, 377])
def test_window_sums_in_blocks_give_the_bits_of_one_run(period: int) -> None:
    """`window_sum` runs long inputs in blocks of outputs; each output gets the same additions in the same
    order as in one run over the whole array, blocks' edges included."""
    from ml_engine.indicators import kernels

    n = 2 * kernels.WINDOW_BLOCK + 1_000
    x = random_walk(n, 5)["close"]
    blocked, whole = np.empty(n - period + 1), np.empty(n - period + 1)
    with Workspace(BufferPool(limit_bytes=0)) as ws:
        kernels.window_sum(x, period, blocked, ws)
        kernels._window_sum_run(x, period, whole, ws)
    assert blocked.tobytes() == whole.tobytes()


@pytest.mark.parametrize("in_place", [False, True], ids=["new array", "over its input"])
@pytest.mark.parametrize("op", [np.maximum, np.minimum], ids=["max", "min"])
@pytest.mark.parametrize("period", [1, 2, 3, 4, 14, 20, 131, 377])
def test_window_extremes_in_blocks_equal_each_windows_maximum_or_minimum(
    period: int, op: np.ufunc, in_place: bool
) -> None:
    """`window_extreme` runs long inputs in blocks of outputs too: every output, at the blocks' edges as
    anywhere, is its own window's extreme; an output written over its own input runs in one piece."""
    from ml_engine.indicators import kernels

    n = 2 * kernels.WINDOW_BLOCK + 1_000  # not a whole number of blocks
    x = random_walk(n, 6)["high"]
    windows = np.lib.stride_tricks.sliding_window_view(x, period)
    expected = windows.max(axis=1) if op is np.maximum else windows.min(axis=1)
    out = x[: n - period + 1] if in_place else np.empty(n - period + 1)
    with Workspace(BufferPool(limit_bytes=0)) as ws:
        kernels.window_extreme(x, period, op, out, ws)
    assert out.tobytes() == expected.tobytes()


def test_long_series_still_match_talib() -> None:
    """Averages and bands on more bars than one block of the rolling sums."""
    c = random_walk(300_000, 9)
    for p in (20, 200):
        assert_matches(ind.sma(c["close"], p), talib.SMA(c["close"], p))
    bands = talib.BBANDS(c["close"], 20, 2.0, 2.0, MA_Type.SMA)
    for ours, ref in zip(ind.bollinger(c["close"], 20, 2.0), bands, strict=True):
        assert_matches(ours, ref, 1e-9 * c["close"])
