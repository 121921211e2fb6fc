"""backtester/metrics.py's drawdown helpers (the running peak with or without the starting capital) and the
compiled pass that gives a long curve's drawdown and risk ratios."""

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


def _curves() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    n = 150_000  # above the size from which the equity pass runs compiled
    walk = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.002, n)))
    flat = np.repeat(walk[::50], 50)[:n]  # plateaus: ties with the peak, runs that end on equality
    crash = walk.copy()
    crash[n // 2 :] *= 0.1
    rising = np.linspace(100.0, 200.0, n)  # never below the peak
    with_nan, with_inf = walk.copy(), walk.copy()
    with_nan[n // 3] = np.nan
    with_inf[n // 4] = np.inf
    return [walk, flat, crash, rising, with_nan, with_inf, walk * 0.5]


def _more_curves() -> list[np.ndarray]:
    """Curves for the risk ratios' None cases: no move at all, a constant rate of growth (rounding noise
    for a spread), a fall to zero (an infinite return after it), and a curve that only falls."""
    n = 150_000
    to_zero = np.linspace(100.0, 1.0, n)
    to_zero[n // 2 :] = 0.0
    return [np.full(n, 100.0), 100.0 * 1.0001 ** np.arange(n), to_zero, np.linspace(200.0, 100.0, n)]


@pytest.mark.parametrize("index", range(7))
def test_the_compiled_drawdown_gives_the_array_versions_bits(index: int) -> None:
    from backtester import metrics

    equity = _curves()[index]
    assert equity.shape[0] >= metrics._COMPILED_FROM_BARS
    with np.errstate(invalid="ignore"):  # inf / inf in the curve with an inf
        compiled = metrics.drawdown(equity, 100.0)
        arrays = metrics._drawdown_arrays(equity, 100.0)
    assert repr(compiled) == repr(arrays)  # repr: NaN equals NaN, floats bit for bit
    if index < 4:  # the finite curves really went through the compiled pass
        lowest, longest, finite, *_ = metrics._equity_kernel()(equity, 100.0)
        assert finite and longest == arrays[1]
        assert arrays[0] == (0.0 if longest == 0 else 1.0 - lowest)


def test_a_zero_peak_gives_numpys_answer_not_an_exception() -> None:
    from backtester import metrics

    equity = np.full(metrics._COMPILED_FROM_BARS, -1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        assert repr(metrics.drawdown(equity, 0.0)) == repr(metrics._drawdown_arrays(equity, 0.0))


@pytest.mark.parametrize("index", range(11))
def test_the_compiled_risk_ratios_agree_with_the_array_version(index: int) -> None:
    """Same per-bar returns, summed in another order: the same None cases, the same ratios up to a few
    units in the last place."""
    from backtester import metrics

    equity = (_curves() + _more_curves())[index]
    with np.errstate(divide="ignore", invalid="ignore"):
        _, compiled = metrics.equity_risk(equity, 100.0, 525_600.0)
        arrays = metrics.risk_ratios(metrics.per_bar_returns(equity), 525_600.0)
    assert [value is None for value in compiled] == [value is None for value in arrays]
    for got, want in zip(compiled, arrays, strict=True):
        if want is not None:
            assert got == pytest.approx(want, rel=1e-12, abs=0.0)


def test_the_risk_ratios_none_cases_are_met_by_the_compiled_curves() -> None:
    """The extra curves reach each None case, so the agreement above covers them."""
    from backtester import metrics

    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = [metrics.equity_risk(curve, 100.0, 1.0)[1] for curve in _more_curves()]
    flat, steady, to_zero, falling = ratios
    assert flat == (None, None)  # no spread and no loss
    assert steady[0] is None and steady[1] is None  # spread is rounding noise; never a loss
    assert to_zero == (None, None)  # 0 / 0 after the fall
    assert falling[0] is not None and falling[0] < 0 and falling[1] is not None and falling[1] < 0
