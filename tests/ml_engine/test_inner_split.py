"""ml_engine/walk_forward.py: the inner split the hyper-parameter search uses, in every fold and for the
final model, keeps the purge between its training bars and its validation bars.

The label of bar t reads close[t + horizon]; without the purge the last inner training labels read the
closes of the first validation bars, and the search scores grid points on rows their fit has seen.
"""

from __future__ import annotations

import numpy as np
import pytest

from ml_engine.train_config import TrainConfig
from ml_engine.walk_forward import Dataset, final_bars, fold_bars, inner_split, walk_forward_splits

N_BARS = 3_000
WARMUP = 40


def dataset(horizon: int, hole_rate: float, *, min_train_rows: int = 10, seed: int = 0) -> Dataset:
    """A real Dataset over N_BARS bars: random features and up/down labels, the first WARMUP bars and the
    last `horizon` (no full future) unusable, and a share `hole_rate` of the others unusable (flat labels
    dropped, a missing feature), as the trainer builds it."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N_BARS, 3))
    y = rng.integers(0, 2, N_BARS)
    usable = rng.random(N_BARS) >= hole_rate
    usable[:WARMUP] = False
    usable[N_BARS - horizon :] = False
    return Dataset(X, y, (0, 1), usable, WARMUP, N_BARS - horizon - WARMUP, min_train_rows)


def usable_positions(data: Dataset, lo: int, hi: int) -> np.ndarray:
    """The bars of positions [lo, hi) that are usable, straight from the mask."""
    return np.flatnonzero(data.usable[data.start + lo : data.start + hi]) + data.start + lo


# (horizon, purge or None for the horizon, inner_fraction, share of unusable bars)
CASES = [
    (1, None, 0.2, 0.0),
    (4, None, 0.2, 0.0),
    (6, 10, 0.2, 0.0),
    (6, 10, 0.05, 0.0),
    (3, None, 0.5, 0.0),
    (4, 7, 0.3, 0.15),
    (12, None, 0.25, 0.3),
]


@pytest.mark.parametrize(("horizon", "purge", "fraction", "holes"), CASES)
def test_every_folds_inner_split_keeps_the_purge(
    horizon: int, purge: int | None, fraction: float, holes: float
) -> None:
    cfg = TrainConfig(horizon=horizon, purge=purge, inner_fraction=fraction, min_train_rows=10)
    gap = cfg.effective_purge
    data = dataset(horizon, holes)
    folds = walk_forward_splits(data.span, cfg.n_folds, gap)
    for fold in folds:
        bars = fold_bars(data, fold, cfg)
        inner, validation = bars.inner, bars.validation
        assert inner.size and validation.size
        # No inner training label reads a close at or after the first validation bar.
        assert inner[-1] + horizon < validation[0], (fold.index, inner[-1], validation[0])
        assert validation[0] - inner[-1] - 1 >= gap, "fewer than `purge` bars between inner and validation"
        # The validation block is the last `fraction` of the training window; the inner bars are every
        # usable bar up to `purge` positions before it: nothing else is dropped, nothing is shared.
        n_val = max(1, round(fraction * fold.train_stop))
        val_start = fold.train_stop - n_val
        np.testing.assert_array_equal(validation, usable_positions(data, val_start, fold.train_stop))
        np.testing.assert_array_equal(inner, usable_positions(data, 0, val_start - gap))
        np.testing.assert_array_equal(bars.train, usable_positions(data, 0, fold.train_stop))
        if holes == 0.0:
            assert validation[0] - inner[-1] - 1 == gap


@pytest.mark.parametrize(("horizon", "purge", "fraction", "holes"), CASES)
def test_the_final_models_inner_split_keeps_the_purge(
    horizon: int, purge: int | None, fraction: float, holes: float
) -> None:
    cfg = TrainConfig(horizon=horizon, purge=purge, inner_fraction=fraction, min_train_rows=10)
    gap = cfg.effective_purge
    data = dataset(horizon, holes)
    bars = final_bars(data, cfg)
    assert bars.inner[-1] + horizon < bars.validation[0]
    assert bars.validation[0] - bars.inner[-1] - 1 >= gap
    val_start = data.span - max(1, round(fraction * data.span))
    np.testing.assert_array_equal(bars.validation, usable_positions(data, val_start, data.span))
    np.testing.assert_array_equal(bars.inner, usable_positions(data, 0, val_start - gap))
    np.testing.assert_array_equal(bars.train, usable_positions(data, 0, data.span))  # the refit: every row
    if holes == 0.0:
        assert bars.validation[0] - bars.inner[-1] - 1 == gap


@pytest.mark.parametrize("n_train", [10, 99, 500, 2_501])
@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.5])
@pytest.mark.parametrize("purge", [0, 1, 6, 24])
def test_inner_split_positions(n_train: int, fraction: float, purge: int) -> None:
    inner_stop, val_start = inner_split(n_train, fraction, purge)
    assert val_start - inner_stop == purge
    assert n_train - val_start == max(1, round(fraction * n_train)), "the validation block's size"


def test_a_final_inner_window_too_small_for_the_purge_is_refused_before_fitting() -> None:
    cfg = TrainConfig(horizon=1, inner_fraction=0.5)
    data = dataset(1, 0.0, min_train_rows=1_479)
    # Half the series (1,480 of 2,959 positions) validates: the inner window has 1,479 - purge rows.
    with pytest.raises(ValueError, match="final inner training window"):
        final_bars(data, cfg)
    assert final_bars(dataset(1, 0.0, min_train_rows=1_478), cfg).inner.size == 1_478
