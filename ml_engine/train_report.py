"""What training reports: per-candidate and per-fold records, ``TrainReport`` (JSON-ready) and
``TrainOutcome`` (the fitted final pipeline, its inputs, the report and the OOS probabilities)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from ml_engine.feature_extractor import FeatureConfig
from ml_engine.oos import BacktestSummary, OOSDiagnostics, OOSMetrics
from utils.jsonsafe import json_safe

__all__ = ["CandidateReport", "FoldReport", "OOSDiagnostics", "TrainOutcome", "TrainReport"]


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
    diagnostics: OOSDiagnostics | None = None  # models trained before reports existed have none

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: nested dataclasses become dicts, NaN/inf become None."""
        data: dict[str, Any] = json_safe(self, str_keys=True)
        return data

    def metrics_dict(self) -> dict[str, Any]:
        """Flat headline numbers: the chosen model's OOS metrics plus ``backtest_*``."""
        flat = asdict(self.metrics)
        flat.update({f"backtest_{k}": v for k, v in asdict(self.backtest).items()})
        safe: dict[str, Any] = json_safe(flat, str_keys=True)
        return safe


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
