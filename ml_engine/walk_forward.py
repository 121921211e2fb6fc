"""Walk-forward evaluation: the purged expanding-window splitter (``walk_forward_splits``), the inner
split inside a training window, and the fold loop that evaluates every candidate on every fold.

The rules (purge, inner validation, nested choice) are those of ``ml_engine.trainer``'s docstring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from ml_engine.candidate_search import pick_params
from ml_engine.candidates import build_pipeline
from ml_engine.prediction import aligned_proba, predict_proba_up
from ml_engine.train_config import Progress, TrainConfig, is_int, require
from ml_engine.train_report import FoldReport
from utils.market_data.candles import Candles

__all__ = [
    "CandidateRun",
    "Dataset",
    "FinalBars",
    "Fold",
    "FoldBars",
    "FoldResults",
    "final_bars",
    "fold_bars",
    "inner_split",
    "run_folds",
    "walk_forward_splits",
]


# --------------------------------------------------------------------------------------------------
# Splitter
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold over positions: train ``[0, train_stop)``, test ``[test_start, test_stop)``."""

    index: int
    train_stop: int
    test_start: int
    test_stop: int

    @property
    def train(self) -> np.ndarray:
        return np.arange(self.train_stop)

    @property
    def test(self) -> np.ndarray:
        return np.arange(self.test_start, self.test_stop)


def walk_forward_splits(n_samples: int, n_folds: int = 5, purge: int = 1, min_train: int = 1) -> list[Fold]:
    """Expanding-window folds in time order with ``purge`` positions between train and test.

    ``test_size = n_samples // (n_folds + 1)``; fold k (0-based) tests on
    ``[n - (n_folds - k) * test_size, + test_size)`` and trains on ``[0, test_start - purge)``. The test
    blocks are adjacent and end at ``n_samples``; the first ``n - n_folds * test_size`` positions only
    ever train. Same folds as ``TimeSeriesSplit(n_splits=n_folds, gap=purge)``. ValueError when the
    first training window would be shorter than ``min_train`` (too few rows).
    """
    require(is_int(n_folds) and n_folds >= 2, "n_folds must be an integer >= 2", n_folds)
    require(is_int(purge) and purge >= 0, "purge must be an integer >= 0", purge)
    test_size = n_samples // (n_folds + 1)
    first_train = n_samples - n_folds * test_size - purge
    if test_size < 1 or first_train < max(1, min_train):
        raise ValueError(
            f"too few rows for {n_folds} walk-forward folds with a purge of {purge}: {n_samples} rows give "
            f"test blocks of {test_size} and a first training window of {max(first_train, 0)} "
            f"(at least {max(1, min_train)} needed)"
        )
    folds = []
    for k in range(n_folds):
        test_start = n_samples - (n_folds - k) * test_size
        folds.append(Fold(k, test_start - purge, test_start, test_start + test_size))
    return folds


def inner_split(n_train: int, fraction: float, purge: int) -> tuple[int, int]:
    """(inner_train_stop, validation_start) inside a training window of ``n_train`` positions."""
    val_start = n_train - max(1, round(fraction * n_train))
    return val_start - purge, val_start


# --------------------------------------------------------------------------------------------------
# The rows a fold trains and tests on
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    """Features, labels and which bars are usable, with the map from walk-forward positions to bars.

    Positions 0..span-1 map to bars start..start+span-1: the bars with features and a full future.
    A bar is usable when its label is defined and every feature is finite.
    """

    X: np.ndarray
    y: np.ndarray
    classes: tuple[int, ...]
    usable: np.ndarray  # per bar
    start: int
    span: int
    min_train_rows: int

    def rows(self, lo: int, hi: int) -> np.ndarray:
        """Usable bars among positions [lo, hi)."""
        bars = np.arange(self.start + lo, self.start + hi)
        return np.asarray(bars[self.usable[bars]])

    def check_window(self, bars: np.ndarray, what: str) -> None:
        """ValueError unless ``bars`` can train a classifier: min_train_rows rows and two classes."""
        if bars.shape[0] < self.min_train_rows:
            raise ValueError(
                f"too few rows: the {what} has {bars.shape[0]} usable rows, fewer than min_train_rows="
                f"{self.min_train_rows}; use more candles, fewer folds or a smaller warm-up"
            )
        if np.unique(self.y[bars]).shape[0] < 2:
            raise ValueError(f"the {what} has only one class; a classifier cannot be trained on it")


# --------------------------------------------------------------------------------------------------
# Fold loop
# --------------------------------------------------------------------------------------------------


@dataclass
class CandidateRun:
    """Per-candidate results collected over the folds."""

    fold_params: list[dict[str, Any]] = field(default_factory=list)
    inner_scores: list[float] = field(default_factory=list)
    test_proba: list[np.ndarray] = field(default_factory=list)  # usable test rows, per fold
    span_p_up: list[np.ndarray] = field(default_factory=list)  # every test-block bar, per fold
    last_model: Any = None  # fitted on the last fold's training window (its test block is OOS for it)


@dataclass
class FoldResults:
    """What the fold loop collects: each candidate's runs, the nested procedure's predictions (per
    fold, the candidate its inner validation preferred), the test labels and the fold reports."""

    runs: dict[str, CandidateRun]
    folds: list[FoldReport] = field(default_factory=list)
    test_truth: list[np.ndarray] = field(default_factory=list)  # usable test rows' labels, per fold
    nested_proba: list[np.ndarray] = field(default_factory=list)
    nested_span: list[np.ndarray] = field(default_factory=list)
    baseline_hits: int = 0  # test rows equal to their fold's training majority class


class FoldBars(NamedTuple):
    """The bars one fold uses: the search's inner training and validation bars, the training window,
    the usable test rows, and every bar of the test block (those get a P(up) for the backtest)."""

    inner: np.ndarray
    validation: np.ndarray
    train: np.ndarray
    test: np.ndarray
    span: np.ndarray


def fold_bars(data: Dataset, fold: Fold, cfg: TrainConfig) -> FoldBars:
    """The fold's bars; ValueError, before anything is fitted, when its inner windows are too small."""
    inner_stop, val_start = inner_split(fold.train_stop, cfg.inner_fraction, cfg.effective_purge)
    inner_bars = data.rows(0, max(inner_stop, 0))
    val_bars = data.rows(val_start, fold.train_stop)
    data.check_window(inner_bars, f"inner training window of fold {fold.index + 1}")
    if val_bars.shape[0] == 0:
        raise ValueError(f"too few rows: fold {fold.index + 1}'s inner validation block is empty")
    return FoldBars(
        inner=inner_bars,
        validation=val_bars,
        train=data.rows(0, fold.train_stop),
        test=data.rows(fold.test_start, fold.test_stop),
        span=np.arange(data.start + fold.test_start, data.start + fold.test_stop),
    )


class FinalBars(NamedTuple):
    """The bars the final model uses: its search's inner training and validation bars (the inner split
    of the whole series) and every usable row, which it is refitted on."""

    inner: np.ndarray
    validation: np.ndarray
    train: np.ndarray


def final_bars(data: Dataset, cfg: TrainConfig) -> FinalBars:
    """The final model's bars; ValueError, before anything is fitted, when its inner window is too small."""
    span = data.span
    all_bars = data.rows(0, span)
    inner_stop, val_start = inner_split(span, cfg.inner_fraction, cfg.effective_purge)
    inner_bars, val_bars = data.rows(0, inner_stop), data.rows(val_start, span)
    data.check_window(inner_bars, "final inner training window")
    return FinalBars(inner=inner_bars, validation=val_bars, train=all_bars)


def run_folds(
    candles: Candles, data: Dataset, folds: list[Fold], cfg: TrainConfig, progress: Progress | None
) -> FoldResults:
    """Every candidate on every fold: hyper-parameters from the fold's inner split, refit on the whole
    training window, then predictions for the test block. ``progress`` after each (fold, candidate)."""
    results = FoldResults(runs={name: CandidateRun() for name in cfg.candidates})
    total_steps = len(folds) * len(cfg.candidates) + 1  # + 1: the final refit
    for fold in folds:
        bars = fold_bars(data, fold, cfg)
        majority = int(np.bincount(data.y[bars.train]).argmax())
        results.baseline_hits += int(np.count_nonzero(data.y[bars.test] == majority))
        results.test_truth.append(data.y[bars.test])

        best_inner: tuple[float, str] | None = None
        for j, name in enumerate(cfg.candidates):
            score = _evaluate(name, results.runs[name], data, cfg, bars)
            if best_inner is None or score < best_inner[0]:
                best_inner = (score, name)
            if progress is not None:
                done = fold.index * len(cfg.candidates) + j + 1
                progress(done / total_steps, f"fold {fold.index + 1}/{len(folds)}: {name} evaluated")
        assert best_inner is not None
        results.nested_proba.append(results.runs[best_inner[1]].test_proba[-1])
        results.nested_span.append(results.runs[best_inner[1]].span_p_up[-1])
        results.folds.append(_fold_report(candles, data, fold, bars, best_inner[1]))
    return results


def _evaluate(name: str, run: CandidateRun, data: Dataset, cfg: TrainConfig, bars: FoldBars) -> float:
    """One candidate on one fold, its results appended to ``run``; returns its inner validation score."""
    X, y, classes = data.X, data.y, data.classes
    params, score = pick_params(name, cfg, X, y, bars.inner, bars.validation, classes)
    model = build_pipeline(name, params, cfg.random_state, cfg.n_jobs).fit(X[bars.train], y[bars.train])
    run.fold_params.append(dict(params))
    run.inner_scores.append(score)
    run.test_proba.append(
        aligned_proba(model, X[bars.test], classes) if bars.test.size else np.empty((0, len(classes)))
    )
    run.span_p_up.append(predict_proba_up(model, X[bars.span]))
    run.last_model = model
    return score


def _fold_report(candles: Candles, data: Dataset, fold: Fold, bars: FoldBars, choice: str) -> FoldReport:
    start = data.start
    return FoldReport(
        index=fold.index,
        train_start_open_time=int(candles.open_time[start]),
        train_end_open_time=int(candles.open_time[start + fold.train_stop - 1]),
        test_start_open_time=int(candles.open_time[start + fold.test_start]),
        test_end_open_time=int(candles.open_time[start + fold.test_stop - 1]),
        n_train=int(bars.train.shape[0]),
        n_test=int(bars.test.shape[0]),
        inner_choice=choice,
    )
