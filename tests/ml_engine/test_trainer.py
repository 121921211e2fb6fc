"""ml_engine/trainer.py: the walk-forward splitter, the report, determinism, causality and the helpers.

Small series (a few thousand bars), the compact feature set and reduced grids keep each test fast; the
honesty tests (test_honesty.py) run the full candidate set on larger series.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from sklearn.model_selection import TimeSeriesSplit

from ml_engine.feature_extractor import FEATURE_SETS, FeatureConfig, extract, extract_latest
from ml_engine.labels import DOWN, FLAT, UP
from ml_engine.trainer import (
    CANDIDATES,
    TrainConfig,
    TrainOutcome,
    predict_proba_up,
    top_features,
    train,
    walk_forward_splits,
)
from tests.support.candles import market_walk
from utils.intervals import interval_ms
from utils.market_data.candles import Candles

COMPACT = FEATURE_SETS["compact"]
# One grid point each, small forests: the properties tested here do not need a search.
FAST_GRIDS: dict[str, list[dict[str, Any]]] = {
    "logreg": [{"C": 1.0}],
    "random_forest": [{"n_estimators": 20, "max_depth": 4, "min_samples_leaf": 50}],
    "hist_gb": [{"max_iter": 30, "max_leaf_nodes": 7}],
}


def fast_config(**kwargs: Any) -> TrainConfig:
    base: dict[str, Any] = {"candidates": ("logreg",), "grids": FAST_GRIDS, "min_train_rows": 200}
    base.update(kwargs)
    return TrainConfig(**base)


# --- the splitter ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [60, 1000, 1003])
@pytest.mark.parametrize("n_folds", [5, 7])
@pytest.mark.parametrize("purge", [0, 1, 4])
def test_splits_are_time_ordered_expanding_purged_and_disjoint(n: int, n_folds: int, purge: int) -> None:
    folds = walk_forward_splits(n, n_folds, purge)
    assert len(folds) == n_folds
    test_size = n // (n_folds + 1)
    for k, fold in enumerate(folds):
        train, test = fold.train, fold.test
        assert fold.index == k
        assert train[0] == 0 and np.all(np.diff(train) == 1)  # expanding from the start, in order
        assert np.all(np.diff(test) == 1) and test.size == test_size
        assert train[-1] + purge < test[0]  # the purge gap, at least `purge` positions
        assert test[0] - train[-1] - 1 == purge
        assert not np.intersect1d(train, test).size
        if k:
            previous = folds[k - 1]
            assert fold.train_stop > previous.train_stop  # the window expands
            assert fold.test_start == previous.test_stop  # blocks adjacent, never overlapping
    assert folds[-1].test_stop == n
    # The same folds as scikit-learn's TimeSeriesSplit with a gap.
    reference = list(TimeSeriesSplit(n_splits=n_folds, gap=purge).split(np.zeros(n)))
    for fold, (ref_train, ref_test) in zip(folds, reference, strict=True):
        np.testing.assert_array_equal(fold.train, ref_train)
        np.testing.assert_array_equal(fold.test, ref_test)


def test_splitter_rejects_too_few_rows_and_bad_arguments() -> None:
    with pytest.raises(ValueError, match="too few rows"):
        walk_forward_splits(5, 5, 0)  # test blocks of 0
    with pytest.raises(ValueError, match="too few rows"):
        walk_forward_splits(12, 5, 2)  # first training window 0
    with pytest.raises(ValueError, match="too few rows"):
        walk_forward_splits(600, 5, 1, min_train=200)  # first training window 99
    walk_forward_splits(600, 5, 1, min_train=99)
    for kwargs in ({"n_folds": 1}, {"purge": -1}, {"n_folds": 2.5}):
        with pytest.raises(ValueError):
            walk_forward_splits(100, **kwargs)


def test_train_config_rules() -> None:
    assert TrainConfig().n_folds == 5
    assert TrainConfig().effective_purge == 1
    assert TrainConfig(horizon=6).effective_purge == 6  # purge defaults to the horizon
    assert TrainConfig(horizon=6, purge=10).effective_purge == 10
    assert TrainConfig().long_threshold == pytest.approx(0.52)
    assert set(TrainConfig().candidates) == {"logreg", "random_forest", "hist_gb"} == set(CANDIDATES)
    bad: list[dict[str, Any]] = [
        {"n_folds": 4},
        {"horizon": 6, "purge": 5},  # purge is never less than the horizon
        {"horizon": 0},
        {"candidates": ("logreg", "svm")},
        {"candidates": ()},
        {"grids": {"svm": [{}]}},
        {"grids": {"logreg": []}},
        {"flat": "fill"},
        {"dead_zone": -0.01},
        {"n_jobs": 0},
        {"selection_metric": "accuracy"},
    ]
    for kwargs in bad:
        with pytest.raises(ValueError):
            TrainConfig(**kwargs)


# --- one shared training run -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained() -> tuple[Candles, TrainOutcome, list[tuple[float, str]]]:
    candles = market_walk(4000, phi=0.3, seed=3)
    calls: list[tuple[float, str]] = []
    config = fast_config(candidates=("logreg", "hist_gb"), horizon=2)
    outcome = train(candles, COMPACT, config, progress=lambda f, m: calls.append((f, m)))
    return candles, outcome, calls


def test_report_structure(trained: tuple[Candles, TrainOutcome, list[tuple[float, str]]]) -> None:
    candles, outcome, _ = trained
    report = outcome.report
    assert report.symbol == "SYNUSDT" and report.interval == "1h"
    assert report.horizon == 2 and report.purge == 2 and report.n_folds == 5
    assert report.chosen in ("logreg", "hist_gb")
    assert [c.name for c in report.candidates] == ["logreg", "hist_gb"]
    best = min(report.candidates, key=lambda c: c.oos.oos_log_loss)
    assert report.chosen == best.name  # selection by pooled OOS log loss
    assert report.metrics == best.oos
    for m in (report.metrics, report.nested_metrics):
        assert 0 <= m.oos_accuracy <= 1 and 0 <= m.oos_balanced_accuracy <= 1
        assert m.oos_auc is not None and 0 <= m.oos_auc <= 1
        assert m.oos_log_loss > 0 and 0 <= m.oos_brier <= 1
        assert 0 <= m.baseline_accuracy <= 1
        assert m.n_oos == sum(f.n_test for f in report.folds)
    assert len(report.folds) == 5
    assert outcome.feature_names == report.feature_names == extract(candles, COMPACT).names
    assert report.n_rows == len(candles) - report.horizon - extract(candles, COMPACT).warmup
    assert report.train_start_open_time == candles.open_time[extract(candles, COMPACT).warmup]
    assert report.train_end_open_time == candles.open_time[-1 - report.horizon]
    assert set(report.versions) >= {"sklearn", "numpy", "pandas"}
    assert report.feature_config == COMPACT.to_dict()
    assert "optimistic" in report.selection_note
    json.dumps(report.to_dict())  # JSON-ready for the metadata file
    flat = report.metrics_dict()
    assert {"oos_accuracy", "oos_auc", "baseline_accuracy", "backtest_total_return"} <= set(flat)


def test_folds_keep_the_purge_in_time(trained: tuple[Candles, TrainOutcome, list[tuple[float, str]]]) -> None:
    candles, outcome, _ = trained
    step = interval_ms(candles.interval)
    report = outcome.report
    for fold in report.folds:
        # The last training label reads close[train_end + horizon], strictly before the first test bar.
        bars_between = (fold.test_start_open_time - fold.train_end_open_time) // step
        assert bars_between >= report.horizon + 1
        assert fold.train_start_open_time < fold.train_end_open_time < fold.test_start_open_time
        assert fold.test_start_open_time <= fold.test_end_open_time
    for earlier, later in zip(report.folds, report.folds[1:], strict=False):
        assert later.train_end_open_time > earlier.train_end_open_time  # expanding
        assert later.test_start_open_time == earlier.test_end_open_time + step  # adjacent, disjoint


def test_backtest_runs_on_the_oos_bars_only(
    trained: tuple[Candles, TrainOutcome, list[tuple[float, str]]],
) -> None:
    candles, outcome, _ = trained
    report = outcome.report
    bt = report.backtest
    assert bt.start_open_time == report.folds[0].test_start_open_time
    assert bt.end_open_time == report.folds[-1].test_end_open_time
    assert bt.n_bars == outcome.oos_p_up.shape[0] == outcome.oos_open_time.shape[0]
    lo = int(np.searchsorted(candles.open_time, bt.start_open_time))
    hi = int(np.searchsorted(candles.open_time, bt.end_open_time)) + 1
    assert bt.buy_and_hold_return == pytest.approx(candles.close[hi - 1] / candles.close[lo] - 1)
    assert bt.fee_rate == 0.001 and bt.long_threshold == pytest.approx(0.52)
    assert bt.n_trades >= 0 and 0 <= bt.exposure <= 1 and bt.max_drawdown >= 0
    nested = report.nested_backtest
    assert (nested.start_open_time, nested.end_open_time, nested.n_bars) == (
        bt.start_open_time,
        bt.end_open_time,
        bt.n_bars,
    )
    assert nested.buy_and_hold_return == bt.buy_and_hold_return
    assert outcome.nested_p_up.shape == outcome.oos_p_up.shape
    if all(f.inner_choice == report.chosen for f in report.folds):
        assert nested == bt


def test_progress_moves_per_fold_and_candidate(
    trained: tuple[Candles, TrainOutcome, list[tuple[float, str]]],
) -> None:
    _, _, calls = trained
    fractions = [f for f, _ in calls]
    assert len(calls) == 5 * 2 + 1
    assert all(0 < f <= 1 for f in fractions)
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert "fold 1/5" in calls[0][1] and "final" in calls[-1][1]


def test_predict_proba_up_and_top_features(
    trained: tuple[Candles, TrainOutcome, list[tuple[float, str]]],
) -> None:
    candles, outcome, _ = trained
    frame = extract(candles, COMPACT)
    p = predict_proba_up(outcome.model, frame.X[-50:])
    assert p.shape == (50,) and np.all((p >= 0) & (p <= 1))
    assert np.isnan(predict_proba_up(outcome.model, frame.X[:3])).all()  # warm-up rows: no prediction
    one = predict_proba_up(outcome.model, frame.X[-1])
    assert one.shape == (1,) and one[0] == pytest.approx(p[-1])
    latest = extract_latest(candles, COMPACT)
    assert predict_proba_up(outcome.model, latest.X)[0] == pytest.approx(p[-1], abs=1e-6)
    top = top_features(outcome.model, frame.X[-1], outcome.feature_names, k=4)
    assert len(top) == 4
    assert [abs(t.contribution) for t in top] == sorted((abs(t.contribution) for t in top), reverse=True)
    assert {t.name for t in top} <= set(outcome.feature_names)
    assert top_features(outcome.model, frame.X[0], outcome.feature_names) == []  # NaN row
    with pytest.raises(ValueError):
        top_features(outcome.model, frame.X[-1][:3], outcome.feature_names)


@pytest.mark.parametrize("candidate", ["logreg", "random_forest", "hist_gb"])
def test_top_features_find_the_planted_signal(candidate: str) -> None:
    # AR(1) returns: the last 1-bar return drives the next one, with the same sign.
    # Only ret_1 carries it here (every longer return contains the last one, and trees may split on
    # those instead); volume and calendar features are noise.
    config = FeatureConfig(groups=("returns", "volume", "time"), return_lags=(1,))
    candles = market_walk(3000, phi=0.5, seed=1)
    outcome = train(candles, config, fast_config(candidates=(candidate,)))
    frame = extract(candles, config)
    j = outcome.feature_names.index("ret_1")
    rows = frame.X[-200:]
    big = rows[np.argsort(-np.abs(rows[:, j]))[:5]]  # rows with a large last return
    for row in big:
        top = top_features(outcome.model, row, outcome.feature_names, k=3)
        assert top[0].name == "ret_1"
        assert np.sign(top[0].contribution) == np.sign(row[j])


# --- determinism and causality ---------------------------------------------------------------------


def test_same_inputs_give_the_same_report_and_model() -> None:
    candles = market_walk(3000, phi=0.2, seed=5)
    config = fast_config(candidates=("random_forest", "hist_gb"))
    first = train(candles, COMPACT, config)
    second = train(candles, COMPACT, config)
    assert first.report == second.report  # every field but the wall-clock fit_seconds
    np.testing.assert_array_equal(first.oos_p_up, second.oos_p_up)
    X = extract(candles, COMPACT).X[-100:]
    np.testing.assert_array_equal(predict_proba_up(first.model, X), predict_proba_up(second.model, X))


@pytest.mark.parametrize("candidate", ["logreg", "random_forest", "hist_gb"])
def test_oos_predictions_never_depend_on_later_bars(candidate: str) -> None:
    """End to end: change every candle from bar m on; every OOS prediction before m stays identical.

    Fold k's model sees labels only up to its test block's first bar (hyper-parameters included: a
    two-point grid is searched on the inner split), and a prediction at bar t uses features up to t,
    so nothing from bar m onwards can reach a prediction for a bar before m. One candidate at a
    time: choosing *between* candidates uses the pooled score of all folds (documented, see
    selection_note), while nested_p_up, chosen per fold on inner validation, stays causal.
    """
    candles = market_walk(3000, phi=0.3, seed=8)
    grids = {
        "logreg": [{"C": 0.01}, {"C": 1.0}],
        "random_forest": [FAST_GRIDS["random_forest"][0], {"n_estimators": 20, "max_depth": 2}],
        "hist_gb": [FAST_GRIDS["hist_gb"][0], {"max_iter": 20, "max_leaf_nodes": 3}],
    }
    config = fast_config(candidates=(candidate,), grids=grids)
    before = train(candles, COMPACT, config)
    m = int(np.searchsorted(candles.open_time, before.report.folds[2].test_start_open_time)) + 100
    rng = np.random.default_rng(0)
    factor = np.ones(len(candles))
    factor[m:] = np.exp(np.cumsum(rng.normal(0.002, 0.03, len(candles) - m)))
    wider = np.where(np.arange(len(candles)) >= m, 1.01, 1.0)
    changed = Candles(
        candles.symbol,
        candles.interval,
        candles.open_time,
        candles.open * factor,
        candles.high * factor * wider,
        candles.low * factor / wider,
        candles.close * factor,
        candles.volume,
        candles.source,
    )
    after = train(changed, COMPACT, config)
    k = int(np.searchsorted(before.oos_open_time, candles.open_time[m]))
    assert k > 100
    for name in ("oos_p_up", "nested_p_up"):
        np.testing.assert_array_equal(getattr(after, name)[:k], getattr(before, name)[:k])
        assert not np.array_equal(getattr(after, name)[k:], getattr(before, name)[k:])
    for fold_before, fold_after in zip(before.report.folds[:3], after.report.folds[:3], strict=True):
        assert fold_before == fold_after


# --- labels variants, errors ----------------------------------------------------------------------


def test_dead_zone_drop_and_flat_class() -> None:
    candles = market_walk(3000, phi=0.3, seed=2)
    plain = train(candles, COMPACT, fast_config())
    dropped = train(candles, COMPACT, fast_config(dead_zone=0.004))
    as_class = train(candles, COMPACT, fast_config(dead_zone=0.004, flat="class"))
    assert dropped.report.n_rows < plain.report.n_rows == as_class.report.n_rows
    assert [int(c) for c in as_class.model.classes_] == [DOWN, UP, FLAT]
    p = predict_proba_up(as_class.model, extract(candles, COMPACT).X[-20:])
    assert np.all((p >= 0) & (p <= 1))
    m = as_class.report.metrics
    assert m.oos_auc is not None and 0 <= m.oos_accuracy <= 1 and m.oos_log_loss > 0
    # The backtest trades every OOS bar either way: the label's dead zone is unknowable in advance.
    assert dropped.report.backtest.n_bars == plain.report.backtest.n_bars


def test_final_forest_predicts_single_threaded() -> None:
    config = fast_config(candidates=("random_forest",), n_jobs=2)
    outcome = train(market_walk(2500, seed=4), COMPACT, config)
    assert outcome.model.named_steps["model"].n_jobs == 1


def test_too_few_candles_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="too few"):
        train(market_walk(400), COMPACT, fast_config())
    with pytest.raises(ValueError, match="too few"):
        train(market_walk(40), COMPACT, fast_config())
    with pytest.raises(ValueError, match="min_train_rows"):
        train(market_walk(2000), COMPACT, replace(fast_config(), min_train_rows=5000))
