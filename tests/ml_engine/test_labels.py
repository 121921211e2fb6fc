"""ml_engine/labels.py: forward returns, the up/down/flat classes and the usable mask."""

from __future__ import annotations

import numpy as np
import pytest

from ml_engine.labels import DOWN, FLAT, NO_LABEL, UP, fee_dead_zone, forward_return, make_labels

# Binary-exact ratios, so the dead-zone boundary (|fwd| == 0.125) is hit exactly.
CLOSE = np.array([100.0, 125.0, 100.0, 100.0, 112.5, 98.4375])


def test_forward_return_values_on_a_hand_made_series() -> None:
    fwd = forward_return(CLOSE, 1)
    np.testing.assert_allclose(fwd[:-1], [0.25, -0.2, 0.0, 0.125, -0.125])
    assert np.isnan(fwd[-1])
    fwd2 = forward_return(CLOSE, 2)
    np.testing.assert_allclose(fwd2[:-2], [0.0, -0.2, 0.125, -0.015625])
    assert np.isnan(fwd2[-2:]).all()


def test_classes_without_a_dead_zone() -> None:
    labels = make_labels(CLOSE, 1)
    assert labels.y.tolist() == [UP, DOWN, NO_LABEL, UP, DOWN, NO_LABEL]
    # An exactly unchanged close is flat even without a dead zone; dropped by default.
    assert labels.usable.tolist() == [True, True, False, True, True, False]
    assert labels.classes == (DOWN, UP)


def test_dead_zone_drop_versus_class() -> None:
    dropped = make_labels(CLOSE, 1, dead_zone=0.125, flat="drop")
    # |fwd| <= 0.125 is flat: bar 2 (0.0) and bars 3 and 4 (+-0.125, on the boundary).
    assert dropped.y.tolist() == [UP, DOWN, NO_LABEL, NO_LABEL, NO_LABEL, NO_LABEL]
    assert dropped.usable.tolist() == [True, True, False, False, False, False]
    as_class = make_labels(CLOSE, 1, dead_zone=0.125, flat="class")
    assert as_class.y.tolist() == [UP, DOWN, FLAT, FLAT, FLAT, NO_LABEL]
    assert as_class.usable.tolist() == [True, True, True, True, True, False]
    assert as_class.classes == (DOWN, UP, FLAT)
    np.testing.assert_array_equal(dropped.fwd, as_class.fwd)


def test_the_last_horizon_rows_are_never_usable() -> None:
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 200)))
    for horizon in (1, 5, 24):
        for flat in ("drop", "class"):
            labels = make_labels(close, horizon, dead_zone=0.002, flat=flat)
            assert not labels.usable[-horizon:].any()
            assert (labels.y[-horizon:] == NO_LABEL).all()
            assert np.isnan(labels.fwd[-horizon:]).all()
            assert np.isfinite(labels.fwd[:-horizon]).all()
            assert (labels.y[~labels.usable] == NO_LABEL).all()
    short = make_labels(close[:3], 5)
    assert not short.usable.any()


def test_labels_match_the_sign_of_the_forward_return() -> None:
    rng = np.random.default_rng(1)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 500)))
    labels = make_labels(close, 3, dead_zone=0.004)
    fwd = labels.fwd[labels.usable]
    y = labels.y[labels.usable]
    assert ((fwd > 0.004) == (y == UP)).all()
    assert ((fwd < -0.004) == (y == DOWN)).all()


def test_fee_dead_zone_is_the_round_trip_cost() -> None:
    assert fee_dead_zone(0.001) == pytest.approx(0.002)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"horizon": 0},
        {"horizon": 1.5},
        {"horizon": True},
        {"dead_zone": -0.1},
        {"dead_zone": float("nan")},
        {"flat": "fill"},
    ],
)
def test_invalid_arguments_are_rejected(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"horizon": 1, "dead_zone": 0.0, "flat": "drop"}
    args.update(kwargs)
    with pytest.raises(ValueError):
        make_labels(CLOSE, **args)  # type: ignore[arg-type]  # deliberately out of range or mistyped
