"""Collecting the live votes: every agent's latest prediction and every included saved strategy's vote,
with the reason for each voter that cannot vote (inactive, untrained, stale, failing, not live data)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Protocol

from agents.generic_agent import Prediction
from mother_ai.strategy_voter import views as strategy_views
from mother_ai.strategy_voter import vote_at as strategy_vote_at
from mother_ai.strategy_voter import voter_id
from mother_ai.votes import IgnoredVoter, PredictionLike
from strategy_engine.spec import validate_spec
from strategy_engine.store import SavedStrategy, StrategyStore
from utils.errors import AppError, Conflict, NotFound
from utils.intervals import is_closed
from utils.market_data.candles import Candles
from utils.market_data.market import MarketData

log = logging.getLogger(__name__)

STRATEGY_CANDLES = 5000  # candles a live strategy vote reads: its record covers about this many bars


# --- what the votes need from the agents ------------------------------------------------------


class AgentConfigLike(Protocol):
    @property
    def symbol(self) -> str: ...


class AgentViewLike(Protocol):
    """What `agents.service.AgentView` offers."""

    @property
    def config(self) -> AgentConfigLike: ...
    @property
    def active(self) -> bool: ...
    @property
    def active_version(self) -> str | None: ...
    @property
    def stale(self) -> bool: ...
    @property
    def stale_reason(self) -> str | None: ...


class AgentSource(Protocol):
    """The predictions provider: `agents.service.AgentService`, or anything shaped like it."""

    def views(self) -> Sequence[AgentViewLike]: ...

    def predict(self, symbol: str) -> Prediction: ...


def collect_votes(
    agents: AgentSource,
    store: StrategyStore | None,
    include: tuple[int, ...] | str,
    market: MarketData,
    mode: str,
    clock: Callable[[], int],
    wanted: list[str] | None,
) -> tuple[list[tuple[str, PredictionLike]], list[IgnoredVoter], list[str]]:
    views = sorted(agents.views(), key=lambda v: v.config.symbol)
    relevant = [v for v in views if wanted is None or v.config.symbol in wanted]
    known = {v.config.symbol for v in views}
    ignored = [
        IgnoredVoter(s, "no_agent", f"No agent for {s}: create one and train it to let it vote.")
        for s in (wanted or [])
        if s not in known
    ]
    if not any(v.active_version for v in relevant):
        raise _no_trained_agents(wanted, relevant)
    votes: list[tuple[str, PredictionLike]] = []
    for view in relevant:
        agent = view.config.symbol
        if not view.active:
            ignored.append(IgnoredVoter(agent, "inactive", "The agent is switched off."))
        elif not view.active_version:
            ignored.append(
                IgnoredVoter(
                    agent,
                    "untrained",
                    "No trained model yet: train the agent to let it vote.",
                )
            )
        elif view.stale:
            ignored.append(IgnoredVoter(agent, "stale", f"Stale model: {view.stale_reason}."))
        else:
            prediction, problem = _predict(agents, mode, agent)
            if problem is not None:
                ignored.append(problem)
            elif prediction is not None:
                votes.append((agent, prediction))
    strategy_votes, strategy_ignored = _strategy_votes(store, include, market, mode, clock, wanted)
    votes.extend(strategy_votes)
    ignored.extend(strategy_ignored)
    asked = wanted if wanted is not None else sorted(v.config.symbol for v in relevant)
    return votes, ignored, asked


def _strategy_votes(
    store: StrategyStore | None,
    chosen: tuple[int, ...] | str,
    market: MarketData,
    mode: str,
    clock: Callable[[], int],
    wanted: list[str] | None,
) -> tuple[list[tuple[str, PredictionLike]], list[IgnoredVoter]]:
    """Votes of the saved strategies in MOTHER_AI_INCLUDE_STRATEGIES (``mother_ai.strategy_voter``)."""
    if not chosen or store is None:
        return [], []
    votes: list[tuple[str, PredictionLike]] = []
    ignored: list[IgnoredVoter] = []
    saved: list[SavedStrategy] = []
    if isinstance(chosen, str):  # "all"
        saved = [s for s in store.list() if (s.health or {}).get("can_activate")]
    else:
        for strategy_id in chosen:
            try:
                saved.append(store.get(strategy_id))
            except NotFound:
                ignored.append(
                    IgnoredVoter(voter_id(strategy_id), "strategy_not_found", "No such saved strategy.")
                )
    for strategy in sorted(saved, key=lambda s: s.id):
        voter = voter_id(strategy.id)
        if wanted is not None and strategy.symbol not in wanted:
            continue
        if not (strategy.health or {}).get("can_activate"):
            ignored.append(IgnoredVoter(voter, "strategy_unhealthy", "Its health check found errors."))
            continue
        try:
            answer = market.candles(strategy.symbol, strategy.interval, limit=STRATEGY_CANDLES)
            candles = _closed(answer.candles, clock())
            if answer.stale or len(candles) == 0:
                ignored.append(
                    IgnoredVoter(voter, "stale_data", "Its latest candles may be behind the market.")
                )
                continue
            if mode == "live" and answer.source in ("sample", "file"):
                ignored.append(
                    IgnoredVoter(voter, "not_live_data", f"Its candles come from {answer.source} data.")
                )
                continue
            views = strategy_views(validate_spec(strategy.spec), candles)
            votes.append(
                (voter, strategy_vote_at(strategy.id, strategy.version, candles, views, len(candles) - 1))
            )
        except AppError as exc:
            ignored.append(IgnoredVoter(voter, "prediction_failed", f"Its vote failed: {exc.message}"))
    return votes, ignored


def _predict(agents: AgentSource, mode: str, agent: str) -> tuple[Prediction | None, IgnoredVoter | None]:
    try:
        prediction = agents.predict(agent)
    except AppError as exc:
        return None, IgnoredVoter(agent, "prediction_failed", f"Prediction failed: {exc.message}")
    except Exception:  # a broken model must not take every other agent's vote down with it
        log.exception("prediction of agent %s failed", agent)
        return None, IgnoredVoter(
            agent, "prediction_failed", "Prediction failed unexpectedly; the server log has details."
        )
    if prediction.stale:
        return None, IgnoredVoter(agent, "stale", f"Stale prediction: {prediction.stale_reason}.")
    if prediction.data_stale:
        return None, IgnoredVoter(
            agent,
            "stale_data",
            "Binance was unreachable, so its latest candles may be behind the market.",
        )
    if mode == "live" and prediction.data_source in ("sample", "file"):
        # Real money only follows predictions made from Binance's own candles.
        return None, IgnoredVoter(
            agent, "not_live_data", f"Its candles come from {prediction.data_source} data, not Binance."
        )
    numbers = (prediction.prob_up, prediction.expected_return, prediction.confidence)
    if not all(math.isfinite(x) for x in numbers) or not 0 <= prediction.prob_up <= 1:
        return None, IgnoredVoter(agent, "prediction_failed", "The prediction has no valid probability.")
    return prediction, None


def _no_trained_agents(wanted: list[str] | None, relevant: Sequence[AgentViewLike]) -> Conflict:
    untrained = sorted(v.config.symbol for v in relevant)
    missing = sorted(set(wanted or []) - set(untrained))
    parts = ["No agent has a trained model yet, so there is nothing to decide on."]
    if untrained:
        parts.append(f"Train {', '.join(untrained)} first.")
    if missing:
        parts.append(f"No agent exists for {', '.join(missing)}: create and train one.")
    if not relevant and not missing:
        parts.append("Create an agent and train it.")
    return Conflict(
        " ".join(parts), code="no_trained_agents", details={"untrained": untrained, "missing": missing}
    )


def _closed(candles: Candles, now_ms: int) -> Candles:
    if len(candles) and not is_closed(int(candles.open_time[-1]), candles.interval, now_ms):
        return candles.slice(0, len(candles) - 1)
    return candles
