"""backtester/metrics.py's drawdown helpers: the running peak with or without the starting capital."""

from __future__ import annotations

import numpy as np
import pytest

from backtester.metrics import drawdown, drawdown_series, max_drawdown, running_peak


def test_the_running_peak_starts_at_the_initial_capital_only_when_given() -> None:
    equity = np.array([90.0, 120.0, 60.0])
    np.testing.assert_array_equal(running_peak(equity), [90.0, 120.0, 120.0])
    np.testing.assert_array_equal(running_peak(equity, 100.0), [100.0, 120.0, 120.0])
    np.testing.assert_allclose(drawdown_series(equity), [0.0, 0.0, 0.5])
    np.testing.assert_allclose(drawdown_series(equity, 100.0), [0.1, 0.0, 0.5])


def test_max_drawdown_is_the_largest_and_the_last() -> None:
    assert max_drawdown([]) == (0.0, 0.0)
    assert max_drawdown([100.0, 50.0, 75.0]) == (0.5, 0.25)
    assert max_drawdown(np.array([90.0, 95.0]), 100.0) == pytest.approx((0.1, 0.05))
    assert drawdown_series(np.array([]), 100.0).shape == (0,)


def test_a_peak_at_or_below_zero_counts_as_no_drawdown() -> None:
    np.testing.assert_array_equal(drawdown_series([-5.0, -10.0]), [0.0, 0.0])


def test_the_metrics_drawdown_agrees_with_max_drawdown() -> None:
    equity = np.array([100.0, 130.0, 91.0, 140.0, 70.0, 80.0])
    worst, bars = drawdown(equity, 120.0)
    assert worst == pytest.approx(max_drawdown(equity, 120.0)[0], rel=1e-12)
    assert bars == 2  # bars 4 and 5, below the peak of 140; bars 0 and 2 are runs of one
