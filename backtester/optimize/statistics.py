"""Statistics every strategy-optimisation result carries, so a lucky winner cannot pass for a real edge.

Pure functions, no I/O: Sharpe moments (``sharpe_stats``), the probabilistic and deflated Sharpe ratios
(``probabilistic_sharpe_ratio``, ``expected_max_sharpe``, ``deflated_sharpe_ratio``), the probability of
backtest overfitting by combinatorially symmetric cross-validation (``probability_of_backtest_overfitting``),
the robustness of the winner's parameter neighbourhood (``neighbourhood``), the spread of the trials'
results (``trial_spread``) and the plain-words ``verdict`` built from them.

Conventions:

* Sharpe ratios are **per period** (per bar): ``mean(r) / std(r, ddof=1)``, risk-free rate 0, never
  annualised. The PSR/DSR formulas are in per-observation units (T is the number of returns); feeding them
  an annualised Sharpe ratio would be wrong. Multiply by ``sqrt(bars per year)`` only to display a number.
* Skewness ``γ3 = m3 / m2**1.5`` and kurtosis ``γ4 = m4 / m2**2`` use the population central moments
  ``m_k = mean((r - mean(r))**k)`` (the estimators of Bailey & López de Prado; scipy's ``skew(bias=True)``
  and ``kurtosis(fisher=False, bias=True)``). Kurtosis is **non-excess**: a normal distribution has 3.
* A statistic that is undefined for its input is None, never a huge or made-up number. Input that can
  never work (wrong shape, non-finite numbers, impossible settings) raises ValueError.
* A standard deviation at or below 1e-9 of |mean| is float noise of a constant series and counts as zero
  (the rule of ``backtester.metrics``).

References: D. Bailey, M. López de Prado (2012), "The Sharpe Ratio Efficient Frontier" (PSR); (2014), "The
Deflated Sharpe Ratio: Correcting for Selection Bias, Backtest Overfitting and Non-Normality" (DSR);
D. Bailey, J. Borwein, M. López de Prado, Q. J. Zhu (2015), "The Probability of Backtest Overfitting"
(PBO, CSCV).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "DSR_CREDIBLE",
    "DSR_OVERFIT",
    "MAX_BLOCKS",
    "MIN_NEIGHBOURS",
    "PBO_CREDIBLE",
    "PBO_OVERFIT",
    "PLATEAU_MEAN_RATIO",
    "DeflatedSharpe",
    "Neighbourhood",
    "PBOResult",
    "SharpeStats",
    "TrialSpread",
    "Verdict",
    "deflated_sharpe_ratio",
    "expected_max_sharpe",
    "neighbourhood",
    "probabilistic_sharpe_ratio",
    "probability_of_backtest_overfitting",
    "sharpe_stats",
    "trial_spread",
    "verdict",
]

FloatArray = npt.NDArray[np.float64]
# A performance metric of every trial over some rows: (rows x trials) -> (trials,), higher is better.
MetricFn = Callable[[FloatArray], FloatArray]
Shape = Literal["plateau", "spike", "undetermined"]
Level = Literal["credible", "doubtful", "likely_overfit"]

EULER_GAMMA = 0.5772156649015329  # Euler–Mascheroni constant γ of the expected-maximum formula
_NORMAL = NormalDist()
# Below this fraction of |mean|, a standard deviation is rounding noise of a constant series.
_NOISE = 1e-9

# CSCV tries every choice of n_blocks/2 of n_blocks blocks: C(16, 8) = 12,870 combinations at the cap, a
# fraction of a second vectorised; C(18, 9) = 48,620 would add little resolution for ~4x the work.
MAX_BLOCKS = 16
# Combinations evaluated at once, bounded so (combinations x trials) arrays stay near 16 MB each.
_CHUNK_CELLS = 2_000_000

# Verdict thresholds (why: see ``verdict``).
DSR_CREDIBLE = 0.95
DSR_OVERFIT = 0.5
PBO_CREDIBLE = 0.25
PBO_OVERFIT = 0.5
# Neighbourhood: a plateau keeps on average at least half the winner's metric with no neighbour at or
# below zero; fewer than MIN_NEIGHBOURS evaluated neighbours cannot tell a plateau from a spike.
PLATEAU_MEAN_RATIO = 0.5
MIN_NEIGHBOURS = 2


# --------------------------------------------------------------------------------------------------
# Sharpe moments
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SharpeStats:
    """Per-period Sharpe ratio and the moments the PSR/DSR need, of one return series.

    mean/std: None without returns / with fewer than 2. sharpe, skewness, kurtosis (non-excess): None with
    fewer than 2 returns or zero variance.
    """

    n_obs: int
    mean: float | None
    std: float | None
    sharpe: float | None
    skewness: float | None
    kurtosis: float | None


def sharpe_stats(returns: npt.ArrayLike) -> SharpeStats:
    """Sharpe ratio (ddof=1), skewness and non-excess kurtosis of per-period returns (module conventions)."""
    r = _finite_1d(returns, "returns")
    n = int(r.shape[0])
    if n == 0:
        return SharpeStats(0, None, None, None, None, None)
    mean = float(r.mean())
    if n < 2:
        return SharpeStats(n, mean, None, None, None, None)
    std = float(r.std(ddof=1))
    if _is_zero_spread(std, mean):
        return SharpeStats(n, mean, std, None, None, None)
    d = r - mean
    m2 = float(np.mean(d**2))
    m3 = float(np.mean(d**3))
    m4 = float(np.mean(d**4))
    return SharpeStats(n, mean, std, mean / std, m3 / m2**1.5, m4 / m2**2)


# --------------------------------------------------------------------------------------------------
# Probabilistic and deflated Sharpe ratios
# --------------------------------------------------------------------------------------------------


def probabilistic_sharpe_ratio(
    sharpe: float, n_obs: int, skewness: float, kurtosis: float, benchmark: float = 0.0
) -> float | None:
    """PSR: probability that the true per-period Sharpe ratio exceeds ``benchmark``, given an observed one.

    ``Φ((SR - SR_b) sqrt(T - 1) / sqrt(1 - γ3 SR + (γ4 - 1) / 4 SR²))`` with SR the observed per-period
    Sharpe ratio over T = ``n_obs`` returns, γ3 the skewness and γ4 the non-excess kurtosis. None when
    T < 2 (no estimation error to speak of), an input is not finite, or the non-normality term under the
    root is not positive (the approximation breaks down; a number would be fake). With the moments of one
    sample that term is never negative (γ4 >= 1 + γ3² makes it a square at worst, zero only for a
    two-valued series at SR = 2/γ3); moments taken from elsewhere can make it so.
    """
    if n_obs < 2 or not all(math.isfinite(x) for x in (sharpe, skewness, kurtosis, benchmark)):
        return None
    spread = 1.0 - skewness * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if spread <= 0.0:
        return None
    return _NORMAL.cdf((sharpe - benchmark) * math.sqrt(n_obs - 1) / math.sqrt(spread))


def expected_max_sharpe(n_trials: float, sharpe_variance: float) -> float | None:
    """SR0: the expected maximum per-period Sharpe ratio of ``n_trials`` independent trials with no edge.

    ``sqrt(V) ((1 - γ) Φ⁻¹(1 - 1/N) + γ Φ⁻¹(1 - 1/(N e)))``, γ Euler–Mascheroni, V the variance of the
    trials' Sharpe ratios. ``n_trials`` may be an effective (non-integer) number of independent trials.
    None with N < 2 (no selection to deflate; the formula is an approximation for many trials), V <= 0
    (no spread among the trials: the null gives no scale), a non-finite input, or N so large that
    ``1 - 1/N`` rounds to 1.
    """
    if not (math.isfinite(n_trials) and math.isfinite(sharpe_variance)):
        return None
    if n_trials < 2 or sharpe_variance <= 0.0:
        return None
    p1, p2 = 1.0 - 1.0 / n_trials, 1.0 - 1.0 / (n_trials * math.e)
    if p1 >= 1.0 or p2 >= 1.0:
        return None
    z = (1.0 - EULER_GAMMA) * _NORMAL.inv_cdf(p1) + EULER_GAMMA * _NORMAL.inv_cdf(p2)
    return math.sqrt(sharpe_variance) * z


@dataclass(frozen=True, slots=True)
class DeflatedSharpe:
    """The deflated Sharpe ratio of a selected trial, with every input it was built from.

    sharpe, skewness, kurtosis: of the selected trial's returns (``SharpeStats``); n_obs: its T.
    n_trials: N used (effective if given, else the number of trials). trial_sharpe_variance: V, sample
    variance (ddof=1) of the trials' defined Sharpe ratios. expected_max_sharpe: SR0. psr: PSR against 0
    (ignores the selection). dsr: PSR against SR0. reason: why dsr is None (None when it is defined).
    """

    sharpe: float | None
    n_obs: int
    skewness: float | None
    kurtosis: float | None
    n_trials: float
    trial_sharpe_variance: float | None
    expected_max_sharpe: float | None
    psr: float | None
    dsr: float | None
    reason: str | None


def deflated_sharpe_ratio(
    returns: npt.ArrayLike, trial_sharpes: Sequence[float | None], *, n_trials: float | None = None
) -> DeflatedSharpe:
    """DSR of the selected trial: the PSR of its returns against SR0, the best Sharpe ratio luck would give.

    ``returns``: the selected trial's per-period returns. ``trial_sharpes``: the per-period Sharpe ratio of
    every trial tried, the selected one included; a None or non-finite entry (a trial whose Sharpe ratio
    is undefined, e.g. it never traded) still counts as a trial in N but gives no information on V.
    ``n_trials``: an effective number of independent trials (e.g. after clustering correlated trials),
    default ``len(trial_sharpes)``. Undefined results come back as None with ``reason`` saying why.
    """
    if n_trials is not None and not (math.isfinite(n_trials) and n_trials > 0):
        raise ValueError(f"n_trials must be a finite number > 0, got {n_trials!r}")
    stats = sharpe_stats(returns)
    n = float(len(trial_sharpes)) if n_trials is None else float(n_trials)
    defined = np.array([s for s in trial_sharpes if s is not None and math.isfinite(s)], dtype=np.float64)
    variance = float(defined.var(ddof=1)) if defined.shape[0] >= 2 else None
    if variance is not None and _is_zero_spread(math.sqrt(max(variance, 0.0)), float(defined.mean())):
        variance = 0.0
    sr0 = expected_max_sharpe(n, variance) if variance is not None else None
    psr = dsr = None
    if stats.sharpe is not None and stats.skewness is not None and stats.kurtosis is not None:
        psr = probabilistic_sharpe_ratio(stats.sharpe, stats.n_obs, stats.skewness, stats.kurtosis)
        if sr0 is not None:
            dsr = probabilistic_sharpe_ratio(stats.sharpe, stats.n_obs, stats.skewness, stats.kurtosis, sr0)
    reason = None
    if dsr is None:
        reason = _dsr_reason(stats, n, defined.shape[0], variance)
    return DeflatedSharpe(
        sharpe=stats.sharpe,
        n_obs=stats.n_obs,
        skewness=stats.skewness,
        kurtosis=stats.kurtosis,
        n_trials=n,
        trial_sharpe_variance=variance,
        expected_max_sharpe=sr0,
        psr=psr,
        dsr=dsr,
        reason=reason,
    )


def _dsr_reason(stats: SharpeStats, n_trials: float, n_defined: int, variance: float | None) -> str:
    """The first reason the DSR is undefined, in the order a user would fix them."""
    if stats.n_obs < 2:
        return "fewer than 2 returns: the Sharpe ratio is undefined"
    if stats.sharpe is None:
        return "the returns have zero variance: the Sharpe ratio is undefined"
    if n_trials < 2:
        return "fewer than 2 trials: there is no selection to deflate"
    if n_defined < 2:
        return "fewer than 2 trials with a defined Sharpe ratio: their variance is unknown"
    if variance is not None and variance <= 0.0:
        return "the trials' Sharpe ratios have zero variance: the expected maximum has no scale"
    return "the non-normality term 1 - γ3·SR + (γ4-1)/4·SR² is not positive: the approximation fails"


# --------------------------------------------------------------------------------------------------
# Probability of backtest overfitting (CSCV)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PBOResult:
    """Combinatorially symmetric cross-validation of N trials over S blocks.

    pbo: fraction of combinations whose in-sample winner ranks at or below the out-of-sample median
    (logit <= 0). logits: ``ln(ω / (1 - ω))`` per combination, ω = OOS rank / (N + 1). is_metric /
    oos_metric: the in-sample winner's metric in and out of sample per combination (None where undefined),
    the "performance degradation" pairs. degradation_slope / _intercept: least squares fit
    ``oos = intercept + slope * is`` over the defined pairs (None with fewer than 2 or no spread in is); a
    slope at or below zero means a better in-sample score does not buy a better out-of-sample one.
    prob_oos_loss: fraction of defined out-of-sample metrics below 0 (None when none is defined).
    """

    pbo: float
    n_combinations: int
    n_blocks: int
    n_trials: int
    logits: tuple[float, ...]
    is_metric: tuple[float | None, ...]
    oos_metric: tuple[float | None, ...]
    degradation_slope: float | None
    degradation_intercept: float | None
    prob_oos_loss: float | None


def probability_of_backtest_overfitting(
    performance: npt.ArrayLike,
    *,
    n_blocks: int = 16,
    metric: Literal["sharpe", "mean"] | MetricFn = "sharpe",
) -> PBOResult:
    """PBO of choosing the best of N trials, by CSCV (Bailey, Borwein, López de Prado, Zhu 2015).

    ``performance``: T x N per-period returns, one column per trial, rows in time order. The rows are cut
    into ``n_blocks`` (S) contiguous blocks of near-equal size (``np.array_split``: the first T mod S
    blocks get one row more; no row is dropped). For each of the C(S, S/2) choices of S/2 blocks as
    in-sample (the other S/2 out-of-sample), the trial with the best in-sample metric is selected (ties:
    the lowest column index) and ranked among all trials out of sample.

    Ranking: 1 = worst .. N = best, ties get their average rank (so all N tied rank (N + 1) / 2 and count
    as overfit: the winner is no better than the median). An undefined metric (e.g. a Sharpe ratio of a
    half with zero variance) ranks below every defined one.

    ``metric``: "sharpe" (per-period, ddof=1; module conventions), "mean" (mean return; the same ranking
    as total return, as every trial has the same rows), or a function (rows x N) -> (N,), higher better
    (evaluated once per half: slower). ValueError when the input cannot work: not 2-D or not finite,
    N < 2, S odd, S < 2 or S > MAX_BLOCKS, T < S.
    """
    m = np.asarray(performance, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"performance must be a 2-D (rows x trials) matrix, got {m.ndim} dimension(s)")
    n_rows, n_trials = m.shape
    if n_trials < 2:
        raise ValueError(f"PBO compares trials: need at least 2 trials (columns), got {n_trials}")
    if isinstance(n_blocks, bool) or not isinstance(n_blocks, int) or n_blocks < 2 or n_blocks % 2:
        raise ValueError(f"n_blocks must be an even integer >= 2, got {n_blocks!r}")
    if n_blocks > MAX_BLOCKS:
        raise ValueError(
            f"n_blocks must be at most {MAX_BLOCKS} (C({MAX_BLOCKS}, {MAX_BLOCKS // 2}) combinations), "
            f"got {n_blocks}"
        )
    if n_rows < n_blocks:
        raise ValueError(f"need at least one row per block: {n_rows} rows for {n_blocks} blocks")
    if not np.isfinite(m).all():
        raise ValueError("performance must be finite (no NaN or infinity)")
    if isinstance(metric, str) and metric not in ("sharpe", "mean"):
        raise ValueError(f"metric must be 'sharpe', 'mean' or a function, got {metric!r}")

    sizes = np.array([len(b) for b in np.array_split(np.arange(n_rows), n_blocks)])
    in_sample = _in_sample_masks(n_blocks)
    n_comb = in_sample.shape[0]
    chunk = max(1, _CHUNK_CELLS // n_trials)
    logits, is_sel, oos_sel = [], [], []
    for lo in range(0, n_comb, chunk):
        mask = in_sample[lo : lo + chunk]
        if callable(metric):
            is_vals, oos_vals = _metric_by_function(m, sizes, mask, metric)
        else:
            is_vals, oos_vals = _metric_by_blocks(m, sizes, mask, metric)
        lg, i_s, o_s = _select_and_rank(is_vals, oos_vals)
        logits.append(lg)
        is_sel.append(i_s)
        oos_sel.append(o_s)
    logit = np.concatenate(logits)
    is_best, oos_best = np.concatenate(is_sel), np.concatenate(oos_sel)
    slope, intercept = _degradation_fit(is_best, oos_best)
    oos_defined = oos_best[np.isfinite(oos_best)]
    return PBOResult(
        # logit <= 0  <=>  rank <= (N + 1) / 2; the logits are exact at 0 (ω = 0.5), so compare them.
        pbo=float(np.mean(logit <= 0.0)),
        n_combinations=n_comb,
        n_blocks=n_blocks,
        n_trials=n_trials,
        logits=tuple(float(x) for x in logit),
        is_metric=_optional_floats(is_best),
        oos_metric=_optional_floats(oos_best),
        degradation_slope=slope,
        degradation_intercept=intercept,
        prob_oos_loss=float(np.mean(oos_defined < 0.0)) if oos_defined.shape[0] else None,
    )


def _in_sample_masks(n_blocks: int) -> npt.NDArray[np.bool_]:
    """One row per combination of n_blocks/2 in-sample blocks: True where a block is in-sample."""
    combos = np.array(list(itertools.combinations(range(n_blocks), n_blocks // 2)), dtype=np.intp)
    mask = np.zeros((combos.shape[0], n_blocks), dtype=np.bool_)
    mask[np.arange(combos.shape[0])[:, None], combos] = True
    return mask


def _metric_by_blocks(
    m: FloatArray, sizes: npt.NDArray[np.int_], mask: npt.NDArray[np.bool_], metric: str
) -> tuple[FloatArray, FloatArray]:
    """(in-sample, out-of-sample) metric per (combination, trial), from per-block sums (no row loops).

    A half's mean and variance follow from the sums and sums of squares of its blocks; the squares are
    taken about each trial's overall mean, which leaves the variance unchanged and avoids the cancellation
    of ``sum(x²) - n·mean²`` on returns whose mean is large against their spread.
    """
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    centred = m - m.mean(axis=0)
    sums = np.add.reduceat(m, starts, axis=0)  # blocks x trials
    c_sums = np.add.reduceat(centred, starts, axis=0)
    c_squares = np.add.reduceat(centred**2, starts, axis=0)
    w_is = mask.astype(np.float64)
    halves = []
    for w in (w_is, 1.0 - w_is):
        count = (w @ sizes.astype(np.float64))[:, None]
        mean = (w @ sums) / count
        if metric == "mean":
            halves.append(mean)
            continue
        c_mean = (w @ c_sums) / count
        with np.errstate(divide="ignore", invalid="ignore"):
            var = ((w @ c_squares) - count * c_mean**2) / (count - 1.0)
            std = np.sqrt(np.where(var > 0.0, var, 0.0))
            undefined = (count < 2.0) | (var <= 0.0) | (std <= _NOISE * np.abs(mean))
            halves.append(np.where(undefined, np.nan, mean / np.where(undefined, 1.0, std)))
    return halves[0], halves[1]


def _metric_by_function(
    m: FloatArray, sizes: npt.NDArray[np.int_], mask: npt.NDArray[np.bool_], metric: MetricFn
) -> tuple[FloatArray, FloatArray]:
    """(in-sample, out-of-sample) metric per (combination, trial) by calling ``metric`` on each half."""
    block_of_row = np.repeat(np.arange(sizes.shape[0]), sizes)
    out = np.empty((2, mask.shape[0], m.shape[1]), dtype=np.float64)
    for c, row_mask in enumerate(mask):
        in_rows = row_mask[block_of_row]
        for h, rows in enumerate((in_rows, ~in_rows)):
            vals = np.asarray(metric(m[rows]), dtype=np.float64)
            if vals.shape != (m.shape[1],):
                raise ValueError(
                    f"metric must return one value per trial, shape ({m.shape[1]},): {vals.shape}"
                )
            out[h, c] = vals
    return out[0], out[1]


def _select_and_rank(is_vals: FloatArray, oos_vals: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(logit, winner's in-sample metric, winner's out-of-sample metric) per combination (ranking rules of
    ``probability_of_backtest_overfitting``)."""
    n_trials = is_vals.shape[1]
    is_key = np.where(np.isfinite(is_vals), is_vals, -np.inf)
    oos_key = np.where(np.isfinite(oos_vals), oos_vals, -np.inf)
    rows = np.arange(is_vals.shape[0])
    best = np.argmax(is_key, axis=1)  # first maximum: the lowest column index wins ties
    chosen = oos_key[rows, best][:, None]
    rank = np.sum(oos_key < chosen, axis=1) + (np.sum(oos_key == chosen, axis=1) + 1) / 2.0
    omega = rank / (n_trials + 1.0)
    return np.log(omega / (1.0 - omega)), is_vals[rows, best], oos_vals[rows, best]


def _degradation_fit(is_best: FloatArray, oos_best: FloatArray) -> tuple[float | None, float | None]:
    """Least squares (slope, intercept) of out-of-sample on in-sample metric over the defined pairs."""
    ok = np.isfinite(is_best) & np.isfinite(oos_best)
    x, y = is_best[ok], oos_best[ok]
    if x.shape[0] < 2:
        return None, None
    dx = x - x.mean()
    sxx = float(np.sum(dx**2))
    if sxx <= 0.0 or _is_zero_spread(math.sqrt(sxx / x.shape[0]), float(x.mean())):
        return None, None
    slope = float(np.sum(dx * (y - y.mean())) / sxx)
    return slope, float(y.mean() - slope * x.mean())


# --------------------------------------------------------------------------------------------------
# Neighbourhood robustness
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Neighbourhood:
    """The metric around the winner over two parameters, drawable as a heatmap, and its summary.

    x_values / y_values: the axis values (winner ± k steps; a listed grid is cut at its ends). z[i][j] is
    the metric at (x_values[j], y_values[i]) with every other parameter at the winner's value (the mean
    when several trials share a cell), None where no trial was run. One-parameter spaces: y_param is None,
    y_values is (None,) and z has one row. winner_x / winner_y: the winner's indices in x_values/y_values.
    n_cells: cells other than the winner's; n_neighbours: those with a value. mean_ratio / min_ratio: the
    neighbours' mean / minimum over the winner's metric (None when the winner's metric is <= 0, where a
    ratio means nothing, or no neighbour has a value). shape: "plateau" when mean_ratio >=
    PLATEAU_MEAN_RATIO and min_ratio > 0, "undetermined" with fewer than MIN_NEIGHBOURS neighbours or no
    ratio, else "spike".
    """

    x_param: str
    y_param: str | None
    x_values: tuple[Any, ...]
    y_values: tuple[Any, ...]
    z: tuple[tuple[float | None, ...], ...]
    winner_metric: float
    winner_x: int
    winner_y: int
    n_cells: int
    n_neighbours: int
    mean_ratio: float | None
    min_ratio: float | None
    shape: Shape


def neighbourhood(
    trials: Sequence[tuple[Mapping[str, Any], float | None]],
    space: Mapping[str, Sequence[Any] | float],
    *,
    axes: Sequence[str] | None = None,
    k: int = 1,
    winner: Mapping[str, Any] | None = None,
    lower_is_better: bool = False,
) -> Neighbourhood:
    """The winner's neighbourhood over two parameters (``axes``, default the first two of ``space``).

    ``trials``: (params, metric) per trial, higher metric better; None marks an undefined metric, skipped.
    The winner is the trial with the highest metric (ties: the first). ``space`` maps each parameter to
    the ordered list of its grid values, or to a number: the step of an int/float parameter (neighbours
    are the winner's value ± j·step, j <= k). Numbers match within a relative 1e-9, other values by ==.
    Why: a real edge degrades gracefully when a parameter moves one step; a lone peak among poor
    neighbours is what fitting noise produces. ValueError on unusable input (no defined trial, an axis
    not in ``space``, the winner's value not on its grid, k < 1).

    ``lower_is_better`` (a minimised metric, e.g. max drawdown): the winner is the lowest, and the ratios
    are the winner's metric over the neighbours' mean and maximum (1: as good; 0.5: twice as bad), None
    when the winner's metric is <= 0; z holds the metric itself either way.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    names = list(space)[:2] if axes is None else list(axes)
    if not 1 <= len(names) <= 2 or len(set(names)) != len(names):
        raise ValueError(f"axes must name one or two distinct parameters, got {names!r}")
    for name in names:
        if name not in space:
            raise ValueError(f"axis {name!r} is not a parameter of the space {sorted(space)!r}")
    defined = [(p, float(v)) for p, v in trials if v is not None and math.isfinite(v)]
    if not defined:
        raise ValueError("no trial has a defined metric: there is no winner")
    if winner is None:
        best = min if lower_is_better else max  # both keep the first of ties
        w_params, w_metric = best(defined, key=lambda t: t[1])
    else:
        # The search's own winner (chosen under its constraints): the grid centres on it even when a
        # neighbour scores higher, which is itself worth seeing.
        chosen = [(p, v) for p, v in defined if all(_same(p.get(n), winner[n]) for n in winner)]
        if not chosen:
            raise ValueError("the given winner is not among the trials with a defined metric")
        w_params, w_metric = chosen[0]
    axis_values = [_axis_values(name, space[name], w_params, k) for name in names]
    xs = axis_values[0]
    ys: list[Any] = axis_values[1] if len(names) == 2 else [None]
    cells: list[list[list[float]]] = [[[] for _ in xs] for _ in ys]
    for params, value in defined:
        if not _same_elsewhere(params, w_params, names):
            continue
        j = _index_of(params.get(names[0]), xs)
        i = _index_of(params.get(names[1]), ys) if len(names) == 2 else 0
        if i is not None and j is not None:
            cells[i][j].append(value)
    z = tuple(tuple(sum(c) / len(c) if c else None for c in row) for row in cells)
    wx = _index_of(w_params[names[0]], xs)
    wy = _index_of(w_params[names[1]], ys) if len(names) == 2 else 0
    assert wx is not None and wy is not None  # the axes are built around the winner's values
    neighbours = [
        v for i, row in enumerate(z) for j, v in enumerate(row) if (i, j) != (wy, wx) and v is not None
    ]
    mean_ratio = min_ratio = None
    if neighbours and w_metric > 0.0:
        mean = sum(neighbours) / len(neighbours)
        if not lower_is_better:
            mean_ratio, min_ratio = mean / w_metric, min(neighbours) / w_metric
        elif mean > 0.0:  # then the worst (largest) neighbour is > 0 too
            mean_ratio, min_ratio = w_metric / mean, w_metric / max(neighbours)
    shape: Shape = "undetermined"
    if mean_ratio is not None and min_ratio is not None and len(neighbours) >= MIN_NEIGHBOURS:
        shape = "plateau" if mean_ratio >= PLATEAU_MEAN_RATIO and min_ratio > 0.0 else "spike"
    return Neighbourhood(
        x_param=names[0],
        y_param=names[1] if len(names) == 2 else None,
        x_values=tuple(xs),
        y_values=tuple(ys),
        z=z,
        winner_metric=w_metric,
        winner_x=wx,
        winner_y=wy,
        n_cells=len(xs) * len(ys) - 1,
        n_neighbours=len(neighbours),
        mean_ratio=mean_ratio,
        min_ratio=min_ratio,
        shape=shape,
    )


def _axis_values(name: str, spec: Sequence[Any] | float, winner: Mapping[str, Any], k: int) -> list[Any]:
    """The values of one axis around the winner's: grid neighbours, or the winner's value ± j·step."""
    if name not in winner:
        raise ValueError(f"the winner has no value for parameter {name!r}")
    centre = winner[name]
    if isinstance(spec, str | bytes):  # a str is a Sequence, but never a grid of values
        raise ValueError(f"parameter {name!r}: a grid must be a list of values or a step, got {spec!r}")
    if isinstance(spec, Sequence):
        at = _index_of(centre, list(spec))
        if at is None:
            raise ValueError(f"the winner's {name}={centre!r} is not on its grid {list(spec)!r}")
        return list(spec[max(0, at - k) : at + k + 1])
    if isinstance(spec, bool) or not _is_number(spec) or not math.isfinite(spec) or spec <= 0:
        raise ValueError(f"parameter {name!r}: a step must be a number > 0, got {spec!r}")
    if not _is_number(centre):
        raise ValueError(f"parameter {name!r} has a step but the winner's value {centre!r} is not a number")
    if isinstance(centre, int) and isinstance(spec, int):
        return [centre + j * spec for j in range(-k, k + 1)]
    # Rounded so 0.1 + 0.2 labels as 0.3; matching is by closeness anyway.
    return [round(float(centre) + j * float(spec), 12) for j in range(-k, k + 1)]


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _same(a: object, b: object) -> bool:
    """Equality of parameter values; numbers within float noise (a stepped 0.1 * 3 is 0.3)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _index_of(value: object, values: Sequence[Any]) -> int | None:
    return next((i for i, v in enumerate(values) if _same(value, v)), None)


def _same_elsewhere(params: Mapping[str, Any], winner: Mapping[str, Any], axes: Sequence[str]) -> bool:
    """Whether ``params`` equals the winner's on every parameter but the axes."""
    if set(params) != set(winner):
        return False
    return all(_same(params[p], winner[p]) for p in winner if p not in axes)


# --------------------------------------------------------------------------------------------------
# Spread of the trials
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrialSpread:
    """The distribution of the trials' metric: a best far above the quartiles is one lucky draw.

    count: trials with a defined metric; n_undefined: the others (None or non-finite). Quartiles use
    linear interpolation between order statistics (numpy's default, Excel's QUARTILE.INC). std: sample
    standard deviation (ddof=1), None with fewer than 2. Everything else None when count is 0.
    """

    count: int
    n_undefined: int
    best: float | None
    worst: float | None
    q1: float | None
    median: float | None
    q3: float | None
    mean: float | None
    std: float | None


def trial_spread(values: Sequence[float | None]) -> TrialSpread:
    """Count, best, worst, quartiles, mean and std of the trials' metric values (higher is better)."""
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    n = int(v.shape[0])
    if n == 0:
        return TrialSpread(0, len(values), None, None, None, None, None, None, None)
    q1, med, q3 = (float(q) for q in np.percentile(v, [25.0, 50.0, 75.0]))
    return TrialSpread(
        count=n,
        n_undefined=len(values) - n,
        best=float(v.max()),
        worst=float(v.min()),
        q1=q1,
        median=med,
        q3=q3,
        mean=float(v.mean()),
        std=float(v.std(ddof=1)) if n >= 2 else None,
    )


# --------------------------------------------------------------------------------------------------
# Verdict
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    """level: "credible", "doubtful" or "likely_overfit"; reasons: one plain sentence per evidence."""

    level: Level
    reasons: tuple[str, ...]


_SEVERITY: dict[Level, int] = {"credible": 0, "doubtful": 1, "likely_overfit": 2}


def verdict(
    *,
    dsr: float | None,
    pbo: float | None,
    n_trials: int,
    neighbourhood_shape: Shape | None = None,
    oos_sharpe: float | None = None,
    windows: int | None = None,
) -> Verdict:
    """A plain-words verdict on an optimisation's winner; the level is the worst any evidence gives.

    Thresholds and why:

    * DSR >= DSR_CREDIBLE (0.95): the winner's Sharpe ratio clears the best luck gives N trials at the
      usual 5% level. DSR < DSR_OVERFIT (0.5): it is below that luck level, i.e. no better than the
      expected best of N trials with no edge -> likely overfit. In between, or undefined -> doubtful.
    * PBO > PBO_OVERFIT (0.5): the in-sample winner ranks at or below the median out of sample in most
      splits, selection does worse than a coin flip -> likely overfit. PBO <= PBO_CREDIBLE (0.25): at most
      one split in four -> credible. In between, or not measured -> doubtful.
    * neighbourhood_shape "spike" -> doubtful (a one-step parameter change loses the edge); "plateau" ->
      credible; "undetermined" is reported without changing the level; None says nothing.
    * oos_sharpe (per period, out of sample, e.g. walk-forward) <= 0 -> likely overfit (it lost or earned
      nothing on unseen data); > 0 -> credible; NaN (undefined, e.g. no trade) -> doubtful; None: not
      given.

    "credible" thus needs a DSR and a PBO that both pass, and nothing else against. ValueError when
    n_trials < 1.

    `windows` (walk-forward): the DSR and PBO given are medians over that many windows, each from a
    search of `n_trials` trials, and the sentences say so.
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ValueError(f"n_trials must be an integer >= 1, got {n_trials!r}")
    found: list[tuple[Level, str]] = []
    median = "" if windows is None else f"Median over the {windows} walk-forward windows: "
    if n_trials == 1:
        found.append(("credible", "Only one trial was run, so there was no selection to correct for."))
    else:
        whose = "The winner is" if windows is None else "Each window's winner is"
        found.append(
            (
                "credible",
                f"{whose} the best of {n_trials} trials: the more trials, the higher the Sharpe ratio luck "
                "alone can reach.",
            )
        )
    for level, sentence in (_dsr_evidence(dsr, n_trials), _pbo_evidence(pbo)):
        found.append((level, median + sentence[0].lower() + sentence[1:] if median else sentence))
    if neighbourhood_shape is not None:
        found.append(_neighbourhood_evidence(neighbourhood_shape))
    if oos_sharpe is not None:
        found.append(_oos_evidence(oos_sharpe))
    level = max((lv for lv, _ in found), key=_SEVERITY.__getitem__)
    return Verdict(level, tuple(sentence for _, sentence in found))


def _dsr_evidence(dsr: float | None, n_trials: int) -> tuple[Level, str]:
    if dsr is None or not math.isfinite(dsr):
        return "doubtful", (
            "The deflated Sharpe ratio is undefined (too few trials or returns, or no spread between the "
            "trials), so luck cannot be ruled out."
        )
    if dsr >= DSR_CREDIBLE:
        return "credible", (
            f"Deflated Sharpe ratio {dsr:.2f}: the winner's Sharpe ratio stands clear of the best that luck "
            f"alone gives {n_trials} trials."
        )
    if dsr < DSR_OVERFIT:
        return "likely_overfit", (
            f"Deflated Sharpe ratio {dsr:.2f}: the winner's Sharpe ratio is below what the best of "
            f"{n_trials} trials with no edge would typically reach."
        )
    return "doubtful", (
        f"Deflated Sharpe ratio {dsr:.2f} ({DSR_CREDIBLE} needed): after allowing for {n_trials} trials, "
        "the winner's Sharpe ratio is not clearly above what luck alone would give."
    )


def _pbo_evidence(pbo: float | None) -> tuple[Level, str]:
    if pbo is None or not math.isfinite(pbo):
        return "doubtful", "The probability of backtest overfitting was not measured."
    if pbo > PBO_OVERFIT:
        return "likely_overfit", (
            f"Probability of backtest overfitting {pbo:.0%}: in most splits of the history, the in-sample "
            "winner did no better than the median trial out of sample."
        )
    if pbo > PBO_CREDIBLE:
        return "doubtful", (
            f"Probability of backtest overfitting {pbo:.0%} ({PBO_CREDIBLE:.0%} or less wanted): the "
            "in-sample winner often falls to the median or below out of sample."
        )
    return "credible", (
        f"Probability of backtest overfitting {pbo:.0%}: the in-sample winner usually stays above the "
        "median trial out of sample."
    )


def _neighbourhood_evidence(shape: Shape) -> tuple[Level, str]:
    if shape == "spike":
        return "doubtful", (
            "The winner is a spike: neighbouring parameter values do much worse, so a small change in the "
            "market could undo it."
        )
    if shape == "plateau":
        return "credible", "The winner sits on a plateau: neighbouring parameter values do nearly as well."
    return "credible", "Too few neighbouring parameter values were tested to judge robustness."


def _oos_evidence(oos_sharpe: float) -> tuple[Level, str]:
    if not math.isfinite(oos_sharpe):
        return "doubtful", "The out-of-sample Sharpe ratio is undefined: the winner is untested on new data."
    if oos_sharpe <= 0.0:
        return "likely_overfit", (
            f"Out of sample the winner lost money or earned nothing (Sharpe ratio {oos_sharpe:.3f} per bar)."
        )
    return "credible", f"Out of sample the winner kept a positive Sharpe ratio ({oos_sharpe:.3f} per bar)."


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _finite_1d(values: npt.ArrayLike, name: str) -> FloatArray:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got {a.ndim} dimensions")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite (no NaN or infinity)")
    return a


def _is_zero_spread(std: float, mean: float) -> bool:
    """Whether a standard deviation is zero or float noise of a constant series."""
    return std <= 0.0 or std <= _NOISE * abs(mean)


def _optional_floats(a: FloatArray) -> tuple[float | None, ...]:
    return tuple(float(x) if math.isfinite(x) else None for x in a)
