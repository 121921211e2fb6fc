"""The candidate search: on an inner split of a training window, each grid point of a candidate is
fitted on the inner training bars and scored on the validation bars; the best one wins."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.metrics import log_loss, roc_auc_score

from ml_engine.candidates import build_pipeline
from ml_engine.labels import UP
from ml_engine.prediction import aligned_proba
from ml_engine.train_config import SelectionMetric, TrainConfig

__all__ = ["pick_params", "validation_score"]


def pick_params(
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
        proba = aligned_proba(model, X[val_bars], classes)
        score = validation_score(y[val_bars], proba, classes, cfg.selection_metric)
        if best is None or score < best[0]:
            best = (score, params)
    assert best is not None
    return best[1], best[0]


def validation_score(
    y: np.ndarray, proba: np.ndarray, classes: tuple[int, ...], metric: SelectionMetric
) -> float:
    """``metric`` of ``proba`` against ``y`` as a loss (lower is better): log loss, or minus the AUC of
    P(up) (inf when the rows hold one side only)."""
    if metric == "log_loss":
        return float(log_loss(y, proba, labels=list(classes)))
    up = y == UP
    if up.all() or not up.any():
        return math.inf
    return -float(roc_auc_score(up, proba[:, classes.index(UP)]))
