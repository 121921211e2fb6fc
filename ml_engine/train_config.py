"""Training configuration: ``TrainConfig`` (labels, folds, purge, candidates, selection, backtest),
the ``SelectionMetric`` and ``Progress`` types, and the argument checks the trainer modules share."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from ml_engine.candidates import CANDIDATES
from ml_engine.labels import FlatMode

__all__ = ["Progress", "SelectionMetric", "TrainConfig", "is_int", "require"]

Progress = Callable[[float, str], None]
SelectionMetric = Literal["log_loss", "auc"]


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
        require(is_int(self.horizon) and self.horizon >= 1, "horizon must be an integer >= 1", self.horizon)
        require(is_int(self.n_folds) and self.n_folds >= 5, "n_folds must be an integer >= 5", self.n_folds)
        if self.purge is not None:
            require(
                is_int(self.purge) and self.purge >= self.horizon,
                f"purge must be an integer >= horizon ({self.horizon})",
                self.purge,
            )
        require(
            isinstance(self.dead_zone, int | float) and math.isfinite(self.dead_zone) and self.dead_zone >= 0,
            "dead_zone must be finite and >= 0",
            self.dead_zone,
        )
        require(self.flat in ("drop", "class"), "flat must be 'drop' or 'class'", self.flat)
        unknown = [c for c in self.candidates if c not in CANDIDATES]
        require(
            bool(self.candidates) and not unknown, f"candidates must be among {list(CANDIDATES)}", unknown
        )
        require(
            len(set(self.candidates)) == len(self.candidates), "candidates must not repeat", self.candidates
        )
        for name, grid in (self.grids or {}).items():
            require(name in CANDIDATES, "grids keys must be candidate names", name)
            require(len(grid) >= 1, f"grid for {name} must not be empty", grid)
        require(
            self.selection_metric in ("log_loss", "auc"),
            "selection_metric must be log_loss or auc",
            self.selection_metric,
        )
        require(
            0.05 <= self.inner_fraction <= 0.5, "inner_fraction must be in [0.05, 0.5]", self.inner_fraction
        )
        require(0 <= self.fee_rate < 1, "fee_rate must be in [0, 1)", self.fee_rate)
        require(0 <= self.signal_margin < 0.5, "signal_margin must be in [0, 0.5)", self.signal_margin)
        require(is_int(self.n_jobs) and self.n_jobs >= 1, "n_jobs must be an integer >= 1", self.n_jobs)
        require(
            is_int(self.min_train_rows) and self.min_train_rows >= 10,
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


def is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def require(ok: bool, message: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"{message}, got {value!r}")
