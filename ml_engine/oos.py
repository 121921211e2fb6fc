"""Out-of-sample evaluation: classification metrics on pooled test rows (``OOSMetrics``), the key that
ranks candidates by them, and the OOS trading backtest after fees (``BacktestSummary``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import balanced_accuracy_score, log_loss, roc_auc_score

from backtester.runner import BacktestConfig, run_backtest
from ml_engine.labels import UP
from ml_engine.train_config import SelectionMetric, TrainConfig
from utils.market_data.candles import Candles

__all__ = ["BacktestSummary", "OOSMetrics", "oos_backtest", "oos_metrics", "selection_key"]


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
    entries = p_up > cfg.long_threshold  # NaN compares False: no position without features
    result = run_backtest(candles, entries, ~entries, BacktestConfig(fee_rate=cfg.fee_rate))
    m = result.metrics
    return BacktestSummary(
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
