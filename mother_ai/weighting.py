"""Skill weights: how much each voter's view counts, from its resolved predictions.

    w = n/(n+K) · skill + K/(n+K) · PRIOR            K = 20, PRIOR = 0.2
    skill = clip(λ, 0, 1),   λ = Σ d·(y − ½) / Σ d²,   d = prob_up − ½,   y = 1 if the realised
    return over the horizon was > 0 else 0, over the voter's distinct resolved predictions with
    d ≠ 0 (among the last SKILL_WINDOW); n is how many there are.

λ is the calibration slope: the factor that, shrinking the voter's distance from a coin flip
(p' = ½ + λ·d), minimises the Brier score of its past predictions. 1 means its probabilities were right
as stated, 0.5 that it was twice as confident as it should have been, ≤ 0 that it did no better than a
coin flip. (The Brier skill score itself is about 0.01 even for a calibrated market forecaster, so as a
weight it would rank proven voters below new ones.) A new voter (n = 0) gets w = PRIOR: small but
positive, so it can trade modestly while its predictions are recorded and resolved; with each
resolution its weight moves toward its skill.

A prediction counts once, keyed by (voter, model_version, as_of, horizon), and only the SKILL_WINDOW most
recent (by as_of) count: markets change, old skill should fade. ``calibration_of`` is the one formula;
the live tracker applies it to database rows, ``SkillBook`` to the replay's in-memory record.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from mother_ai.votes import Weight

PRIOR_WEIGHT = 0.2
SHRINK_K = 20
NULL_WEIGHT = 0.1  # the "no edge" voter that always takes part in a symbol's combined view
SKILL_WINDOW = 500  # most recent distinct resolved predictions per voter that count


class SkillLike(Protocol):
    @property
    def calibration_n(self) -> int: ...
    @property
    def calibration(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class Skill:
    calibration_n: int
    calibration: float | None


def calibration_terms(prob_up: float, realised_return: float | None) -> tuple[float, float, int]:
    """One resolved prediction's share of (Σ d·(y − ½), Σ d², n); zero when it has no direction."""
    d = float(prob_up) - 0.5
    if d == 0 or realised_return is None:
        return 0.0, 0.0, 0
    y = 1.0 if realised_return > 0 else 0.0
    return d * (y - 0.5), d * d, 1


def calibration_of(rows: Iterable[tuple[float, float | None]]) -> Skill:
    """λ and n over (prob_up, realised_return) pairs (see the module docstring)."""
    numerator = denominator = 0.0
    n = 0
    for prob_up, realised in rows:
        a, b, c = calibration_terms(prob_up, realised)
        numerator, denominator, n = numerator + a, denominator + b, n + c
    return Skill(n, numerator / denominator if denominator > 0 else None)


def weight_for(stats: SkillLike | None) -> Weight:
    """A voter's weight from its record (formula in the module docstring)."""
    n = stats.calibration_n if stats is not None else 0
    calibration = stats.calibration if stats is not None else None
    skill = min(1.0, max(0.0, calibration)) if calibration is not None else 0.0
    share = n / (n + SHRINK_K)
    value = share * skill + (1.0 - share) * PRIOR_WEIGHT
    formula = (
        f"w = n/(n+k)·skill + k/(n+k)·prior = {n}/({n}+{SHRINK_K})·{skill:.4f} "
        f"+ {SHRINK_K}/({n}+{SHRINK_K})·{PRIOR_WEIGHT} = {value:.4f}"
    )
    return Weight(value, PRIOR_WEIGHT, SHRINK_K, n, calibration, skill, formula)


def weighting_summary() -> dict[str, Any]:
    return {
        "formula": "w = n/(n+k)·clip(λ,0,1) + k/(n+k)·prior; "
        "λ = Σ(p−½)(y−½) / Σ(p−½)² over resolved predictions",
        "prior": PRIOR_WEIGHT,
        "k": SHRINK_K,
        "null_weight": NULL_WEIGHT,
        "combined": "p_s = ½ + Σw(p−½)/(W0+Σw); r_s = Σw·r/(W0+Σw); edge = r_s − round-trip cost",
    }


class SkillBook:
    """Each voter's last SKILL_WINDOW resolved predictions: the replay's record.

    Predictions must be added per voter in increasing ``as_of`` (the replay resolves them in time
    order), which makes "the most recent by as_of" the same window the live tracker's query selects."""

    def __init__(self, window: int = SKILL_WINDOW) -> None:
        self.window = window
        self._rows: dict[str, deque[tuple[float, float, int]]] = {}
        self._seen: dict[str, set[tuple[str, int, int]]] = {}

    def add(
        self, voter: str, model_version: str, as_of: int, horizon: int, prob_up: float, realised: float
    ) -> None:
        key = (model_version, int(as_of), int(horizon))
        seen = self._seen.setdefault(voter, set())
        if key in seen:
            return
        seen.add(key)
        rows = self._rows.setdefault(voter, deque())
        rows.append(calibration_terms(prob_up, realised))
        if len(rows) > self.window:
            rows.popleft()

    def skill(self, voter: str) -> Skill | None:
        rows = self._rows.get(voter)
        if not rows:
            return None
        # Summed afresh, newest first, as the live tracker sums its query's rows: running sums would
        # drift by float rounding, and a replay must weigh exactly as the live loop does.
        numerator = denominator = 0.0
        n = 0
        for a, b, c in reversed(rows):
            numerator, denominator, n = numerator + a, denominator + b, n + c
        return Skill(n, numerator / denominator if denominator > 0 else None)
