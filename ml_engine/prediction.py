"""Using a fitted pipeline: P(up) per row (``predict_proba_up``), class-aligned probabilities and the
per-row feature contributions (``top_features``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from ml_engine.labels import UP

__all__ = ["FeatureContribution", "aligned_proba", "predict_proba_up", "top_features"]


def aligned_proba(model: Any, X: np.ndarray, classes: tuple[int, ...]) -> np.ndarray:
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
