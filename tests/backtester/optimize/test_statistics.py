"""Optimisation statistics (backtester/optimize/statistics.py): hand-computed values on small fixed inputs,
a brute-force CSCV reference, random-walk trials that must not look credible, a planted edge that must."""

from __future__ import annotations

import itertools
import math
import statistics as st
import time
from typing import Any

import numpy as np
import pytest

from backtester.optimize.statistics import (
    DSR_CREDIBLE,
    PBO_CREDIBLE,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    neighbourhood,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
    sharpe_stats,
    trial_spread,
    verdict,
)

GAMMA = 0.5772156649015329  # Euler–Mascheroni, written out so the test does not borrow the module's
INV = st.NormalDist().inv_cdf


def phi(x: float) -> float:
    """Standard normal CDF from the error function."""
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def moments(r: list[float]) -> tuple[float, float, float, float]:
    """(mean, std ddof=1, skewness, non-excess kurtosis) step by step, population central moments."""
    n = len(r)
    mean = sum(r) / n
    d = [x - mean for x in r]
    std = math.sqrt(sum(x * x for x in d) / (n - 1))
    m2 = sum(x**2 for x in d) / n
    m3 = sum(x**3 for x in d) / n
    m4 = sum(x**4 for x in d) / n
    return mean, std, m3 / m2**1.5, m4 / m2**2


# --------------------------------------------------------------------------------------------------
# Sharpe moments
# --------------------------------------------------------------------------------------------------


def test_sharpe_stats_match_hand_computation() -> None:
    r = [0.01, -0.02, 0.03, 0.0]
    # mean 0.005; deviations 0.005, -0.025, 0.025, -0.005
    mean = 0.005
    ss = 0.005**2 + 0.025**2 + 0.025**2 + 0.005**2  # 0.0013
    std = math.sqrt(ss / 3)
    m2 = ss / 4
    m3 = (0.005**3 - 0.025**3 + 0.025**3 - 0.005**3) / 4  # symmetric deviations: 0
    m4 = (2 * 0.005**4 + 2 * 0.025**4) / 4
    s = sharpe_stats(r)
    assert s.n_obs == 4
    assert s.mean == pytest.approx(mean, rel=1e-12)
    assert s.std == pytest.approx(std, rel=1e-12)
    assert s.sharpe == pytest.approx(mean / std, rel=1e-12)
    assert s.skewness == pytest.approx(m3 / m2**1.5, abs=1e-12)
    assert s.kurtosis == pytest.approx(m4 / m2**2, rel=1e-12)  # non-excess: about 1.3, not -1.7


def test_sharpe_stats_of_a_skewed_series() -> None:
    r = [0.02, -0.01, 0.03, 0.01, -0.02, 0.10]
    mean, std, skew, kurt = moments(r)
    s = sharpe_stats(np.array(r))
    assert (s.mean, s.std, s.sharpe, s.skewness, s.kurtosis) == pytest.approx(
        (mean, std, mean / std, skew, kurt), rel=1e-12
    )
    assert s.skewness is not None and s.skewness > 0  # the 0.10 outlier


@pytest.mark.parametrize(
    ("returns", "n", "mean", "std_defined"),
    [
        ([], 0, None, False),
        ([0.01], 1, 0.01, False),
        ([0.01] * 5, 5, 0.01, True),  # std is float noise: Sharpe undefined
        ([0.0, 0.0, 0.0], 3, 0.0, True),
    ],
)
def test_sharpe_stats_undefined(returns, n, mean, std_defined) -> None:
    s = sharpe_stats(returns)
    assert s.n_obs == n
    assert s.mean == (None if mean is None else pytest.approx(mean))
    assert (s.std is not None) == std_defined
    assert s.sharpe is None and s.skewness is None and s.kurtosis is None


@pytest.mark.parametrize("bad", [[0.01, math.nan], [0.01, math.inf], [[0.01, 0.02]]])
def test_sharpe_stats_rejects_unusable_returns(bad) -> None:
    with pytest.raises(ValueError, match="returns must be"):
        sharpe_stats(bad)


# --------------------------------------------------------------------------------------------------
# PSR, expected maximum Sharpe, DSR
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sr", "t", "skew", "kurt", "bench"),
    [
        (0.1, 100, -0.5, 4.0, 0.05),
        (0.1, 100, 0.0, 3.0, 0.0),  # normal returns: the denominator is 1 + SR²/2 (Lo 2002)
        (-0.05, 250, 1.0, 9.0, 0.0),
    ],
)
def test_psr_matches_formula(sr, t, skew, kurt, bench) -> None:
    spread = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr
    expected = phi((sr - bench) * math.sqrt(t - 1) / math.sqrt(spread))
    assert probabilistic_sharpe_ratio(sr, t, skew, kurt, bench) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("sr", "t", "skew", "kurt"),
    [
        (0.1, 1, 0.0, 3.0),  # T < 2
        (0.1, 0, 0.0, 3.0),
        (0.5, 100, 10.0, 3.0),  # 1 - 5 + 0.125 < 0
        (math.nan, 100, 0.0, 3.0),
        (0.1, 100, math.inf, 3.0),
    ],
)
def test_psr_undefined(sr, t, skew, kurt) -> None:
    assert probabilistic_sharpe_ratio(sr, t, skew, kurt) is None


def test_expected_max_sharpe_matches_formula() -> None:
    n, v = 10, 0.0004
    expected = math.sqrt(v) * ((1 - GAMMA) * INV(1 - 1 / n) + GAMMA * INV(1 - 1 / (n * math.e)))
    assert expected_max_sharpe(n, v) == pytest.approx(expected, rel=1e-12)
    # An effective (non-integer) number of trials is allowed.
    n2 = 7.5
    expected2 = math.sqrt(v) * ((1 - GAMMA) * INV(1 - 1 / n2) + GAMMA * INV(1 - 1 / (n2 * math.e)))
    assert expected_max_sharpe(n2, v) == pytest.approx(expected2, rel=1e-12)


def test_dsr_reproduces_the_papers_example() -> None:
    """Bailey & López de Prado (2014), numerical example: 100 trials, V = 1/2 annualised, 1,250 daily
    returns, annualised SR 2.5, skewness -3, kurtosis 10 -> SR0 ≈ 0.1132 (daily) and DSR ≈ 0.9004."""
    sr0 = expected_max_sharpe(100, 0.5 / 250)
    assert sr0 is not None
    assert round(sr0, 4) == 0.1132
    dsr = probabilistic_sharpe_ratio(2.5 / math.sqrt(250), 1250, -3.0, 10.0, sr0)
    assert dsr is not None
    assert round(dsr, 4) == 0.9004


def test_expected_max_sharpe_grows_with_trials() -> None:
    maybe = [expected_max_sharpe(n, 0.001) for n in (2, 5, 10, 100, 1000, 10_000)]
    values = [v for v in maybe if v is not None]
    assert len(values) == len(maybe)
    assert values == sorted(values)
    assert len(set(values)) == len(values)


@pytest.mark.parametrize(
    ("n", "v"),
    [(1, 0.001), (1.9, 0.001), (0, 0.001), (10, 0.0), (10, -0.001), (math.nan, 0.001), (10, math.inf)],
)
def test_expected_max_sharpe_undefined(n, v) -> None:
    assert expected_max_sharpe(n, v) is None


def test_deflated_sharpe_ratio_end_to_end_by_hand() -> None:
    r = [0.02, -0.01, 0.03, 0.01, -0.02, 0.04]
    mean, std, skew, kurt = moments(r)
    sr = mean / std
    trials = [sr, 0.1, -0.05, None]  # the None trial counts in N but not in V
    defined = [sr, 0.1, -0.05]
    mu = sum(defined) / 3
    v = sum((x - mu) ** 2 for x in defined) / 2
    n = 4
    sr0 = math.sqrt(v) * ((1 - GAMMA) * INV(1 - 1 / n) + GAMMA * INV(1 - 1 / (n * math.e)))
    spread = 1 - skew * sr + (kurt - 1) / 4 * sr**2
    dsr = phi((sr - sr0) * math.sqrt(len(r) - 1) / math.sqrt(spread))
    psr = phi(sr * math.sqrt(len(r) - 1) / math.sqrt(spread))

    d = deflated_sharpe_ratio(r, trials)
    assert d.n_trials == 4 and d.n_obs == 6
    assert d.sharpe == pytest.approx(sr, rel=1e-12)
    assert d.trial_sharpe_variance == pytest.approx(v, rel=1e-12)
    assert d.expected_max_sharpe == pytest.approx(sr0, rel=1e-12)
    assert d.dsr == pytest.approx(dsr, rel=1e-12)
    assert d.psr == pytest.approx(psr, rel=1e-12)
    assert d.reason is None
    assert d.dsr is not None and d.psr is not None
    assert d.dsr < d.psr  # SR0 > 0 here: beating the best of 4 trials is harder than beating 0

    # An effective number of trials replaces the count in SR0 (and only there).
    e = deflated_sharpe_ratio(r, trials, n_trials=2.5)
    sr0_e = math.sqrt(v) * ((1 - GAMMA) * INV(1 - 1 / 2.5) + GAMMA * INV(1 - 1 / (2.5 * math.e)))
    assert e.n_trials == 2.5
    assert e.expected_max_sharpe == pytest.approx(sr0_e, rel=1e-12)
    assert e.dsr == pytest.approx(phi((sr - sr0_e) * math.sqrt(5) / math.sqrt(spread)), rel=1e-12)


@pytest.mark.parametrize(
    ("returns", "trials", "n_trials", "reason"),
    [
        ([0.01], [0.1, 0.2], None, "fewer than 2 returns"),
        ([0.01, 0.01, 0.01], [0.1, 0.2], None, "zero variance: the Sharpe ratio"),
        ([0.01, -0.02, 0.03], [0.1], None, "fewer than 2 trials"),
        ([0.01, -0.02, 0.03], [0.1, 0.2], 1.5, "fewer than 2 trials"),
        ([0.01, -0.02, 0.03], [0.1, None, math.nan], None, "fewer than 2 trials with a defined"),
        ([0.01, -0.02, 0.03], [0.1, 0.1, 0.1], None, "Sharpe ratios have zero variance"),
    ],
)
def test_deflated_sharpe_ratio_undefined_says_why(returns, trials, n_trials, reason) -> None:
    d = deflated_sharpe_ratio(returns, trials, n_trials=n_trials)
    assert d.dsr is None
    assert d.reason is not None and reason in d.reason


@pytest.mark.parametrize("bad", [0.0, -3.0, math.nan, math.inf])
def test_deflated_sharpe_ratio_rejects_bad_effective_trials(bad) -> None:
    with pytest.raises(ValueError, match="n_trials"):
        deflated_sharpe_ratio([0.01, 0.02, -0.01], [0.1, 0.2], n_trials=bad)


# --------------------------------------------------------------------------------------------------
# PBO by CSCV
# --------------------------------------------------------------------------------------------------


def test_pbo_of_a_winner_that_reverses_out_of_sample() -> None:
    # Two blocks of two rows. Trial 0 wins block A and is worst in B; trial 2 the reverse.
    m = [
        [1.0, 0.0, -1.0],
        [1.0, 0.0, -1.0],
        [-1.0, 0.0, 1.0],
        [-1.0, 0.0, 1.0],
    ]
    res = probability_of_backtest_overfitting(m, n_blocks=2, metric="mean")
    # IS=A: winner trial 0, OOS rank 1 of 3 -> ω = 1/4, λ = ln(1/3); IS=B: trial 2, same.
    assert res.n_combinations == 2 and res.n_blocks == 2 and res.n_trials == 3
    assert res.logits == pytest.approx((math.log(1 / 3), math.log(1 / 3)))
    assert res.pbo == 1.0
    assert res.is_metric == (1.0, 1.0) and res.oos_metric == (-1.0, -1.0)
    assert res.prob_oos_loss == 1.0
    assert res.degradation_slope is None  # no spread in the in-sample metric


def test_pbo_of_a_winner_that_holds_out_of_sample() -> None:
    m = [
        [2.0, 0.0, -1.0],
        [1.0, 0.5, -1.0],
        [1.0, 0.0, -1.0],
        [3.0, 0.0, -2.0],
    ]
    res = probability_of_backtest_overfitting(m, n_blocks=2, metric="mean")
    # Trial 0 is best in both blocks: OOS rank 3 of 3 -> ω = 3/4, λ = ln 3.
    assert res.logits == pytest.approx((math.log(3), math.log(3)))
    assert res.pbo == 0.0
    assert res.is_metric == pytest.approx((1.5, 2.0)) and res.oos_metric == pytest.approx((2.0, 1.5))
    assert res.prob_oos_loss == 0.0
    # Two pairs (1.5, 2.0), (2.0, 1.5): slope -1, intercept 3.5.
    assert res.degradation_slope == pytest.approx(-1.0)
    assert res.degradation_intercept == pytest.approx(3.5)


def test_pbo_ties_take_the_average_rank_and_count_as_overfit() -> None:
    # Every trial identical out of sample: rank (N + 1) / 2, ω = 1/2, λ = 0, which counts (λ <= 0).
    m = [
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
    ]
    res = probability_of_backtest_overfitting(m, n_blocks=2, metric="mean")
    # IS = row 0: trial 0 wins (1.0), OOS row 1 all tied -> λ = 0. IS = row 1: all tied at 0, the lowest
    # index (trial 0) is taken; OOS row 0: trial 0 is best -> rank 4 of 4, ω = 4/5, λ = ln 4.
    assert res.logits == pytest.approx((0.0, math.log(4)))
    assert res.pbo == 0.5


def _ref_pbo(m: np.ndarray, n_blocks: int, metric: str) -> tuple[list[float], list, list, float]:
    """A slow, loop-by-loop CSCV straight from the paper, for comparison: (logits, is, oos, pbo)."""
    t, n = m.shape
    q, extra = divmod(t, n_blocks)
    sizes = [q + 1] * extra + [q] * (n_blocks - extra)
    starts = [sum(sizes[:b]) for b in range(n_blocks)]
    blocks = [list(range(starts[b], starts[b] + sizes[b])) for b in range(n_blocks)]

    def score(rows: list[int], j: int) -> float | None:
        xs = [float(m[r, j]) for r in rows]
        mean = st.fmean(xs)
        if metric == "mean":
            return mean
        if len(xs) < 2:
            return None
        sd = st.stdev(xs)
        return None if sd == 0 or sd <= 1e-9 * abs(mean) else mean / sd

    logits, is_best, oos_best, overfit = [], [], [], 0
    for combo in itertools.combinations(range(n_blocks), n_blocks // 2):
        is_rows = [r for b in combo for r in blocks[b]]
        oos_rows = [r for b in range(n_blocks) if b not in combo for r in blocks[b]]
        is_vals = [score(is_rows, j) for j in range(n)]
        oos_vals = [score(oos_rows, j) for j in range(n)]
        is_key = [-math.inf if v is None else v for v in is_vals]
        oos_key = [-math.inf if v is None else v for v in oos_vals]
        best = is_key.index(max(is_key))
        chosen = oos_key[best]
        rank = sum(v < chosen for v in oos_key) + (sum(v == chosen for v in oos_key) + 1) / 2
        omega = rank / (n + 1)
        logits.append(math.log(omega / (1 - omega)))
        is_best.append(is_vals[best])
        oos_best.append(oos_vals[best])
        overfit += rank <= (n + 1) / 2
    return logits, is_best, oos_best, overfit / len(logits)


@pytest.mark.parametrize(
    ("seed", "t", "n", "n_blocks", "metric"),
    [
        (1, 40, 5, 4, "sharpe"),
        (2, 41, 6, 6, "sharpe"),  # 41 rows: uneven blocks
        (3, 30, 4, 6, "mean"),
        (4, 16, 3, 8, "sharpe"),  # two rows per block
        (5, 57, 8, 10, "sharpe"),
    ],
)
def test_pbo_matches_a_brute_force_reference(seed, t, n, n_blocks, metric) -> None:
    rng = np.random.default_rng(seed)
    m = rng.normal(0.001, 0.01, size=(t, n))
    m[:, 1] = 0.0  # a trial that never trades: undefined Sharpe, ranks last
    logits, is_best, oos_best, pbo = _ref_pbo(m, n_blocks, metric)
    res = probability_of_backtest_overfitting(m, n_blocks=n_blocks, metric=metric)
    assert res.n_combinations == math.comb(n_blocks, n_blocks // 2) == len(logits)
    assert res.logits == pytest.approx(logits, rel=1e-9, abs=1e-12)
    assert res.is_metric == pytest.approx(is_best, rel=1e-9)
    assert res.oos_metric == pytest.approx(oos_best, rel=1e-9)
    assert res.pbo == pbo
    defined = [(x, y) for x, y in zip(is_best, oos_best, strict=True) if x is not None and y is not None]
    slope, intercept = st.linear_regression([x for x, _ in defined], [y for _, y in defined])
    assert res.degradation_slope == pytest.approx(slope, rel=1e-6)
    assert res.degradation_intercept == pytest.approx(intercept, rel=1e-6, abs=1e-12)
    assert res.prob_oos_loss == pytest.approx(sum(y < 0 for _, y in defined) / len(defined))


def test_pbo_with_a_metric_function_agrees_with_the_built_in_one() -> None:
    rng = np.random.default_rng(11)
    m = rng.normal(0.0, 0.01, size=(48, 7))
    built_in = probability_of_backtest_overfitting(m, n_blocks=6, metric="mean")
    by_fn = probability_of_backtest_overfitting(m, n_blocks=6, metric=lambda rows: rows.mean(axis=0))
    assert by_fn.logits == pytest.approx(built_in.logits)
    assert by_fn.pbo == built_in.pbo


@pytest.mark.parametrize(
    ("matrix", "kwargs", "message"),
    [
        (np.zeros(20), {}, "2-D"),
        (np.zeros((20, 1)), {"n_blocks": 2}, "at least 2 trials"),
        (np.zeros((20, 3)), {"n_blocks": 5}, "even integer"),
        (np.zeros((20, 3)), {"n_blocks": 0}, "even integer"),
        (np.zeros((40, 3)), {"n_blocks": 18}, "at most 16"),
        (np.zeros((7, 3)), {"n_blocks": 8}, "one row per block"),
        (np.full((20, 3), math.nan), {"n_blocks": 4}, "finite"),
        (np.zeros((20, 3)), {"n_blocks": 4, "metric": "sortino"}, "metric must be"),
        (np.zeros((20, 3)), {"n_blocks": 4, "metric": lambda rows: rows.mean()}, "one value per trial"),
    ],
)
def test_pbo_rejects_inputs_that_cannot_work(matrix, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        probability_of_backtest_overfitting(matrix, **kwargs)


def _random_strategies(seed: int, bars: int = 2000, trials: int = 200, hold: int = 20) -> np.ndarray:
    """Returns of random long/flat/short strategies on a random walk: no trial has an edge."""
    rng = np.random.default_rng(seed)
    market = rng.normal(0.0, 0.01, bars)
    position = rng.integers(-1, 2, size=(bars // hold + 1, trials)).repeat(hold, axis=0)[:bars]
    return position * market[:, None]


def _best(m: np.ndarray) -> tuple[int, list[float | None]]:
    sharpes = [sharpe_stats(m[:, j]).sharpe for j in range(m.shape[1])]
    keys = [-math.inf if s is None else s for s in sharpes]
    best = keys.index(max(keys))
    return best, sharpes


def test_the_best_of_many_random_strategies_is_not_credible() -> None:
    m = _random_strategies(seed=0)
    best, sharpes = _best(m)
    best_sharpe = sharpes[best]
    assert best_sharpe is not None
    # In sample it looks good (0.04 per bar is 0.76 annualised on daily bars, 3.7 on hourly ones), and
    # its PSR, which ignores that it was picked from 200, is above 0.95.
    assert best_sharpe > 0.04
    d = deflated_sharpe_ratio(m[:, best], sharpes)
    assert d.psr is not None and d.psr > 0.95
    assert d.dsr is not None and d.dsr < DSR_CREDIBLE
    res = probability_of_backtest_overfitting(m, n_blocks=16)
    assert res.pbo >= 0.5  # seed 0; across seeds see the next test
    v = verdict(dsr=d.dsr, pbo=res.pbo, n_trials=m.shape[1])
    assert v.level != "credible"
    assert v.level == "likely_overfit"


def test_pbo_of_pure_noise_is_a_coin_flip_on_average() -> None:
    """Over many independent noise data sets, the in-sample winner is below the OOS median half the time
    (one data set alone can land far from 0.5: the combinations share its luck)."""
    pbos = []
    for seed in range(300):
        m = np.random.default_rng(seed).normal(0.0, 1.0, size=(160, 20))
        pbos.append(probability_of_backtest_overfitting(m, n_blocks=8).pbo)
    # Standard error of the mean is about 0.011 here: 0.5 ± 0.05 is over 4 standard errors.
    assert abs(st.fmean(pbos) - 0.5) < 0.05


def test_a_planted_edge_is_found_and_credible() -> None:
    m = _random_strategies(seed=3)
    rng = np.random.default_rng(103)
    m[:, 17] = rng.normal(0.002, 0.01, m.shape[0])  # per-bar Sharpe 0.2 in every block
    best, sharpes = _best(m)
    assert best == 17
    d = deflated_sharpe_ratio(m[:, best], sharpes)
    assert d.dsr is not None and d.dsr >= DSR_CREDIBLE
    res = probability_of_backtest_overfitting(m, n_blocks=16)
    assert res.pbo <= 0.1
    assert res.prob_oos_loss is not None and res.prob_oos_loss <= 0.1
    assert verdict(dsr=d.dsr, pbo=res.pbo, n_trials=m.shape[1]).level == "credible"


def test_pbo_is_vectorised() -> None:
    m = np.random.default_rng(5).normal(0.0, 0.01, size=(5000, 200))
    start = time.perf_counter()
    res = probability_of_backtest_overfitting(m, n_blocks=16)
    elapsed = time.perf_counter() - start
    assert res.n_combinations == 12_870
    # About 0.1 s on one core; a loop over combinations and rows would take minutes. Generous for CI.
    assert elapsed < 10.0


# --------------------------------------------------------------------------------------------------
# Neighbourhood
# --------------------------------------------------------------------------------------------------

GRID: dict[str, Any] = {"fast": [5, 10, 15, 20], "slow": [50, 100, 150], "stop": [0.01, 0.02]}


def _grid_trials(metric) -> list:
    return [
        ({"fast": f, "slow": s, "stop": x}, metric(f, s, x))
        for f in GRID["fast"]
        for s in GRID["slow"]
        for x in GRID["stop"]
    ]


def test_neighbourhood_of_a_plateau() -> None:
    def metric(f, s, x):
        if x != 0.02:
            return 0.1
        return 2.0 - abs(f - 10) / 10 - abs(s - 100) / 100  # peak 2.0 at (10, 100), gentle slopes

    nb = neighbourhood(_grid_trials(metric), GRID)
    assert (nb.x_param, nb.y_param) == ("fast", "slow")
    assert nb.x_values == (5, 10, 15) and nb.y_values == (50, 100, 150)
    assert (nb.winner_x, nb.winner_y, nb.winner_metric) == (1, 1, 2.0)
    # z[row = slow][col = fast], other parameter (stop) at the winner's 0.02.
    assert nb.z == ((1.0, 1.5, 1.0), (1.5, 2.0, 1.5), (1.0, 1.5, 1.0))  # exact in binary floats
    neighbours = [1.0, 1.5, 1.0, 1.5, 1.5, 1.0, 1.5, 1.0]
    assert nb.n_cells == 8 and nb.n_neighbours == 8
    assert nb.mean_ratio == pytest.approx(sum(neighbours) / 8 / 2.0)  # 0.625
    assert nb.min_ratio == pytest.approx(0.5)
    assert nb.shape == "plateau"


def test_neighbourhood_of_a_spike() -> None:
    def metric(f, s, x):
        return 2.0 if (f, s, x) == (10, 100, 0.02) else 0.1

    nb = neighbourhood(_grid_trials(metric), GRID)
    assert nb.mean_ratio == pytest.approx(0.05) and nb.min_ratio == pytest.approx(0.05)
    assert nb.shape == "spike"


def test_one_losing_neighbour_makes_a_spike_even_with_a_high_mean() -> None:
    def metric(f, s, x):
        if (f, s, x) == (10, 100, 0.02):
            return 1.0
        return -0.1 if (f, s) == (15, 150) else 0.9

    nb = neighbourhood(_grid_trials(metric), GRID)
    assert nb.mean_ratio == pytest.approx((7 * 0.9 - 0.1) / 8)  # 0.775 >= 0.5
    assert nb.min_ratio == pytest.approx(-0.1)
    assert nb.shape == "spike"


@pytest.mark.parametrize(
    ("around", "shape", "mean_ratio", "min_ratio"),
    [(0.12, "plateau", 0.1 / 0.12, 0.1 / 0.12), (0.4, "spike", 0.25, 0.25)],
    ids=["plateau", "spike"],
)
def test_a_lower_is_better_metric_has_its_winner_at_the_lowest_and_ratios_the_other_way(
    around: float, shape: str, mean_ratio: float, min_ratio: float
) -> None:
    def drawdown(f, s, x):
        return 0.1 if (f, s, x) == (10, 100, 0.02) else around

    nb = neighbourhood(_grid_trials(drawdown), GRID, lower_is_better=True)
    assert (nb.x_values[nb.winner_x], nb.y_values[nb.winner_y], nb.winner_metric) == (10, 100, 0.1)
    assert nb.z[nb.winner_y][nb.winner_x] == 0.1 and nb.z[0][0] == around, "z holds the metric itself"
    assert nb.mean_ratio == pytest.approx(mean_ratio) and nb.min_ratio == pytest.approx(min_ratio)
    assert nb.shape == shape
    higher = neighbourhood(_grid_trials(drawdown), GRID)
    assert higher.winner_metric == around, "read as higher-is-better, the worst drawdown would win"


def test_neighbourhood_missing_cells_edges_and_other_parameters() -> None:
    trials = [
        ({"fast": 5, "slow": 50, "stop": 0.02}, 1.0),  # the winner, at both grids' start
        ({"fast": 10, "slow": 50, "stop": 0.02}, 0.8),
        ({"fast": 10, "slow": 50, "stop": 0.02}, 0.6),  # same cell twice: the mean, 0.7
        ({"fast": 5, "slow": 100, "stop": 0.01}, 0.9),  # another stop: not this neighbourhood
        ({"fast": 5, "slow": 100, "stop": 0.02}, None),  # undefined metric: skipped
    ]
    nb = neighbourhood(trials, GRID, k=1)
    assert nb.x_values == (5, 10) and nb.y_values == (50, 100)  # cut at the grids' starts
    assert nb.z[0] == pytest.approx((1.0, 0.7)) and nb.z[1] == (None, None)
    assert (nb.winner_x, nb.winner_y) == (0, 0)
    assert nb.n_cells == 3 and nb.n_neighbours == 1
    assert nb.mean_ratio == pytest.approx(0.7) and nb.min_ratio == pytest.approx(0.7)
    assert nb.shape == "undetermined"  # one neighbour cannot tell a plateau from a spike


def test_neighbourhood_with_steps_k_two_and_chosen_axes() -> None:
    space: dict[str, Any] = {"period": 2, "band": 0.1, "mode": ["a", "b"]}
    trials = [
        ({"period": p, "band": b, "mode": "a"}, 1.0 - 0.01 * p) for p in (10, 12, 14) for b in (0.2, 0.3)
    ]
    # 0.1 + 0.2 is 0.30000000000000004 in floats: still the 0.3 column.
    trials.append(({"period": 8, "band": 0.1 + 0.2, "mode": "a"}, 1.0))
    nb = neighbourhood(trials, space, axes=("band", "period"), k=2)
    assert nb.x_param == "band" and nb.y_param == "period"
    assert nb.x_values == pytest.approx((0.1, 0.2, 0.3, 0.4, 0.5))
    assert nb.y_values == (4, 6, 8, 10, 12)  # winner period 8 ± 2·2, ints stay ints
    assert all(isinstance(p, int) for p in nb.y_values)
    assert (nb.winner_x, nb.winner_y) == (2, 2)
    assert nb.z[2][2] == 1.0
    assert nb.z[3] == pytest.approx((None, 0.9, 0.9, None, None))  # period 10
    assert nb.z[4] == pytest.approx((None, 0.88, 0.88, None, None))  # period 12
    assert nb.n_cells == 24 and nb.n_neighbours == 4
    assert nb.mean_ratio == pytest.approx((0.9 + 0.9 + 0.88 + 0.88) / 4)
    assert nb.shape == "plateau"


def test_neighbourhood_of_one_parameter() -> None:
    trials = [({"n": n}, m) for n, m in [(1, 0.2), (2, 0.5), (3, 1.0), (4, 0.4), (5, 0.9)]]
    nb = neighbourhood(trials, {"n": [1, 2, 3, 4, 5]})
    assert nb.y_param is None and nb.y_values == (None,)
    assert nb.x_values == (2, 3, 4) and nb.z == ((0.5, 1.0, 0.4),)
    assert nb.mean_ratio == pytest.approx(0.45) and nb.min_ratio == pytest.approx(0.4)
    assert nb.shape == "spike"


def test_neighbourhood_of_a_losing_winner_is_undetermined() -> None:
    trials = [({"n": n}, m) for n, m in [(1, -0.2), (2, -0.1), (3, -0.3)]]
    nb = neighbourhood(trials, {"n": 1})
    assert nb.winner_metric == -0.1
    assert nb.mean_ratio is None and nb.min_ratio is None
    assert nb.shape == "undetermined"


@pytest.mark.parametrize(
    ("trials", "space", "kwargs", "message"),
    [
        ([({"a": 1}, None)], {"a": [1]}, {}, "no trial has a defined metric"),
        ([], {"a": [1]}, {}, "no trial"),
        ([({"a": 1}, 1.0)], {"a": [1]}, {"axes": ("b",)}, "not a parameter"),
        ([({"a": 1}, 1.0)], {"a": [1]}, {"axes": ("a", "a")}, "distinct"),
        ([({"a": 1}, 1.0)], {}, {}, "one or two"),
        ([({"a": 7}, 1.0)], {"a": [1, 2]}, {}, "not on its grid"),
        ([({"a": 1}, 1.0)], {"a": [1]}, {"k": 0}, "k must be"),
        ([({"a": "x"}, 1.0)], {"a": "xyz"}, {}, "list of values or a step"),
        ([({"a": 1}, 1.0)], {"a": 0}, {}, "step must be a number > 0"),
        ([({"a": "x"}, 1.0)], {"a": 1}, {}, "not a number"),
        ([({"b": 1}, 1.0)], {"a": [1]}, {}, "no value for parameter"),
    ],
)
def test_neighbourhood_rejects_unusable_input(trials, space, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        neighbourhood(trials, space, **kwargs)


# --------------------------------------------------------------------------------------------------
# Spread
# --------------------------------------------------------------------------------------------------


def test_trial_spread_by_hand() -> None:
    s = trial_spread([3.0, 1.0, None, 4.0, 2.0, math.nan])
    assert (s.count, s.n_undefined) == (4, 2)
    assert (s.best, s.worst) == (4.0, 1.0)
    # Sorted 1, 2, 3, 4; linear interpolation at positions 0.25·3 = 0.75, 1.5, 2.25.
    assert (s.q1, s.median, s.q3) == pytest.approx((1.75, 2.5, 3.25))
    assert s.mean == pytest.approx(2.5)
    assert s.std == pytest.approx(math.sqrt((1.5**2 + 0.5**2 + 0.5**2 + 1.5**2) / 3))


def test_trial_spread_of_too_few_values() -> None:
    assert trial_spread([None]).count == 0 and trial_spread([None]).best is None
    assert trial_spread([None]).n_undefined == 1
    one = trial_spread([0.3])
    assert (one.best, one.median, one.std) == (0.3, 0.3, None)


# --------------------------------------------------------------------------------------------------
# Verdict
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dsr", "pbo", "shape", "oos", "level"),
    [
        (0.99, 0.05, None, None, "credible"),
        (0.99, 0.05, "plateau", 0.02, "credible"),
        (0.99, 0.05, "undetermined", None, "credible"),
        (0.95, PBO_CREDIBLE, None, None, "credible"),  # both boundaries pass
        (0.99, 0.05, "spike", None, "doubtful"),
        (0.9499, 0.05, None, None, "doubtful"),
        (0.5, 0.05, None, None, "doubtful"),
        (None, 0.05, None, None, "doubtful"),
        (0.99, 0.26, None, None, "doubtful"),
        (0.99, 0.5, None, None, "doubtful"),
        (0.99, None, None, None, "doubtful"),
        (0.99, 0.05, None, math.nan, "doubtful"),
        (0.49, 0.05, None, None, "likely_overfit"),
        (0.99, 0.51, "plateau", 0.02, "likely_overfit"),
        (0.99, 0.05, None, 0.0, "likely_overfit"),
        (0.99, 0.05, "plateau", -0.01, "likely_overfit"),
    ],
)
def test_verdict_levels(dsr, pbo, shape, oos, level) -> None:
    v = verdict(dsr=dsr, pbo=pbo, n_trials=50, neighbourhood_shape=shape, oos_sharpe=oos)
    assert v.level == level
    # One sentence for the trials, DSR and PBO, plus one per optional piece of evidence given.
    assert len(v.reasons) == 3 + (shape is not None) + (oos is not None)
    assert "50 trials" in v.reasons[0]


def test_verdict_sentences_carry_the_numbers() -> None:
    v = verdict(dsr=0.42, pbo=0.63, n_trials=200, oos_sharpe=-0.012)
    text = " ".join(v.reasons)
    assert "0.42" in text and "63%" in text and "-0.012" in text and "200" in text


def test_verdict_of_a_single_trial_and_bad_counts() -> None:
    assert "one trial" in verdict(dsr=None, pbo=None, n_trials=1).reasons[0]
    for bad in (0, -1, True):
        with pytest.raises(ValueError, match="n_trials"):
            verdict(dsr=0.99, pbo=0.1, n_trials=bad)
