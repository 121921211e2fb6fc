"""ml_engine/feature_extractor.py: causal features, warm-up, intraday-only time features, latest-bar path."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from ml_engine.feature_extractor import (
    FEATURE_SETS,
    GROUPS,
    FeatureConfig,
    extract,
    extract_latest,
    feature_names,
    is_intraday,
    tail_length,
    warmup,
)
from tests.support.candles import market_walk
from utils.market_data.candles import Candles

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC, a Monday
# The walk these tests extract from: a random walk from 100, hourly from T0, wicks up to 0.3%.
WALK: dict[str, Any] = {"symbol": "TESTUSDT", "start_ms": T0, "wick": 0.003}


def assert_same(a: np.ndarray, b: np.ndarray) -> None:
    # The indicator library is exact on prefixes today; a 1e-12 tolerance leaves it room to change its
    # float evaluation order while still catching any real dependence on later bars.
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15, equal_nan=True)


def test_columns_match_names_and_the_default_set() -> None:
    c = market_walk(600, **WALK)
    frame = extract(c)
    assert frame.X.shape == (600, len(frame.names))
    assert frame.names == feature_names(FeatureConfig(), "1h")
    assert len(set(frame.names)) == len(frame.names)
    assert frame.open_time.tolist() == c.open_time.tolist()
    assert list(frame.to_frame().columns) == frame.names
    for expected in (
        "ret_1",
        "vol_12",
        "rsi_14",
        "macd_hist",
        "bb_pctb_20",
        "atr_14",
        "dist_sma_20",
        "dist_ema_200",
        "volume_z_48",
        "hour_sin",
        "dow_cos",
    ):
        assert expected in frame.names


@pytest.mark.parametrize("name", sorted(FEATURE_SETS))
def test_every_feature_set_is_usable(name: str) -> None:
    config = FEATURE_SETS[name]
    frame = extract(market_walk(max(400, warmup(config) + 50), **WALK), config)
    assert np.isfinite(frame.X[frame.warmup :]).all()


def test_features_on_a_prefix_equal_the_full_series_features() -> None:
    c = market_walk(1200, **WALK)
    full = extract(c).X
    for m in (1, 150, 199, 200, 201, 517, 1199):
        assert_same(extract(c.slice(0, m)).X, full[:m])


def test_changing_future_bars_changes_no_past_feature() -> None:
    c = market_walk(1000, **WALK)
    m = 640
    rng = np.random.default_rng(9)
    changed = Candles(
        c.symbol,
        c.interval,
        c.open_time,
        c.open.copy(),
        c.high.copy(),
        c.low.copy(),
        c.close.copy(),
        c.volume.copy(),
        c.source,
    )
    for column in (changed.open, changed.high, changed.low, changed.close):
        column[m:] *= 1.0 + rng.uniform(0.05, 0.5, 1000 - m)
    changed.high[m:] = np.maximum.reduce([changed.open[m:], changed.close[m:], changed.high[m:]])
    changed.low[m:] = np.minimum.reduce([changed.open[m:], changed.close[m:], changed.low[m:]])
    changed.volume[m:] *= 100.0
    before, after = extract(c).X, extract(changed).X
    assert_same(after[:m], before[:m])
    assert not np.allclose(after[m:], before[m:], equal_nan=True)  # the change did reach later rows


def test_warmup_rows_are_nan_and_later_rows_are_finite() -> None:
    for group in GROUPS:
        config = FeatureConfig(groups=(group,))
        w = warmup(config)
        frame = extract(market_walk(w + 30, **WALK), config)
        assert frame.warmup == w
        assert np.isnan(frame.X[:w]).all(), group
        assert np.isfinite(frame.X[w:]).all(), group
    default = FeatureConfig()
    assert warmup(default) == 199  # the 200-bar moving averages
    assert warmup(FeatureConfig(groups=("returns",), return_lags=(3, 30))) == 30
    assert warmup(FeatureConfig(groups=("macd",))) == 26 + 9 - 2
    assert warmup(FeatureConfig(groups=("time",))) == 0


def test_fewer_candles_than_the_warmup_give_only_nan_rows() -> None:
    frame = extract(market_walk(50, **WALK))
    assert frame.X.shape[0] == 50
    assert np.isnan(frame.X).all()


@pytest.mark.parametrize(
    ("interval", "intraday"),
    [("1m", True), ("15m", True), ("1h", True), ("12h", True), ("1d", False), ("3d", False), ("1w", False)],
)
def test_time_features_only_for_intraday_intervals(interval: str, intraday: bool) -> None:
    assert is_intraday(interval) is intraday
    names = extract(market_walk(300, interval=interval, **WALK)).names
    assert ("hour_sin" in names) is intraday
    assert ("dow_cos" in names) is intraday


def test_time_features_values() -> None:
    frame = extract(market_walk(24 * 8, interval="1h", **WALK), FeatureConfig(groups=("time",)))
    table = frame.to_frame()
    six_am = table.iloc[6]  # Monday 06:00 UTC
    assert six_am["hour_sin"] == pytest.approx(1.0)
    assert six_am["hour_cos"] == pytest.approx(0.0, abs=1e-12)
    assert six_am["dow_sin"] == pytest.approx(0.0, abs=1e-12)  # Monday is day 0
    tuesday = table.iloc[24]
    assert tuesday["dow_sin"] == pytest.approx(np.sin(2 * np.pi / 7))
    # Seven days later everything repeats.
    assert_same(table.iloc[6 + 24 * 7].to_numpy(), six_am.to_numpy())


def test_features_are_scale_free() -> None:
    c = market_walk(500, **WALK)
    scaled = Candles(
        c.symbol,
        c.interval,
        c.open_time,
        c.open * 1000,
        c.high * 1000,
        c.low * 1000,
        c.close * 1000,
        c.volume,
        c.source,
    )
    np.testing.assert_allclose(extract(scaled).X, extract(c).X, rtol=1e-7, atol=1e-9, equal_nan=True)


def test_flat_prices_and_constant_volume_give_finite_features() -> None:
    n = 400
    flat = np.full(n, 50.0)
    c = Candles(
        "FLATUSDT",
        "1h",
        T0 + np.arange(n, dtype=np.int64) * 3_600_000,
        flat,
        flat,
        flat,
        flat,
        np.full(n, 3.0),
        "sample",
    )
    frame = extract(c)
    assert np.isfinite(frame.X[frame.warmup :]).all()
    row = frame.to_frame().iloc[-1]
    assert row["bb_pctb_20"] == 0.5
    assert row["volume_z_48"] == 0.0
    assert row["ret_1"] == 0.0


def test_a_zero_price_makes_nan_not_inf() -> None:
    c = market_walk(400, **WALK)
    close = c.close.copy()
    close[300] = 0.0
    broken = Candles(
        c.symbol, c.interval, c.open_time, c.open, c.high, np.minimum(c.low, close), close, c.volume, c.source
    )
    X = extract(broken).X
    assert not np.isinf(X).any()
    assert np.isnan(X[300]).any()


def test_extract_latest_matches_the_full_history_row() -> None:
    config = FeatureConfig()
    c = market_walk(5000, **WALK)
    full = extract(c)
    latest = extract_latest(c, config)
    assert latest.X.shape == (1, len(full.names))
    assert latest.names == full.names
    assert latest.open_time.tolist() == [int(c.open_time[-1])]
    # The tail is shorter than the series here, so only the recursive filters' seeds differ.
    assert tail_length(config) < len(c)
    np.testing.assert_allclose(latest.X[0], full.X[-1], rtol=0, atol=1e-8)
    # A series no longer than the tail gives the very same row.
    short = c.slice(0, tail_length(config))
    assert_same(extract_latest(short, config).X[0], extract(short, config).X[-1])


def test_extract_latest_before_the_warmup_is_nan() -> None:
    assert np.isnan(extract_latest(market_walk(20, **WALK)).X).all()
    with pytest.raises(ValueError):
        extract_latest(market_walk(10, **WALK).slice(0, 0))


def test_tail_length_grows_with_the_slowest_filter() -> None:
    assert tail_length(FeatureConfig(ma_windows=(20, 400))) > tail_length(FeatureConfig())
    only_sma_free = FeatureConfig(groups=("returns", "volatility", "bollinger", "volume", "time"))
    assert tail_length(only_sma_free) == warmup(only_sma_free) + 1  # nothing recursive: warm-up only


def test_config_validation_and_round_trip() -> None:
    config = FEATURE_SETS["swing"]
    assert FeatureConfig.from_dict(config.to_dict()) == config
    assert FeatureConfig(return_lags=[1, 2]).return_lags == (1, 2)  # type: ignore[arg-type]  # deliberately a list
    bad: list[dict[str, object]] = [
        {"groups": ("returns", "astrology")},
        {"groups": ()},
        {"return_lags": ()},
        {"return_lags": (0,)},
        {"return_lags": (2, 2)},
        {"volatility_windows": (1,)},
        {"ma_windows": (True,)},
        {"macd_fast": 30, "macd_slow": 26},
        {"bollinger_k": 0.0},
        {"rsi_period": 1},
    ]
    for kwargs in bad:
        with pytest.raises(ValueError):
            FeatureConfig(**kwargs)  # type: ignore[arg-type]  # deliberately out of range or mistyped
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.rsi_period = 3  # type: ignore[misc]  # deliberately assigns to a frozen field


def test_the_request_vocabulary_of_feature_sets_is_exactly_the_registry() -> None:
    from typing import get_args

    from ml_engine.feature_extractor import FEATURE_SETS, FeatureSetName

    assert set(get_args(FeatureSetName)) == set(FEATURE_SETS)
