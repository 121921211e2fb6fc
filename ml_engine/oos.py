"""Out-of-sample evaluation: classification metrics on pooled test rows (``OOSMetrics``), the key that
ranks candidates by them, the OOS trading backtest after fees (``BacktestSummary``), and what a model
report draws of them (``OOSDiagnostics``: per-fold metrics, calibration, permutation importances, the
backtest's curve)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import balanced_accuracy_score, log_loss, roc_auc_score

from backtester.runner import BacktestConfig, run_backtest
from ml_engine.labels import UP
from ml_engine.prediction import aligned_proba
from ml_engine.train_config import SelectionMetric, TrainConfig
from utils.market_data.candles import Candles
from utils.reports.downsample import minmax_indices

__all__ = [
    "BacktestSummary",
    "CalibrationBin",
    "CurveSample",
    "FeatureImportance",
    "FoldMetrics",
    "OOSDiagnostics",
    "OOSMetrics",
    "calibration_bins",
    "curve_sample",
    "oos_backtest",
    "oos_backtest_run",
    "oos_metrics",
    "permutation_importance",
    "selection_key",
]


# --------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OOSMetrics:
    """Classification quality on pooled out-of-sample rows. ``oos_auc`` is None with one class only.

    Brier score and AUC are those of P(up) against "the label is up" (also with a flat class).
    ``baseline_accuracy``: each fold predicts its training labels' majority class for all its test
    rows (ties to the lower class code), pooled.
    """

    oos_accuracy: float
    oos_balanced_accuracy: float
    oos_auc: float | None
    oos_log_loss: float
    oos_brier: float
    baseline_accuracy: float
    n_oos: int
    oos_up_rate: float  # share of OOS rows labelled up


def oos_metrics(y: np.ndarray, proba: np.ndarray, classes: tuple[int, ...], baseline: float) -> OOSMetrics:
    """Pooled metrics of ``proba`` (one column per entry of ``classes``) against the labels ``y``."""
    if y.shape[0] == 0:
        raise ValueError("no usable out-of-sample rows")
    pred = np.asarray(classes)[np.argmax(proba, axis=1)]
    p_up = proba[:, classes.index(UP)]
    up = y == UP
    auc = float(roc_auc_score(up, p_up)) if 0 < up.sum() < up.shape[0] else None
    return OOSMetrics(
        oos_accuracy=float(np.mean(pred == y)),
        oos_balanced_accuracy=float(balanced_accuracy_score(y, pred)),
        oos_auc=auc,
        oos_log_loss=float(log_loss(y, proba, labels=list(classes))),
        oos_brier=float(np.mean((p_up - up) ** 2)),
        baseline_accuracy=float(baseline),
        n_oos=int(y.shape[0]),
        oos_up_rate=float(np.mean(up)),
    )


def selection_key(m: OOSMetrics, metric: SelectionMetric) -> float:
    """Sort key over candidates, lower is better: pooled OOS log loss, or minus the AUC (inf without one)."""
    if metric == "log_loss":
        return m.oos_log_loss
    return -m.oos_auc if m.oos_auc is not None else math.inf


# --------------------------------------------------------------------------------------------------
# Backtest
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BacktestSummary:
    """The OOS signals traded after fees on the OOS bars, against buy-and-hold over the same bars."""

    total_return: float
    sharpe: float | None
    max_drawdown: float
    n_trades: int
    buy_and_hold_return: float
    exposure: float
    n_bars: int
    start_open_time: int
    end_open_time: int
    long_threshold: float
    fee_rate: float


def oos_backtest(candles: Candles, p_up: np.ndarray, cfg: TrainConfig) -> BacktestSummary:
    """Long while ``p_up > cfg.long_threshold``, flat otherwise, after fees, on ``candles`` (the OOS bars)."""
    return oos_backtest_run(candles, p_up, cfg)[0]


def oos_backtest_run(
    candles: Candles, p_up: np.ndarray, cfg: TrainConfig
) -> tuple[BacktestSummary, np.ndarray]:
    """``oos_backtest`` and its equity per bar."""
    entries = p_up > cfg.long_threshold  # NaN compares False: no position without features
    result = run_backtest(candles, entries, ~entries, BacktestConfig(fee_rate=cfg.fee_rate))
    m = result.metrics
    summary = BacktestSummary(
        total_return=float(m.total_return),
        sharpe=m.sharpe,
        max_drawdown=float(m.max_drawdown),
        n_trades=int(m.n_trades),
        buy_and_hold_return=float(m.buy_and_hold_return),
        exposure=float(m.exposure),
        n_bars=len(candles),
        start_open_time=int(candles.open_time[0]),
        end_open_time=int(candles.open_time[-1]),
        long_threshold=cfg.long_threshold,
        fee_rate=cfg.fee_rate,
    )
    return summary, result.equity


# --------------------------------------------------------------------------------------------------
# What a model report draws
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FoldMetrics:
    """The chosen candidate on one fold's test block: classification metrics on its usable rows, and its
    signals traded after fees on the block's bars (``oos_backtest``) against buy and hold there."""

    index: int
    test_start_open_time: int
    test_end_open_time: int
    n_test: int
    accuracy: float
    balanced_accuracy: float
    auc: float | None
    log_loss: float
    brier: float
    baseline_accuracy: float  # the fold's training majority class, predicted for every test row
    up_rate: float
    total_return: float
    buy_and_hold_return: float
    n_trades: int


@dataclass(frozen=True)
class CalibrationBin:
    """Pooled OOS rows of the chosen candidate whose P(up) falls in [lower, upper] (deciles of P(up)):
    the mean predicted P(up) against the share whose label was up."""

    lower: float
    upper: float
    mean_predicted: float
    realised_up_rate: float
    n: int


@dataclass(frozen=True)
class FeatureImportance:
    """Permutation importance: how much the OOS log loss grows when the feature is shuffled (mean and
    standard deviation over the repeats); about 0 or below means the model does not rely on it."""

    name: str
    importance: float
    std: float


@dataclass(frozen=True)
class CurveSample:
    """The OOS backtest's equity and buy and hold of the same bars (the capital in the asset at the
    first close, no fees), downsampled for pictures with each stretch's extremes kept
    (``utils.reports.downsample``); ``n_bars`` is the curve's length before."""

    open_time: list[int]
    equity: list[float]
    buy_and_hold: list[float]
    n_bars: int


@dataclass(frozen=True)
class OOSDiagnostics:
    """What a model report draws: per-fold OOS metrics, the calibration curve, feature importances
    (``importance_note`` says on what they were measured) and the OOS backtest's curve."""

    folds: list[FoldMetrics]
    calibration: list[CalibrationBin]
    importance: list[FeatureImportance]
    importance_note: str
    backtest_curve: CurveSample


def calibration_bins(p_up: np.ndarray, up: np.ndarray, n_bins: int = 10) -> list[CalibrationBin]:
    """Rows sorted by P(up) and cut into ``n_bins`` groups of (nearly) equal size: each group's mean
    P(up) against its share of up labels. Equal counts rather than equal widths, because P(up) of a
    cautious model sits in a narrow band around 0.5, where equal widths would leave one or two bins."""
    p = np.asarray(p_up, dtype=np.float64)
    ok = np.isfinite(p)
    p, hit = p[ok], np.asarray(up, dtype=bool)[ok]
    if p.shape[0] == 0:
        return []
    order = np.argsort(p, kind="stable")
    bins = []
    for idx in np.array_split(order, min(n_bins, p.shape[0])):
        if idx.size == 0:
            continue
        bins.append(
            CalibrationBin(
                lower=float(p[idx].min()),
                upper=float(p[idx].max()),
                mean_predicted=float(p[idx].mean()),
                realised_up_rate=float(hit[idx].mean()),
                n=int(idx.size),
            )
        )
    return bins


def permutation_importance(
    model: Any,
    X: np.ndarray,
    y: np.ndarray,
    classes: tuple[int, ...],
    names: Sequence[str],
    rng: np.random.Generator,
    repeats: int = 2,
) -> list[FeatureImportance]:
    """Per feature, the rise in log loss of ``model`` on (X, y) when that feature's column is shuffled,
    most important first. (X, y) should be rows the model never trained on."""
    labels = list(classes)
    base = float(log_loss(y, aligned_proba(model, X, classes), labels=labels))
    out = []
    shuffled = X.copy()
    for j, name in enumerate(names):
        rises = []
        for _ in range(repeats):
            shuffled[:, j] = X[rng.permutation(X.shape[0]), j]
            rises.append(float(log_loss(y, aligned_proba(model, shuffled, classes), labels=labels)) - base)
        shuffled[:, j] = X[:, j]
        out.append(FeatureImportance(name, float(np.mean(rises)), float(np.std(rises))))
    return sorted(out, key=lambda f: -f.importance)


def curve_sample(
    open_time: np.ndarray, equity: np.ndarray, close: np.ndarray, initial: float, max_buckets: int = 500
) -> CurveSample:
    """The equity and buy-and-hold curves at the bars either one has an extreme at (see CurveSample)."""
    equity = np.asarray(equity, dtype=np.float64)
    hold = initial * np.asarray(close, dtype=np.float64) / float(close[0])
    keep = np.union1d(minmax_indices(equity, max_buckets), minmax_indices(hold, max_buckets))
    return CurveSample(
        open_time=[int(t) for t in np.asarray(open_time)[keep]],
        equity=[round(float(v), 6) for v in equity[keep]],
        buy_and_hold=[round(float(v), 6) for v in hold[keep]],
        n_bars=int(equity.shape[0]),
    )
