"""Honesty by test: no edge on a random walk, a caught leak, a learnt planted pattern, real data as it is.

The two checks (``accuracy_is_chance`` and ``does_not_beat_buy_and_hold``) are applied unchanged to
the honest pipeline on random walks, where they must pass, and to the same pipeline fed a feature
that leaks the future, where they must fail: so a leak in the real pipeline would fail them too.

The noise bound of the backtest check. Compare the OOS strategy with buy-and-hold over the same bars
in log terms: ``excess = log(1 + R_model) - log(1 + R_buy_and_hold)``. In our random walks the open
of each bar is the previous close, so a position held from bar t+1's open to bar t+2's open earns the
close-to-close log return ``r[t+1]``, and ``excess = sum_t (pos_t - 1) * r[t+1] - fees``. Without a
leak ``pos_t`` is decided from data up to bar t, and the log returns of a driftless random walk are
independent with mean 0, so ``sum (pos_t - 1) r[t+1]`` has mean 0 and standard deviation
``sigma * sqrt(sum (pos_t - 1)^2) <= sigma * sqrt(n)``; fees only lower it. We require
``excess <= 3 * sigma_hat * sqrt(n)`` with sigma_hat the std of the OOS bars' log returns and n their
number: a one-sided 3-sigma bound on an over-estimated sigma, so an honest model fails it with
probability below ~0.13% per series, while a model that sees the next bar earns ~E|r|/2 per bar, a
multiple of n rather than of sqrt(n) (measured: ~35 against a bound of ~3 on 12,000 bars).

The accuracy band: with ~9,800 OOS rows the standard error of an accuracy of 0.5 is 0.005, so
0.50 +- 0.03 is a 6-sigma band for an honest model, and a leak lands far outside it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ml_engine.feature_extractor import FeatureConfig, extract
from ml_engine.trainer import (
    BacktestSummary,
    TrainConfig,
    TrainOutcome,
    TrainReport,
    _train_from_features,
    train,
)
from tests.support.candles import market_walk
from tests.support.data import shared_candles
from utils.market_data.candles import Candles

N_BARS = 12_000
ACCURACY_BAND = 0.03
K_SIGMA = 3.0
# The best direction accuracy on AR(1) returns with Gaussian noise: P(sign r[t+1] == sign r[t]).
AR1_PHI = 0.5
AR1_BEST_ACCURACY = 0.5 + math.asin(AR1_PHI) / math.pi  # ~0.667
TWO_KINDS = TrainConfig(candidates=("logreg", "hist_gb"))
ALL_KINDS = TrainConfig()  # logreg, random_forest and hist_gb with their full grids


def accuracy_is_chance(report: TrainReport) -> bool:
    """OOS accuracy of the chosen model and of the nested procedure within 0.50 +- 0.03."""
    return all(abs(m.oos_accuracy - 0.5) <= ACCURACY_BAND for m in (report.metrics, report.nested_metrics))


def excess_and_bound(candles: Candles, bt: BacktestSummary) -> tuple[float, float]:
    lo = int(np.searchsorted(candles.open_time, bt.start_open_time))
    log_close = np.log(candles.close[lo : lo + bt.n_bars])
    sigma = float(np.std(np.diff(log_close), ddof=1))
    excess = math.log1p(bt.total_return) - math.log1p(bt.buy_and_hold_return)
    return excess, K_SIGMA * sigma * math.sqrt(bt.n_bars)


def does_not_beat_buy_and_hold(candles: Candles, report: TrainReport) -> bool:
    """Neither OOS backtest beats buy-and-hold after fees by more than the noise bound (module doc)."""
    checks = [excess_and_bound(candles, bt) for bt in (report.backtest, report.nested_backtest)]
    return all(excess <= bound for excess, bound in checks)


# --- random walk: no edge ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "config"),
    [(100, ALL_KINDS), (101, TWO_KINDS), (102, TWO_KINDS), (103, TWO_KINDS)],
    ids=["seed100-all-kinds", "seed101", "seed102", "seed103"],
)
def test_random_walk_has_no_edge(seed: int, config: TrainConfig) -> None:
    candles = market_walk(N_BARS, 0.0, seed, symbol="RWUSDT")
    report = train(candles, FeatureConfig(), config).report
    assert report.metrics.n_oos > 9_000
    assert accuracy_is_chance(report), (report.metrics, report.nested_metrics)
    assert does_not_beat_buy_and_hold(candles, report), (
        excess_and_bound(candles, report.backtest),
        excess_and_bound(candles, report.nested_backtest),
    )


def _leaky_train(candles: Candles, leak: np.ndarray) -> TrainOutcome:
    # The internal path that takes a ready feature frame: the public train() builds causal features
    # itself and offers no way to add such a column.
    frame = extract(candles, FeatureConfig()).with_columns(["leak"], leak)
    return _train_from_features(candles, frame, TWO_KINDS)


def _next_return(close: np.ndarray) -> np.ndarray:
    """Bar t gets log(close[t+1] / close[t]): the very thing being predicted."""
    return np.r_[np.diff(np.log(close)), np.nan]


def _centered_average(close: np.ndarray) -> np.ndarray:
    """A classic bug: a centered 5-bar average (bars t-2..t+2) relative to the close."""
    smooth = np.convolve(close, np.ones(5) / 5, mode="same")
    smooth[:2] = smooth[-2:] = np.nan
    return smooth / close - 1.0


@pytest.mark.parametrize("leak", [_next_return, _centered_average], ids=["next-return", "centered-average"])
def test_the_checks_catch_a_leak(leak: Callable[[np.ndarray], np.ndarray]) -> None:
    candles = market_walk(N_BARS, 0.0, 104, symbol="RWUSDT")
    report = _leaky_train(candles, leak(candles.close)).report
    assert not accuracy_is_chance(report)
    assert not does_not_beat_buy_and_hold(candles, report)
    excess, bound = excess_and_bound(candles, report.backtest)
    assert excess > 5 * bound  # not a near miss


# --- AR(1): the pipeline can learn ------------------------------------------------------------------


def test_ar1_pattern_is_learnt() -> None:
    candles = market_walk(N_BARS, AR1_PHI, 11, symbol="RWUSDT")
    report = train(candles, FeatureConfig(), ALL_KINDS).report
    assert [c.name for c in report.candidates] == ["logreg", "random_forest", "hist_gb"]
    for candidate in report.candidates:
        assert candidate.oos.oos_accuracy >= 0.60, candidate
    assert report.metrics.oos_accuracy >= 0.60
    assert report.nested_metrics.oos_accuracy >= 0.60
    # Nor better than the best possible rule beyond noise: that too would mean a leak.
    standard_error = math.sqrt(0.25 / report.metrics.n_oos)
    assert report.metrics.oos_accuracy <= AR1_BEST_ACCURACY + 3 * standard_error
    assert abs(report.metrics.baseline_accuracy - 0.5) < ACCURACY_BAND
    # A real edge does clear the backtest noise bound, so the bound is not vacuous.
    excess, bound = excess_and_bound(candles, report.backtest)
    assert excess > bound


# --- real data: whatever it is -----------------------------------------------------------------------


def test_missing_real_data_skips_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(pytest.skip.Exception, match="is absent"):
        shared_candles("BTC_USDT_2h.csv", "BTCUSDT", "2h", tmp_path)


def test_real_btc_2h_report_is_produced() -> None:
    """The numbers are whatever they are; only the report's structure and sanity are asserted."""
    candles = shared_candles("BTC_USDT_2h.csv", "BTCUSDT", "2h")
    assert np.all(np.diff(candles.open_time) > 0)
    outcome = train(candles, FeatureConfig(), TWO_KINDS)
    report = outcome.report
    assert report.symbol == "BTCUSDT" and report.interval == "2h"
    assert "hour_sin" in report.feature_names  # 2h bars are intraday
    assert report.n_candles == len(candles) and report.n_rows > 30_000
    for m in (report.metrics, report.nested_metrics):
        assert m.n_oos > 25_000
        assert 0 <= m.oos_accuracy <= 1 and 0 <= m.oos_balanced_accuracy <= 1
        assert m.oos_auc is not None and 0 <= m.oos_auc <= 1
        assert math.isfinite(m.oos_log_loss) and 0 <= m.oos_brier <= 1
    for bt in (report.backtest, report.nested_backtest):
        assert bt.total_return > -1 and math.isfinite(bt.buy_and_hold_return)
        assert bt.start_open_time == report.folds[0].test_start_open_time
    assert report.chosen in ("logreg", "hist_gb")
    assert report.train_start_open_time < report.train_end_open_time <= int(candles.open_time[-1])
    assert outcome.model.predict_proba(extract(candles).X[-1:]).shape == (1, 2)
