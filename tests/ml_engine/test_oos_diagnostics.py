"""What a training records for its model report (TrainReport.diagnostics): per-fold metrics that pool back to
the headline numbers, calibration deciles of the OOS rows, permutation importances of every feature, and the
OOS backtest's curve downsampled with its extremes (so its drawdown) intact."""

from __future__ import annotations

import json
from itertools import pairwise

import numpy as np
import pytest

from backtester.metrics import max_drawdown
from ml_engine.feature_extractor import FEATURE_SETS
from ml_engine.oos import calibration_bins, oos_backtest_run
from ml_engine.trainer import TrainOutcome, train
from tests.ml_engine.test_trainer import fast_config
from tests.support.candles import market_walk

N_FOLDS = 5


@pytest.fixture(scope="module")
def trained() -> tuple[TrainOutcome, object]:
    candles = market_walk(4000, phi=0.3, seed=3)
    cfg = fast_config(candidates=("logreg", "random_forest"), n_folds=N_FOLDS)
    return train(candles, FEATURE_SETS["compact"], cfg), candles


def test_per_fold_metrics_cover_the_folds_and_pool_back(trained) -> None:
    outcome, _ = trained
    report = outcome.report
    diagnostics = report.diagnostics
    assert diagnostics is not None and len(diagnostics.folds) == N_FOLDS
    for fold, window in zip(diagnostics.folds, report.folds, strict=True):
        assert fold.index == window.index and fold.n_test == window.n_test
        assert fold.test_start_open_time == window.test_start_open_time
        assert 0.0 <= fold.accuracy <= 1.0 and fold.log_loss > 0 and fold.n_trades >= 0
    rows = sum(f.n_test for f in diagnostics.folds)
    assert rows == report.metrics.n_oos
    pooled = sum(f.accuracy * f.n_test for f in diagnostics.folds) / rows
    assert pooled == pytest.approx(report.metrics.oos_accuracy, abs=1e-12)


def test_calibration_deciles_hold_every_oos_row_in_order(trained) -> None:
    outcome, _ = trained
    bins = outcome.report.diagnostics.calibration
    assert len(bins) == 10 and sum(b.n for b in bins) == outcome.report.metrics.n_oos
    means = [b.mean_predicted for b in bins]
    assert means == sorted(means)
    assert all(b.lower <= b.mean_predicted <= b.upper and 0 <= b.realised_up_rate <= 1 for b in bins)
    assert all(a.upper <= b.lower for a, b in pairwise(bins))


def test_calibration_of_known_probabilities() -> None:
    p = np.repeat([0.2, 0.8], 500)
    up = np.r_[np.arange(500) < 100, np.arange(500) < 400]  # 20% and 80% went up: perfectly calibrated
    bins = calibration_bins(p, up, n_bins=2)
    assert [(b.mean_predicted, b.realised_up_rate, b.n) for b in bins] == [(0.2, 0.2, 500), (0.8, 0.8, 500)]
    assert calibration_bins(np.array([np.nan]), np.array([True])) == []


def test_importances_name_every_feature_most_important_first(trained) -> None:
    outcome, _ = trained
    importance = outcome.report.diagnostics.importance
    assert sorted(i.name for i in importance) == sorted(outcome.feature_names)
    values = [i.importance for i in importance]
    assert values == sorted(values, reverse=True)
    # A planted AR(1) edge lives in the recent returns: the top feature is a return lag.
    assert importance[0].name.startswith("ret_") and importance[0].importance > 0
    assert "out-of-sample test rows" in outcome.report.diagnostics.importance_note


def test_the_stored_curve_keeps_the_backtests_extremes_and_drawdown(trained) -> None:
    outcome, candles = trained
    report = outcome.report
    curve = report.diagnostics.backtest_curve
    lo = int(np.searchsorted(candles.open_time, outcome.oos_open_time[0]))
    oos = candles.slice(lo, lo + outcome.oos_open_time.shape[0])
    summary, equity = oos_backtest_run(
        oos, outcome.oos_p_up, fast_config(candidates=("logreg", "random_forest"))
    )
    assert summary == report.backtest and curve.n_bars == equity.shape[0] == len(oos)
    sampled = np.asarray(curve.equity)
    assert sampled.min() == pytest.approx(equity.min()) and sampled.max() == pytest.approx(equity.max())
    assert max_drawdown(sampled, 10_000.0)[0] == pytest.approx(report.backtest.max_drawdown, rel=1e-9)
    hold = 10_000.0 * oos.close / oos.close[0]
    assert np.asarray(curve.buy_and_hold).max() == pytest.approx(hold.max())
    assert curve.open_time == sorted(curve.open_time) and curve.open_time[0] == int(oos.open_time[0])


def test_the_diagnostics_are_json_in_the_report(trained) -> None:
    outcome, _ = trained
    data = json.loads(json.dumps(outcome.report.to_dict()))
    assert set(data["diagnostics"]) == {
        "folds",
        "calibration",
        "importance",
        "importance_note",
        "backtest_curve",
    }
