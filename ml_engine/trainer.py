"""Model training: walk-forward validation, out-of-sample metrics and backtest, model selection, final refit.

``train(candles, feature_config, train_config, progress) -> TrainOutcome`` is the one entry point. It
does no file or database I/O: saving the model and report is the caller's job.

Walk-forward (``walk_forward_splits``, identical to scikit-learn's ``TimeSeriesSplit(n_folds,
gap=purge)``): the bars that have both features and a full future are cut into ``n_folds + 1``
consecutive blocks (the first one takes the remainder). Fold k tests on block k+1 and trains on every
bar before it except the last ``purge`` bars: an expanding window, in time order, never shuffled. The
label of bar t reads ``close[t + horizon]``, so with ``purge >= horizon`` the latest training label
reads a close strictly before the first test bar's: no training label overlaps a test row.

Hyper-parameters are chosen without looking at the test block: inside each fold's training window the
last ``inner_fraction`` of bars is a validation block (again after a purge gap), every grid point is
fitted on the bars before it and scored there, and the best one is refitted on the whole training
window and only then predicts the test block. Each candidate's pooled out-of-sample (OOS) numbers are
therefore unbiased for that candidate.

Model selection uses OOS numbers only: the candidate with the best pooled OOS ``selection_metric``
(log loss by default: a proper scoring rule, so it rewards calibrated probabilities, which the agents
turn into confidence; AUC ignores calibration) becomes the final model. That choice is made on the
same test blocks its ``metrics`` come from, so they are optimistic by the "best of the candidates"
margin (small with three candidates and thousands of OOS rows); ``TrainReport.selection_note`` says
so. ``nested_metrics`` and ``nested_backtest`` carry no such bias: in each fold the candidate is
chosen by its inner validation score alone, and that fold's test predictions come from it. (So the
nested OOS prediction for a bar depends on no later bar; the chosen candidate's do, through the choice.)

The OOS trading backtest runs the chosen candidate's test-block signals through
``backtester.runner.run_backtest`` after fees, on the candles of the OOS bars only: long while
``P(up) > 0.5 + signal_margin``, flat otherwise (a signal on bar t's close fills at bar t+1's open).
Every OOS bar with features gets a prediction, flat-labelled ones included: a trading rule cannot know
which future moves will be small. Buy-and-hold is measured over the same bars.

The final model repeats the procedure on all data: its hyper-parameters come from the inner split of
the whole series, then it is refitted on every usable row.

Layout: this module is the entry point and puts the steps together; ``walk_forward`` holds the
splitter and the fold loop, ``candidate_search`` the hyper-parameter choice on an inner split,
``candidates`` the models, ``oos`` the OOS metrics and backtest, ``train_config`` / ``train_report``
the configuration and report types, ``prediction`` the helpers for using a fitted model. Every name
in ``__all__`` can still be imported from here.
"""

from __future__ import annotations

import math
import platform
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sklearn
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from backtester.runner import BacktestConfig
from ml_engine.candidate_search import pick_params
from ml_engine.candidates import CANDIDATES, CandidateSpec, build_pipeline
from ml_engine.feature_extractor import FeatureConfig, FeatureFrame, extract
from ml_engine.labels import UP, make_labels
from ml_engine.oos import (
    BacktestSummary,
    FoldMetrics,
    OOSDiagnostics,
    OOSMetrics,
    calibration_bins,
    curve_sample,
    oos_backtest,
    oos_backtest_run,
    oos_metrics,
    permutation_importance,
    selection_key,
)
from ml_engine.prediction import FeatureContribution, predict_proba_up, top_features
from ml_engine.train_config import Progress, TrainConfig
from ml_engine.train_report import CandidateReport, FoldReport, TrainOutcome, TrainReport
from ml_engine.walk_forward import (
    Dataset,
    Fold,
    FoldResults,
    final_bars,
    fold_bars,
    run_folds,
    walk_forward_splits,
)
from utils.market_data.candles import Candles

__all__ = [
    "CANDIDATES",
    "BacktestSummary",
    "CandidateReport",
    "CandidateSpec",
    "FeatureContribution",
    "Fold",
    "FoldReport",
    "OOSMetrics",
    "Progress",
    "TrainConfig",
    "TrainOutcome",
    "TrainReport",
    "build_pipeline",
    "predict_proba_up",
    "top_features",
    "train",
    "walk_forward_splits",
]


def train(
    candles: Candles,
    feature_config: FeatureConfig | None = None,
    train_config: TrainConfig | None = None,
    progress: Progress | None = None,
) -> TrainOutcome:
    """Features, labels, walk-forward OOS evaluation of every candidate, selection and final refit.

    ``progress(fraction, message)`` is called after each (fold, candidate) and after the final refit
    (fraction 1.0). ValueError when the series is too short for the folds or a window has one class.
    """
    feature_config = feature_config or FeatureConfig()
    frame = extract(candles, feature_config)
    return _train_from_features(candles, frame, train_config or TrainConfig(), progress, feature_config)


def _train_from_features(
    candles: Candles,
    frame: FeatureFrame,
    cfg: TrainConfig,
    progress: Progress | None = None,
    feature_config: FeatureConfig | None = None,
) -> TrainOutcome:
    """``train`` on a given feature frame. Internal: ``train`` is the path that guarantees causal
    features; the honesty tests use this one to prove a leaking feature gets caught."""
    started = time.perf_counter()
    n = len(candles)
    if frame.X.shape[0] != n:
        raise ValueError(f"feature rows ({frame.X.shape[0]}) must match candles ({n})")
    with threadpool_limits(limits=cfg.n_jobs), warnings.catch_warnings():
        # Pooled metrics on a fold where the model never predicts one class are fine; not a warning.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return _train(candles, frame, cfg, progress, feature_config, started)


def _train(
    candles: Candles,
    frame: FeatureFrame,
    cfg: TrainConfig,
    progress: Progress | None,
    feature_config: FeatureConfig | None,
    started: float,
) -> TrainOutcome:
    data = _dataset(candles, frame, cfg)
    folds = walk_forward_splits(data.span, cfg.n_folds, cfg.effective_purge)
    evaluation = _evaluate(candles, data, folds, cfg, progress, frame.names)
    model, final_params, all_bars = _fit_final(data, evaluation.chosen, cfg, progress)
    report = _report(candles, frame, cfg, feature_config, evaluation, final_params, data, all_bars, started)
    oos_lo, oos_hi = evaluation.oos_bars
    return TrainOutcome(
        model=model,
        feature_names=list(frame.names),
        feature_config=feature_config,
        report=report,
        oos_open_time=np.asarray(candles.open_time[oos_lo:oos_hi]).copy(),
        oos_p_up=evaluation.oos_p_up,
        nested_p_up=evaluation.nested_p_up,
    )


def _dataset(candles: Candles, frame: FeatureFrame, cfg: TrainConfig) -> Dataset:
    """Labels, usable bars and the positions the folds cut: bars with features and a full future."""
    n = len(candles)
    labels = make_labels(candles.close, cfg.horizon, cfg.dead_zone, cfg.flat)
    X = frame.X
    # Positions 0..span-1 map to bars start..stop-1: bars with features and a full future.
    start, stop = frame.warmup, n - cfg.horizon
    usable = labels.usable & np.isfinite(X).all(axis=1)
    usable[:start] = False
    span = stop - start
    if span <= 0:
        raise ValueError(f"too few candles: {n} leave no labelled rows after a warm-up of {start}")
    return Dataset(X, labels.y, labels.classes, usable, start, span, cfg.min_train_rows)


@dataclass(frozen=True)
class _Evaluation:
    """The walk-forward results: each candidate's OOS report, the choice among them, and the chosen and
    the nested procedures' metrics, backtests and P(up) over the OOS bars ``oos_bars`` = [lo, hi)."""

    candidates: list[CandidateReport]
    chosen: str
    metrics: OOSMetrics
    nested_metrics: OOSMetrics
    backtest: BacktestSummary
    nested_backtest: BacktestSummary
    folds: list[FoldReport]
    oos_bars: tuple[int, int]
    oos_p_up: np.ndarray
    nested_p_up: np.ndarray
    diagnostics: OOSDiagnostics


def _evaluate(
    candles: Candles,
    data: Dataset,
    folds: list[Fold],
    cfg: TrainConfig,
    progress: Progress | None,
    names: list[str],
) -> _Evaluation:
    """The fold loop, the choice by pooled OOS ``selection_metric``, and both OOS backtests."""
    results = run_folds(candles, data, folds, cfg, progress)
    candidate_reports, nested = _oos_reports(results, data.classes, cfg)
    chosen = min(candidate_reports, key=lambda c: selection_key(c.oos, cfg.selection_metric)).name
    metrics = next(c.oos for c in candidate_reports if c.name == chosen)

    # OOS backtest: the test blocks are adjacent, so the OOS bars are one contiguous run.
    oos_lo, oos_hi = data.start + folds[0].test_start, data.start + folds[-1].test_stop
    oos_p_up = np.concatenate(results.runs[chosen].span_p_up)
    nested_p_up = np.concatenate(results.nested_span)
    oos_candles = candles.slice(oos_lo, oos_hi)
    backtest, equity = oos_backtest_run(oos_candles, oos_p_up, cfg)
    curve = curve_sample(oos_candles.open_time, equity, oos_candles.close, BacktestConfig().initial_capital)
    return _Evaluation(
        candidates=candidate_reports,
        chosen=chosen,
        metrics=metrics,
        nested_metrics=nested,
        backtest=backtest,
        nested_backtest=oos_backtest(oos_candles, nested_p_up, cfg),
        folds=results.folds,
        oos_bars=(oos_lo, oos_hi),
        oos_p_up=oos_p_up,
        nested_p_up=nested_p_up,
        diagnostics=OOSDiagnostics(
            folds=_fold_metrics(candles, data, folds, results, chosen, cfg),
            calibration=calibration_bins(
                np.concatenate(results.runs[chosen].test_proba)[:, data.classes.index(UP)],
                np.concatenate(results.test_truth) == UP,
            ),
            **_importance(data, folds[-1], results, chosen, cfg, names),
            backtest_curve=curve,
        ),
    )


def _fold_metrics(
    candles: Candles, data: Dataset, folds: list[Fold], results: FoldResults, chosen: str, cfg: TrainConfig
) -> list[FoldMetrics]:
    """The chosen candidate fold by fold: its metrics on each test block and that block's backtest."""
    run = results.runs[chosen]
    out = []
    for k, fold in enumerate(folds):
        truth, proba = results.test_truth[k], run.test_proba[k]
        train_labels = data.y[fold_bars(data, fold, cfg).train]
        majority = int(np.bincount(train_labels).argmax())
        lo, hi = data.start + fold.test_start, data.start + fold.test_stop
        backtest = oos_backtest(candles.slice(lo, hi), run.span_p_up[k], cfg)
        metrics = (
            oos_metrics(truth, proba, data.classes, float(np.mean(truth == majority))) if truth.size else None
        )
        out.append(
            FoldMetrics(
                index=fold.index,
                test_start_open_time=int(candles.open_time[lo]),
                test_end_open_time=int(candles.open_time[hi - 1]),
                n_test=int(truth.shape[0]),
                accuracy=metrics.oos_accuracy if metrics else math.nan,
                balanced_accuracy=metrics.oos_balanced_accuracy if metrics else math.nan,
                auc=metrics.oos_auc if metrics else None,
                log_loss=metrics.oos_log_loss if metrics else math.nan,
                brier=metrics.oos_brier if metrics else math.nan,
                baseline_accuracy=metrics.baseline_accuracy if metrics else math.nan,
                up_rate=metrics.oos_up_rate if metrics else math.nan,
                total_return=backtest.total_return,
                buy_and_hold_return=backtest.buy_and_hold_return,
                n_trades=backtest.n_trades,
            )
        )
    return out


def _importance(
    data: Dataset, last: Fold, results: FoldResults, chosen: str, cfg: TrainConfig, names: list[str]
) -> dict[str, Any]:
    """Permutation importances of the chosen candidate's last-fold model on that fold's test rows: the
    latest rows no model of it trained on (the final model is refitted on all of them)."""
    model = results.runs[chosen].last_model
    rows = fold_bars(data, last, cfg).test
    if model is None or rows.shape[0] < 2:
        return {"importance": [], "importance_note": "Too few out-of-sample rows to measure importances."}
    rng = np.random.default_rng(cfg.random_state)
    importance = permutation_importance(model, data.X[rows], data.y[rows], data.classes, names, rng)
    note = (
        f"Permutation importance of the {chosen} model fitted on fold {last.index + 1}'s training window, "
        f"measured on that fold's {rows.shape[0]} out-of-sample test rows: how much the log loss rises when "
        "one feature's values are shuffled (mean of 2 shuffles). The final model is the same family "
        "refitted on every row."
    )
    return {"importance": importance, "importance_note": note}


def _oos_reports(
    results: FoldResults, classes: tuple[int, ...], cfg: TrainConfig
) -> tuple[list[CandidateReport], OOSMetrics]:
    """Each candidate's report with its pooled OOS metrics, and the nested procedure's metrics."""
    truth = np.concatenate(results.test_truth)
    baseline = results.baseline_hits / truth.shape[0] if truth.shape[0] else math.nan
    candidate_reports = []
    for name in cfg.candidates:
        run = results.runs[name]
        oos = oos_metrics(truth, np.concatenate(run.test_proba), classes, baseline)
        candidate_reports.append(
            CandidateReport(name, [dict(p) for p in cfg.grid(name)], oos, run.fold_params, run.inner_scores)
        )
    nested = oos_metrics(truth, np.concatenate(results.nested_proba), classes, baseline)
    return candidate_reports, nested


def _fit_final(
    data: Dataset, chosen: str, cfg: TrainConfig, progress: Progress | None
) -> tuple[Pipeline, Mapping[str, Any], np.ndarray]:
    """The final model, the same procedure on the whole series: hyper-parameters from its inner split,
    then a refit on every usable row. Returns the pipeline, its parameters and those rows."""
    bars = final_bars(data, cfg)
    all_bars = bars.train
    final_params, _ = pick_params(chosen, cfg, data.X, data.y, bars.inner, bars.validation, data.classes)
    model = build_pipeline(chosen, final_params, cfg.random_state, cfg.n_jobs)
    model.fit(data.X[all_bars], data.y[all_bars])
    if "n_jobs" in model.named_steps["model"].get_params():
        # Fitted state does not depend on n_jobs; one thread makes one-row predictions several times
        # faster (no pool start-up).
        model.set_params(model__n_jobs=1)
    if progress is not None:
        progress(1.0, f"final {chosen} model fitted on {all_bars.shape[0]} rows")
    return model, final_params, all_bars


def _selection_note(chosen: str, cfg: TrainConfig) -> str:
    return (
        f"{chosen} was chosen by the best pooled OOS {cfg.selection_metric} among {len(cfg.candidates)} "
        "candidate(s) on the same test blocks that produce `metrics`, which are therefore slightly "
        "optimistic; `nested_metrics` and `nested_backtest` (candidate chosen per fold on its inner "
        "validation block only) have no such selection. Hyper-parameters were always chosen on inner "
        "validation blocks."
    )


def _report(
    candles: Candles,
    frame: FeatureFrame,
    cfg: TrainConfig,
    feature_config: FeatureConfig | None,
    evaluation: _Evaluation,
    final_params: Mapping[str, Any],
    data: Dataset,
    all_bars: np.ndarray,
    started: float,
) -> TrainReport:
    return TrainReport(
        symbol=candles.symbol,
        interval=candles.interval,
        horizon=cfg.horizon,
        purge=cfg.effective_purge,
        dead_zone=float(cfg.dead_zone),
        flat=cfg.flat,
        n_folds=cfg.n_folds,
        selection_metric=cfg.selection_metric,
        chosen=evaluation.chosen,
        chosen_params=dict(final_params),
        selection_note=_selection_note(evaluation.chosen, cfg),
        candidates=evaluation.candidates,
        metrics=evaluation.metrics,
        nested_metrics=evaluation.nested_metrics,
        backtest=evaluation.backtest,
        nested_backtest=evaluation.nested_backtest,
        folds=evaluation.folds,
        feature_names=list(frame.names),
        feature_config=feature_config.to_dict() if feature_config else {},
        train_config=cfg.to_dict(),
        n_candles=len(candles),
        n_rows=int(all_bars.shape[0]),
        train_start_open_time=int(candles.open_time[all_bars[0]]),
        train_end_open_time=int(candles.open_time[all_bars[-1]]),
        up_rate=float(np.mean(data.y[all_bars] == UP)),
        versions={
            "python": platform.python_version(),
            "sklearn": sklearn.__version__,
            "numpy": np.__version__,
            "pandas": pd.__version__,
        },
        fit_seconds=time.perf_counter() - started,
        diagnostics=evaluation.diagnostics,
    )
