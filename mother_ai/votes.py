"""What a voter says: one vote per (voter, symbol) with its probability, expected return, horizon, the
candle it was made from, the model (or strategy version) behind it, and the weight the Mother AI gave it.

Voters are agents (a trained model per symbol) and saved strategies (``mother_ai.strategy_voter``); both
produce the same ``Vote``, so combination, weighting, tracking and the replay never need to know which.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

VoterKind = Literal["agent", "strategy"]


@dataclass(frozen=True, slots=True)
class Weight:
    value: float
    prior: float
    k: int
    resolved: int  # n: distinct resolved predictions with prob_up != 0.5 in the window
    calibration: float | None  # λ before clipping; None without resolved predictions
    skill: float  # clip(λ, 0, 1); 0 when unknown (its share is then 0 anyway)
    formula: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Vote:
    agent: str  # the voter's id: an agent's symbol, or "strategy:<id>"
    symbol: str
    interval: str
    horizon: int
    model_version: str
    action: str
    prob_up: float
    confidence: float
    expected_return: float
    as_of: int  # open time (ms) of the last closed candle the voter saw
    weight: Weight
    kind: VoterKind = "agent"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vote:
        return cls(**{**data, "weight": Weight(**data["weight"])})


@dataclass(frozen=True, slots=True)
class IgnoredVoter:
    agent: str
    code: str  # no_agent, inactive, untrained, stale, stale_data, prediction_failed, not_live_data, ...
    reason: str


class PredictionLike(Protocol):
    """What a voter's raw prediction offers (``agents.generic_agent.Prediction`` and strategy signals)."""

    @property
    def symbol(self) -> str: ...
    @property
    def interval(self) -> str: ...
    @property
    def horizon(self) -> int: ...
    @property
    def model_version(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def prob_up(self) -> float: ...
    @property
    def confidence(self) -> float: ...
    @property
    def expected_return(self) -> float: ...
    @property
    def as_of(self) -> int: ...


def vote_from(voter: str, p: PredictionLike, weight: Weight, kind: VoterKind = "agent") -> Vote:
    return Vote(
        agent=voter,
        symbol=p.symbol,
        interval=p.interval,
        horizon=p.horizon,
        model_version=p.model_version,
        action=p.action,
        prob_up=float(p.prob_up),
        confidence=float(p.confidence),
        expected_return=float(p.expected_return),
        as_of=int(p.as_of),
        weight=weight,
        kind=kind,
    )
