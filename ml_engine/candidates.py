"""The candidate models: their estimator factories, fixed settings and hyper-parameter grids
(``CANDIDATES``), and ``build_pipeline``, which puts a scaler in front of each."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

__all__ = ["CANDIDATES", "CandidateSpec", "build_pipeline"]


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
