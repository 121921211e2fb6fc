"""The voters of a replay: agents trained walk-forward at the retrain points, their batched predictions,
strategy votes, and every vote's resolution and weight on the replay clock (rules: ``mother_ai.replay``)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import numpy as np

from agents.generic_agent import (
    AgentConfig,
    FittedModel,
    action_for,
    expected_return,
    fit_model,
    model_stale_reason,
    refit_model,
    retrain_due,
    training_window,
)
from ml_engine.feature_extractor import extract
from ml_engine.trainer import predict_proba_up
from mother_ai.fills import (
    CostModel,
)
from mother_ai.policy import RiskLimits
from mother_ai.strategy_voter import HORIZON as STRATEGY_HORIZON
from mother_ai.strategy_voter import views as strategy_views
from mother_ai.strategy_voter import vote_at as strategy_vote_at
from mother_ai.strategy_voter import voter_id as strategy_voter_id
from mother_ai.votes import IgnoredVoter, VoterKind, Weight
from mother_ai.weighting import SkillBook, weight_for
from strategy_engine.spec import StrategySpec
from utils.errors import AppError
from utils.exchange import SymbolFilters
from utils.intervals import interval_ms
from utils.market_data.candles import Candles

RetrainMode = Literal["refit", "full"]
Progress = Callable[[float, str], None]


class ReplayCancelled(Exception):
    """Raised at the next checkpoint after ``should_stop()`` turned true."""


@dataclass(frozen=True, slots=True)
class ReplayParams:
    symbols: tuple[str, ...]
    interval: str
    warmup: int
    retrain_every: int
    initial_balance: Decimal
    quote_asset: str
    costs: CostModel
    limits: RiskLimits
    retrain_mode: RetrainMode = "refit"


@dataclass(frozen=True, slots=True)
class StrategyInput:
    id: int
    version: int
    name: str
    spec: StrategySpec


@dataclass(frozen=True, slots=True)
class ReplayInputs:
    candles: Mapping[str, Candles]  # the whole range, per symbol
    agents: Mapping[str, AgentConfig]  # symbol -> the agent's configuration
    strategies: Sequence[StrategyInput]
    filters: Mapping[str, SymbolFilters | None]


@dataclass(slots=True)
class VoterSeries:
    """One voter's vote at every step (NaN prob where it cannot vote) and what it resolves to."""

    voter: str
    kind: VoterKind
    symbol: str
    horizon: int
    prob_up: np.ndarray
    expected: np.ndarray
    as_of: np.ndarray  # int64 open time of the candle the vote was made from
    version: list[str]
    action: list[str]
    ignored: list[IgnoredVoter | None]
    weights: list[Weight] = field(default_factory=list)
    realised: np.ndarray | None = None  # per step: the vote's realised return (NaN until resolved)
    resolved_step: np.ndarray | None = None


class Timeline:
    """The union of the symbols' open times, and each symbol's latest candle at every one of them."""

    def __init__(self, candles: Mapping[str, Candles], interval: str) -> None:
        times = np.unique(np.concatenate([np.asarray(c.open_time, dtype=np.int64) for c in candles.values()]))
        self.open_time = times
        self.step_ms = interval_ms(interval)
        self.close_time = times + self.step_ms
        self.index = {
            s: np.searchsorted(np.asarray(c.open_time, dtype=np.int64), times, side="right") - 1
            for s, c in candles.items()
        }


def empty_series(voter: str, kind: VoterKind, symbol: str, horizon: int, size: int) -> VoterSeries:
    return VoterSeries(
        voter=voter,
        kind=kind,
        symbol=symbol,
        horizon=horizon,
        prob_up=np.full(size, np.nan),
        expected=np.zeros(size),
        as_of=np.zeros(size, dtype=np.int64),
        version=[""] * size,
        action=["hold"] * size,
        ignored=[None] * size,
    )


def agent_series(
    params: ReplayParams,
    inputs: ReplayInputs,
    timeline: Timeline,
    steps: np.ndarray,
    symbol: str,
    retrains: list[dict[str, Any]],
    timings: dict[str, float],
    stop: Callable[[], bool],
    report: Progress,
) -> VoterSeries:
    """The agent's vote at every step, from the model of the latest retrain point before it."""
    config = inputs.agents[symbol]
    candles = inputs.candles[symbol]
    series = empty_series(symbol, "agent", symbol, config.horizon, steps.shape[0])
    frame = extract(candles, config.features)
    rows = timeline.index[symbol]
    first: FittedModel | None = None
    current: tuple[FittedModel, str, int] | None = None  # model, version, trained at (ms)
    window_start = 0
    failure: str | None = None
    tried = False

    def predict_window(lo: int, hi: int) -> None:
        """Batch-predict steps [lo, hi) with the current model."""
        if lo >= hi:
            return
        begun = time.perf_counter()
        idx = rows[steps[lo:hi]]
        ok = idx >= 0
        if current is None:
            for j in range(lo, hi):
                series.ignored[j] = IgnoredVoter(
                    symbol, "untrained", f"No model could be trained yet: {failure or 'not enough candles'}."
                )
            return
        safe = np.where(ok, idx, 0)
        p_up = predict_proba_up(current[0].model, frame.X[safe])
        now = timeline.close_time[steps[lo:hi]]
        as_of = np.where(ok, candles.open_time[safe], 0)
        _record_votes(series, lo, config, params.interval, current, p_up, ok, now, as_of)
        timings["prediction"] += time.perf_counter() - begun

    for j, step in enumerate(steps):
        close_ms = int(timeline.close_time[step])
        if not retrain_due(tried, close_ms, params.interval, params.retrain_every):
            continue
        if stop():
            raise ReplayCancelled()
        predict_window(window_start, j)
        window_start = j
        last = int(rows[step])
        if last < 0:
            continue
        tried = True
        window = training_window(config, candles.slice(0, last + 1))
        begun = time.perf_counter()
        try:
            fitted, how = _fit(config, window, None if params.retrain_mode == "full" else first)
            first = first or fitted
        except AppError as exc:
            failure = exc.message
            retrains.append({"voter": symbol, "time": close_ms, "ok": False, "error": exc.message})
            continue
        seconds = time.perf_counter() - begun
        timings["training"] += seconds
        version = f"replay-{symbol}-{len([r for r in retrains if r['voter'] == symbol and r['ok']]) + 1}"
        current = (fitted, version, close_ms)
        retrains.append(_retrain_record(symbol, close_ms, version, how, fitted, window, seconds))
        report(j / max(1, steps.shape[0]), f"{symbol}: {how} training at step {j + 1}/{steps.shape[0]}")
    predict_window(window_start, steps.shape[0])
    return series


def _record_votes(
    series: VoterSeries,
    lo: int,
    config: AgentConfig,
    interval: str,
    current: tuple[FittedModel, str, int],
    p_up: np.ndarray,
    ok: np.ndarray,
    now: np.ndarray,
    as_of: np.ndarray,
) -> None:
    """Steps lo, lo+1, ... get the model's vote, or the reason it is ignored (as the live vote says)."""
    model, version, trained_at = current
    symbol = series.voter
    for offset in range(p_up.shape[0]):
        j = lo + offset
        stale = model_stale_reason(config, interval, interval, trained_at, int(now[offset]))
        p = float(p_up[offset])
        if not ok[offset]:
            series.ignored[j] = IgnoredVoter(symbol, "no_data", f"No {symbol} candle has closed yet.")
        elif stale is not None:
            series.ignored[j] = IgnoredVoter(symbol, "stale", f"Stale model: {stale}.")
        elif not math.isfinite(p):
            series.ignored[j] = IgnoredVoter(
                symbol, "prediction_failed", f"Not enough closed candles to compute features for {symbol}."
            )
        else:
            series.prob_up[j] = p
            series.expected[j] = float(expected_return(model.meta, p))
            series.action[j] = action_for(config, p)
        series.as_of[j] = int(as_of[offset])
        series.version[j] = version


def _fit(config: AgentConfig, window: Candles, base: FittedModel | None) -> tuple[FittedModel, str]:
    """A full walk-forward search, or (given the first window's model) a refit of its family."""
    if base is None:
        return fit_model(config, window), "full"
    return refit_model(config, window, base), "refit"


def _retrain_record(
    symbol: str, close_ms: int, version: str, how: str, fitted: FittedModel, window: Candles, seconds: float
) -> dict[str, Any]:
    family, family_params = fitted.family
    return {
        "voter": symbol,
        "time": close_ms,
        "ok": True,
        "version": version,
        "mode": how,
        "family": family,
        "params": family_params,
        "window_start_time": int(window.open_time[0]),
        "window_end_time": int(window.open_time[-1]),
        "rows": int(window.open_time.shape[0]),
        "seconds": seconds,
        "oos_metrics": fitted.report.metrics_dict() if fitted.report is not None else None,
    }


def strategy_series(
    inputs: ReplayInputs, timeline: Timeline, steps: np.ndarray, strategy: StrategyInput
) -> VoterSeries:
    symbol = strategy.spec.symbol
    candles = inputs.candles[symbol]
    voter = strategy_voter_id(strategy.id)
    series = empty_series(voter, "strategy", symbol, STRATEGY_HORIZON, steps.shape[0])
    v = strategy_views(strategy.spec, candles)
    rows = timeline.index[symbol]
    for j, step in enumerate(steps):
        index = int(rows[step])
        if index < 0:
            series.ignored[j] = IgnoredVoter(voter, "no_data", f"No {symbol} candle has closed yet.")
            continue
        vote = strategy_vote_at(strategy.id, strategy.version, candles, v, index)
        series.prob_up[j], series.expected[j] = vote.prob_up, vote.expected_return
        series.as_of[j], series.version[j], series.action[j] = vote.as_of, vote.model_version, vote.action
    return series


def resolve_and_weigh(
    voters: Sequence[VoterSeries], candles: Mapping[str, Candles], timeline: Timeline, steps: np.ndarray
) -> None:
    """Resolve every vote on the replay clock and give each voter its weight at every step."""
    book = SkillBook()
    size = steps.shape[0]
    for series in voters:
        c = candles[series.symbol]
        times = np.asarray(c.open_time, dtype=np.int64)
        close = np.asarray(c.close, dtype=np.float64)
        target = series.as_of + series.horizon * timeline.step_ms
        ti = np.searchsorted(times, target)
        bi = np.searchsorted(times, series.as_of)
        exists = (ti < times.shape[0]) & (bi < times.shape[0])
        exists &= np.where(exists, times[np.minimum(ti, len(times) - 1)] == target, False)
        exists &= np.isfinite(series.prob_up)
        realised = np.full(size, np.nan)
        base = close[np.minimum(bi, len(close) - 1)]
        final = close[np.minimum(ti, len(close) - 1)]
        with np.errstate(divide="ignore", invalid="ignore"):
            realised = np.where(exists & (base > 0), final / base - 1.0, np.nan)
        # The step whose decision first sees the target candle closed: target closes <= step's close.
        step_close = timeline.close_time[steps]
        resolved = np.searchsorted(step_close, target + timeline.step_ms, side="left")
        resolved = np.where(np.isfinite(realised), resolved, size + 1)
        series.realised, series.resolved_step = realised, resolved
    # Walk the steps: before deciding at step j, add everything resolved by then.
    order = {s.voter: np.argsort(np.asarray(s.resolved_step), kind="stable") for s in voters}
    cursor = {s.voter: 0 for s in voters}
    for j in range(size):
        for series in voters:
            idx = order[series.voter]
            k = cursor[series.voter]
            assert series.resolved_step is not None and series.realised is not None
            while k < idx.shape[0] and series.resolved_step[idx[k]] <= j:
                i = int(idx[k])
                book.add(
                    series.voter,
                    series.version[i],
                    int(series.as_of[i]),
                    series.horizon,
                    float(series.prob_up[i]),
                    float(series.realised[i]),
                )
                k += 1
            cursor[series.voter] = k
            series.weights.append(weight_for(book.skill(series.voter)))
