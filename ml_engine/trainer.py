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
"""

from __future__ import annotations

import math
import platform
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import sklearn
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, log_loss, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from backtester.data import Candles
from backtester.runner import BacktestConfig, run_backtest
from ml_engine.feature_extractor import FeatureConfig, FeatureFrame, extract
from ml_engine.labels import UP, FlatMode, make_labels

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

Progress = Callable[[float, str], None]
SelectionMetric = Literal["log_loss", "auc"]


# --------------------------------------------------------------------------------------------------
# Candidates
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CandidateSpec:
    """A candidate model: its estimator factory, fixed settings and a small hyper-parameter grid."""

    name: str
    make: Callable[[Mapping[str, Any], int, int], Any]  # (params, random_state, n_jobs) -> estimator
    grid: tuple[Mapping[str, Any], ...]


def _logreg(params: Mapping[str, Any], random_state: int, n_jobs: int) -> LogisticRegression:
    return LogisticRegression(max_iter=1000, **params)


def _random_forest(params: Mapping[str, Any], random_state: int, n_jobs: int) -> RandomForestClassifier:
    # A quarter of the rows per tree: the forest fits ~4x faster and its trees decorrelate more;
    # large leaves because single-bar financial targets are mostly noise.
    settings: dict[str, Any] = {
        "n_estimators": 100,
        "max_features": "sqrt",
        "max_samples": 0.25,
        "random_state": random_state,
        "n_jobs": n_jobs,
    }
    settings.update(params)
    return RandomForestClassifier(**settings)


def _hist_gb(params: Mapping[str, Any], random_state: int, n_jobs: int) -> HistGradientBoostingClassifier:
    # early_stopping=False: "auto" turns it on above 10,000 rows with a *shuffled* validation split,
    # which would let future rows steer the fit. Threads are capped by threadpool_limits in train().
    settings: dict[str, Any] = {
        "max_iter": 100,
        "min_samples_leaf": 100,
        "l2_regularization": 1.0,
        "early_stopping": False,
        "random_state": random_state,
    }
    settings.update(params)
    return HistGradientBoostingClassifier(**settings)


CANDIDATES: dict[str, CandidateSpec] = {
    spec.name: spec
    for spec in (
        CandidateSpec("logreg", _logreg, ({"C": 0.01}, {"C": 1.0})),
        CandidateSpec(
            "random_forest",
            _random_forest,
            ({"max_depth": 4, "min_samples_leaf": 200}, {"max_depth": 8, "min_samples_leaf": 50}),
        ),
        CandidateSpec(
            "hist_gb",
            _hist_gb,
            ({"learning_rate": 0.05, "max_leaf_nodes": 7}, {"learning_rate": 0.1, "max_leaf_nodes": 15}),
        ),
    )
}


def build_pipeline(name: str, params: Mapping[str, Any], random_state: int = 0, n_jobs: int = 1) -> Pipeline:
    """``StandardScaler`` then the candidate's estimator.

    Every candidate gets the scaler: the logistic regression needs it, trees are unaffected by a
    per-feature affine map, and its ``mean_`` is the neutral reference ``top_features`` uses.
    """
    spec = CANDIDATES[name]
    return Pipeline([("scale", StandardScaler()), ("model", spec.make(params, random_state, n_jobs))])


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """How to label, validate, select and backtest. Bars are counted in candles of the series.

    ``n_jobs`` is the forest's worker count and, through threadpoolctl, the cap on BLAS/OpenMP threads
    (the gradient boosting's) while ``train`` runs. That cap is process-wide: train several agents in
    parallel in separate processes (joblib's default loky backend), not in threads of one process.
    """

    horizon: int = 1  # bars ahead the label looks
    dead_zone: float = 0.0  # |forward return| <= this is "flat"; labels.fee_dead_zone(fee) = 2 * fee
    flat: FlatMode = "drop"  # flat rows dropped, or a third class
    n_folds: int = 5  # walk-forward test blocks, at least 5
    purge: int | None = None  # bars between train and test; None means horizon; never less
    candidates: tuple[str, ...] = ("logreg", "random_forest", "hist_gb")
    grids: Mapping[str, Sequence[Mapping[str, Any]]] | None = None  # per-candidate grid overrides
    selection_metric: SelectionMetric = "log_loss"
    inner_fraction: float = 0.2  # share of each training window used to pick hyper-parameters
    fee_rate: float = 0.001  # per side, for the OOS backtest
    signal_margin: float = 0.02  # long while P(up) > 0.5 + margin
    random_state: int = 0
    n_jobs: int = 1  # threads for the estimators (see above); 1 leaves cores to parallel agents
    min_train_rows: int = 500  # usable rows the smallest (inner) training window must have

    def __post_init__(self) -> None:
        object.__setattr__(self, "candidates", tuple(self.candidates))
        _require(_is_int(self.horizon) and self.horizon >= 1, "horizon must be an integer >= 1", self.horizon)
        _require(_is_int(self.n_folds) and self.n_folds >= 5, "n_folds must be an integer >= 5", self.n_folds)
        if self.purge is not None:
            _require(
                _is_int(self.purge) and self.purge >= self.horizon,
                f"purge must be an integer >= horizon ({self.horizon})",
                self.purge,
            )
        _require(
            isinstance(self.dead_zone, int | float) and math.isfinite(self.dead_zone) and self.dead_zone >= 0,
            "dead_zone must be finite and >= 0",
            self.dead_zone,
        )
        _require(self.flat in ("drop", "class"), "flat must be 'drop' or 'class'", self.flat)
        unknown = [c for c in self.candidates if c not in CANDIDATES]
        _require(
            bool(self.candidates) and not unknown, f"candidates must be among {list(CANDIDATES)}", unknown
        )
        _require(
            len(set(self.candidates)) == len(self.candidates), "candidates must not repeat", self.candidates
        )
        for name, grid in (self.grids or {}).items():
            _require(name in CANDIDATES, "grids keys must be candidate names", name)
            _require(len(grid) >= 1, f"grid for {name} must not be empty", grid)
        _require(
            self.selection_metric in ("log_loss", "auc"),
            "selection_metric must be log_loss or auc",
            self.selection_metric,
        )
        _require(
            0.05 <= self.inner_fraction <= 0.5, "inner_fraction must be in [0.05, 0.5]", self.inner_fraction
        )
        _require(0 <= self.fee_rate < 1, "fee_rate must be in [0, 1)", self.fee_rate)
        _require(0 <= self.signal_margin < 0.5, "signal_margin must be in [0, 0.5)", self.signal_margin)
        _require(_is_int(self.n_jobs) and self.n_jobs >= 1, "n_jobs must be an integer >= 1", self.n_jobs)
        _require(
            _is_int(self.min_train_rows) and self.min_train_rows >= 10,
            "min_train_rows must be >= 10",
            self.min_train_rows,
        )

    @property
    def effective_purge(self) -> int:
        return self.horizon if self.purge is None else self.purge

    @property
    def long_threshold(self) -> float:
        return 0.5 + self.signal_margin

    def grid(self, name: str) -> tuple[Mapping[str, Any], ...]:
        if self.grids and name in self.grids:
            return tuple(self.grids[name])
        return CANDIDATES[name].grid

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["candidates"] = list(self.candidates)
        data["grids"] = {k: [dict(p) for p in v] for k, v in (self.grids or {}).items()} or None
        data["purge"] = self.effective_purge
        return data


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _require(ok: bool, message: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"{message}, got {value!r}")


# --------------------------------------------------------------------------------------------------
# Walk-forward splitter
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
    _require(_is_int(n_folds) and n_folds >= 2, "n_folds must be an integer >= 2", n_folds)
    _require(_is_int(purge) and purge >= 0, "purge must be an integer >= 0", purge)
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


def _inner_split(n_train: int, fraction: float, purge: int) -> tuple[int, int]:
    """(inner_train_stop, validation_start) inside a training window of ``n_train`` positions."""
    val_start = n_train - max(1, round(fraction * n_train))
    return val_start - purge, val_start


# --------------------------------------------------------------------------------------------------
# Report types
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


@dataclass(frozen=True)
class CandidateReport:
    name: str
    grid: list[dict[str, Any]]
    oos: OOSMetrics
    fold_params: list[dict[str, Any]]  # hyper-parameters picked by each fold's inner validation
    inner_scores: list[float]  # the picked point's inner validation score per fold (lower is better)


@dataclass(frozen=True)
class FoldReport:
    index: int
    train_start_open_time: int
    train_end_open_time: int  # last training bar's open time (inclusive)
    test_start_open_time: int
    test_end_open_time: int  # inclusive
    n_train: int  # usable labelled rows
    n_test: int
    inner_choice: str  # candidate with the best inner validation score (used by nested_metrics)


@dataclass(frozen=True)
class TrainReport:
    """Everything a model's metadata needs to say about how it was trained and how good it is OOS."""

    symbol: str
    interval: str
    horizon: int
    purge: int
    dead_zone: float
    flat: str
    n_folds: int
    selection_metric: str
    chosen: str
    chosen_params: dict[str, Any]
    selection_note: str
    candidates: list[CandidateReport]
    metrics: OOSMetrics  # the chosen candidate's, pooled over all test blocks
    nested_metrics: OOSMetrics  # per-fold choice by inner validation only: no selection on test blocks
    backtest: BacktestSummary  # the chosen candidate's OOS signals
    nested_backtest: BacktestSummary  # the nested procedure's OOS signals
    folds: list[FoldReport]
    feature_names: list[str]
    feature_config: dict[str, Any]
    train_config: dict[str, Any]
    n_candles: int
    n_rows: int  # usable rows the final model was fitted on
    train_start_open_time: int  # first and last of those rows
    train_end_open_time: int
    up_rate: float  # share of up labels among them
    versions: dict[str, str]
    fit_seconds: float = field(default=0.0, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: nested dataclasses become dicts, NaN/inf become None."""
        return _json_safe(asdict(self))

    def metrics_dict(self) -> dict[str, Any]:
        """Flat headline numbers: the chosen model's OOS metrics plus ``backtest_*``."""
        flat = asdict(self.metrics)
        flat.update({f"backtest_{k}": v for k, v in asdict(self.backtest).items()})
        return _json_safe(flat)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True, eq=False)
class TrainOutcome:
    """The fitted final pipeline, what it expects as input, and the report.

    ``oos_open_time`` / ``oos_p_up``: the chosen candidate's OOS P(up) per OOS bar (NaN where the
    features were unusable), e.g. for charts or threshold studies; ``nested_p_up`` the nested
    procedure's (per fold, the candidate its inner validation preferred).
    """

    model: Pipeline
    feature_names: list[str]
    feature_config: FeatureConfig | None
    report: TrainReport
    oos_open_time: np.ndarray
    oos_p_up: np.ndarray
    nested_p_up: np.ndarray


# --------------------------------------------------------------------------------------------------
# Prediction helpers
# --------------------------------------------------------------------------------------------------


def _aligned_proba(model: Any, X: np.ndarray, classes: tuple[int, ...]) -> np.ndarray:
    """predict_proba with one column per entry of ``classes`` (0 for a class the fit never saw)."""
    raw = model.predict_proba(X)
    out = np.zeros((X.shape[0], len(classes)))
    for j, cls in enumerate(model.classes_):
        out[:, classes.index(int(cls))] = raw[:, j]
    return out


def predict_proba_up(model: Any, X: np.ndarray) -> np.ndarray:
    """P(up) for each row of ``X`` (2-D, or one row as 1-D); NaN for rows with a non-finite feature."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X.reshape(1, -1)
    out = np.full(X.shape[0], np.nan)
    ok = np.isfinite(X).all(axis=1)
    classes = [int(c) for c in model.classes_]
    if ok.any() and UP in classes:
        out[ok] = model.predict_proba(X[ok])[:, classes.index(UP)]
    elif ok.any():
        out[ok] = 0.0
    return out


@dataclass(frozen=True)
class FeatureContribution:
    name: str
    value: float  # the feature's value in this row
    contribution: float  # P(up) with the actual value minus P(up) with the training mean instead


def top_features(
    model: Pipeline, x: np.ndarray, names: Sequence[str], k: int = 5
) -> list[FeatureContribution]:
    """The ``k`` features that moved this row's P(up) most, largest |contribution| first.

    An occlusion approximation, the same for every model kind: feature j's contribution is
    ``P(up | x) - P(up | x with x_j set to its training mean)`` (the pipeline's scaler holds the
    means). One-at-a-time, so interactions are split arbitrarily and contributions need not sum to
    ``P(up | x) - P(up | mean)``; for the logistic regression it ranks features like |coef * z|. It
    costs one ``predict_proba`` call on ``n_features + 1`` rows.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.shape[0] != len(names):
        raise ValueError(f"x has {x.shape[0]} features but {len(names)} names were given")
    if not np.isfinite(x).all():
        return []
    mean = np.asarray(model.named_steps["scale"].mean_, dtype=np.float64)
    rows = np.tile(x, (x.shape[0] + 1, 1))
    idx = np.arange(x.shape[0])
    rows[idx + 1, idx] = mean
    p = predict_proba_up(model, rows)
    contribution = p[0] - p[1:]
    order = np.argsort(-np.abs(contribution), kind="stable")[:k]
    return [FeatureContribution(names[j], float(x[j]), float(contribution[j])) for j in order]


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


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


@dataclass
class _CandidateRun:
    """Per-candidate results collected over the folds."""

    fold_params: list[dict[str, Any]] = field(default_factory=list)
    inner_scores: list[float] = field(default_factory=list)
    test_proba: list[np.ndarray] = field(default_factory=list)  # usable test rows, per fold
    span_p_up: list[np.ndarray] = field(default_factory=list)  # every test-block bar, per fold


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
    n = len(candles)
    labels = make_labels(candles.close, cfg.horizon, cfg.dead_zone, cfg.flat)
    classes = labels.classes
    X = frame.X
    y = labels.y
    purge = cfg.effective_purge
    # Positions 0..span-1 map to bars start..stop-1: bars with features and a full future.
    start, stop = frame.warmup, n - cfg.horizon
    usable = labels.usable & np.isfinite(X).all(axis=1)
    usable[:start] = False
    span = stop - start
    if span <= 0:
        raise ValueError(f"too few candles: {n} leave no labelled rows after a warm-up of {start}")
    folds = walk_forward_splits(span, cfg.n_folds, purge)

    def rows(lo: int, hi: int) -> np.ndarray:
        """Usable bars among positions [lo, hi)."""
        bars = np.arange(start + lo, start + hi)
        return bars[usable[bars]]

    def check_window(bars: np.ndarray, what: str) -> None:
        if bars.shape[0] < cfg.min_train_rows:
            raise ValueError(
                f"too few rows: the {what} has {bars.shape[0]} usable rows, fewer than min_train_rows="
                f"{cfg.min_train_rows}; use more candles, fewer folds or a smaller warm-up"
            )
        if np.unique(y[bars]).shape[0] < 2:
            raise ValueError(f"the {what} has only one class; a classifier cannot be trained on it")

    runs = {name: _CandidateRun() for name in cfg.candidates}
    fold_reports: list[FoldReport] = []
    baseline_hits = 0
    total_steps = len(folds) * len(cfg.candidates) + 1
    done = 0
    nested_proba: list[np.ndarray] = []
    nested_span: list[np.ndarray] = []
    test_truth: list[np.ndarray] = []

    for fold in folds:
        train_bars = rows(0, fold.train_stop)
        test_bars = rows(fold.test_start, fold.test_stop)
        inner_stop, val_start = _inner_split(fold.train_stop, cfg.inner_fraction, purge)
        inner_bars = rows(0, max(inner_stop, 0))
        val_bars = rows(val_start, fold.train_stop)
        check_window(inner_bars, f"inner training window of fold {fold.index + 1}")
        if val_bars.shape[0] == 0:
            raise ValueError(f"too few rows: fold {fold.index + 1}'s inner validation block is empty")
        span_bars = np.arange(start + fold.test_start, start + fold.test_stop)
        majority = int(np.bincount(y[train_bars]).argmax())
        baseline_hits += int(np.count_nonzero(y[test_bars] == majority))
        test_truth.append(y[test_bars])

        best_inner: tuple[float, str] | None = None
        for name in cfg.candidates:
            params, score = _pick_params(name, cfg, X, y, inner_bars, val_bars, classes)
            model = build_pipeline(name, params, cfg.random_state, cfg.n_jobs).fit(
                X[train_bars], y[train_bars]
            )
            run = runs[name]
            run.fold_params.append(dict(params))
            run.inner_scores.append(score)
            run.test_proba.append(
                _aligned_proba(model, X[test_bars], classes)
                if test_bars.size
                else np.empty((0, len(classes)))
            )
            run.span_p_up.append(predict_proba_up(model, X[span_bars]))
            if best_inner is None or score < best_inner[0]:
                best_inner = (score, name)
            done += 1
            if progress is not None:
                progress(done / total_steps, f"fold {fold.index + 1}/{len(folds)}: {name} evaluated")
        assert best_inner is not None
        nested_proba.append(runs[best_inner[1]].test_proba[-1])
        nested_span.append(runs[best_inner[1]].span_p_up[-1])
        fold_reports.append(
            FoldReport(
                index=fold.index,
                train_start_open_time=int(candles.open_time[start]),
                train_end_open_time=int(candles.open_time[start + fold.train_stop - 1]),
                test_start_open_time=int(candles.open_time[start + fold.test_start]),
                test_end_open_time=int(candles.open_time[start + fold.test_stop - 1]),
                n_train=int(train_bars.shape[0]),
                n_test=int(test_bars.shape[0]),
                inner_choice=best_inner[1],
            )
        )

    truth = np.concatenate(test_truth)
    baseline = baseline_hits / truth.shape[0] if truth.shape[0] else math.nan
    candidate_reports = []
    for name in cfg.candidates:
        run = runs[name]
        oos = _oos_metrics(truth, np.concatenate(run.test_proba), classes, baseline)
        candidate_reports.append(
            CandidateReport(name, [dict(p) for p in cfg.grid(name)], oos, run.fold_params, run.inner_scores)
        )
    chosen = min(candidate_reports, key=lambda c: _selection_key(c.oos, cfg.selection_metric)).name
    metrics = next(c.oos for c in candidate_reports if c.name == chosen)
    nested = _oos_metrics(truth, np.concatenate(nested_proba), classes, baseline)

    # OOS backtest: the test blocks are adjacent, so the OOS bars are one contiguous run.
    oos_lo, oos_hi = start + folds[0].test_start, start + folds[-1].test_stop
    oos_p_up = np.concatenate(runs[chosen].span_p_up)
    nested_p_up = np.concatenate(nested_span)
    oos_candles = candles.slice(oos_lo, oos_hi)
    backtest = _oos_backtest(oos_candles, oos_p_up, cfg)
    nested_backtest = _oos_backtest(oos_candles, nested_p_up, cfg)

    # Final model: the same procedure on the whole series.
    all_bars = rows(0, span)
    inner_stop, val_start = _inner_split(span, cfg.inner_fraction, purge)
    inner_bars, val_bars = rows(0, inner_stop), rows(val_start, span)
    check_window(inner_bars, "final inner training window")
    final_params, _ = _pick_params(chosen, cfg, X, y, inner_bars, val_bars, classes)
    model = build_pipeline(chosen, final_params, cfg.random_state, cfg.n_jobs).fit(X[all_bars], y[all_bars])
    if "n_jobs" in model.named_steps["model"].get_params():
        # Fitted state does not depend on n_jobs; one thread makes one-row predictions several times
        # faster (no pool start-up).
        model.set_params(model__n_jobs=1)
    if progress is not None:
        progress(1.0, f"final {chosen} model fitted on {all_bars.shape[0]} rows")

    note = (
        f"{chosen} was chosen by the best pooled OOS {cfg.selection_metric} among {len(cfg.candidates)} "
        "candidate(s) on the same test blocks that produce `metrics`, which are therefore slightly "
        "optimistic; `nested_metrics` and `nested_backtest` (candidate chosen per fold on its inner "
        "validation block only) have no such selection. Hyper-parameters were always chosen on inner "
        "validation blocks."
    )
    report = TrainReport(
        symbol=candles.symbol,
        interval=candles.interval,
        horizon=cfg.horizon,
        purge=purge,
        dead_zone=float(cfg.dead_zone),
        flat=cfg.flat,
        n_folds=cfg.n_folds,
        selection_metric=cfg.selection_metric,
        chosen=chosen,
        chosen_params=dict(final_params),
        selection_note=note,
        candidates=candidate_reports,
        metrics=metrics,
        nested_metrics=nested,
        backtest=backtest,
        nested_backtest=nested_backtest,
        folds=fold_reports,
        feature_names=list(frame.names),
        feature_config=feature_config.to_dict() if feature_config else {},
        train_config=cfg.to_dict(),
        n_candles=n,
        n_rows=int(all_bars.shape[0]),
        train_start_open_time=int(candles.open_time[all_bars[0]]),
        train_end_open_time=int(candles.open_time[all_bars[-1]]),
        up_rate=float(np.mean(y[all_bars] == UP)),
        versions={
            "python": platform.python_version(),
            "sklearn": sklearn.__version__,
            "numpy": np.__version__,
            "pandas": pd.__version__,
        },
        fit_seconds=time.perf_counter() - started,
    )
    return TrainOutcome(
        model=model,
        feature_names=list(frame.names),
        feature_config=feature_config,
        report=report,
        oos_open_time=np.asarray(candles.open_time[oos_lo:oos_hi]).copy(),
        oos_p_up=oos_p_up,
        nested_p_up=nested_p_up,
    )


def _pick_params(
    name: str,
    cfg: TrainConfig,
    X: np.ndarray,
    y: np.ndarray,
    inner_bars: np.ndarray,
    val_bars: np.ndarray,
    classes: tuple[int, ...],
) -> tuple[Mapping[str, Any], float]:
    """The grid point with the best validation score (first on ties), and that score (lower is better)."""
    best: tuple[float, Mapping[str, Any]] | None = None
    template = build_pipeline(name, {}, cfg.random_state, cfg.n_jobs)
    for params in cfg.grid(name):
        model = clone(template).set_params(**{f"model__{k}": v for k, v in params.items()})
        model.fit(X[inner_bars], y[inner_bars])
        proba = _aligned_proba(model, X[val_bars], classes)
        score = _score(y[val_bars], proba, classes, cfg.selection_metric)
        if best is None or score < best[0]:
            best = (score, params)
    assert best is not None
    return best[1], best[0]


def _score(y: np.ndarray, proba: np.ndarray, classes: tuple[int, ...], metric: SelectionMetric) -> float:
    if metric == "log_loss":
        return float(log_loss(y, proba, labels=list(classes)))
    up = y == UP
    if up.all() or not up.any():
        return math.inf
    return -float(roc_auc_score(up, proba[:, classes.index(UP)]))


def _selection_key(m: OOSMetrics, metric: SelectionMetric) -> float:
    if metric == "log_loss":
        return m.oos_log_loss
    return -m.oos_auc if m.oos_auc is not None else math.inf


def _oos_metrics(y: np.ndarray, proba: np.ndarray, classes: tuple[int, ...], baseline: float) -> OOSMetrics:
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


def _oos_backtest(candles: Candles, p_up: np.ndarray, cfg: TrainConfig) -> BacktestSummary:
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
