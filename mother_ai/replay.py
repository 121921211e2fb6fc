"""The replay: the Mother AI's whole decision loop over history, with the live loop's own decision core.

Clock. Decision steps are the closed candles of the replay's interval, in time order: step t happens at
candle t's close (its open time + one interval), with every candle that has closed by then and none
after. The first ``warmup`` candles of the range are history only; the first decision is at the close of
candle ``warmup``.

At each step, in the live scheduler's order:
1. Resolve: every recorded prediction whose horizon candle has closed by now resolves to
   ``close[target] / close[as_of] - 1`` (``mother_ai.performance_tracker``'s rule), and enters its
   voter's ``SkillBook``: weights move during the replay as they would live.
2. Retrain (``retrain_due``): each agent at the first step, and at each close whose time is a whole
   multiple of ``retrain_every`` candles since 1970-01-01 UTC (a failed training waits for the next), is
   trained on the latest
   ``train_bars`` candles closed by now (``agents.generic_agent.training_window``, the trainer's purge
   included). Its predictions until the next retrain come from that model. ``retrain_mode="full"`` runs
   the agent's own walk-forward search at every retrain (what scheduled live retraining does);
   ``"refit"`` (the default, to stay fast) runs it at the first retrain and then refits the family and
   hyper-parameters chosen there on each new window. A model also ages on the replay clock: past the
   agent's max_model_age_hours it is stale and does not vote, as live.
3. Vote: each agent predicts from the candle that just closed; each included strategy votes from its
   state and track record (``mother_ai.strategy_voter``). Votes get ``weighting.weight_for`` weights.
4. Decide: the portfolio is marked at the candles' closes; the daily loss limit counts UTC days of the
   replay clock; ``policy.decide_action`` picks the action with every risk check, and the decision is
   the same payload as live. The kill switch does not exist in a replay.
5. Fill: an order decided at candle t's close fills at candle t+1's open of its symbol, moved by
   slippage, with the fee and the symbol's filters (``fills.plan_paper_fill``, as paper trading) and the
   balance checks of the paper account. A decision at the last candle has no next open: it is recorded
   and not filled.

Features for a model window are computed once over the series and read at each step's row; they depend on
candles up to that row only (``ml_engine.feature_extractor`` is causal), and equal the live agent's
tail-computed features up to the seed decay (< ~1e-9).

Beside the replay itself, on the same candles, costs and predictions: buy and hold of each symbol, each
voter alone under the same policy (its own skill weight), and all voters with equal weights (1 each), so a
user sees whether combining and skill weighting help.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import numpy as np

from agents.generic_agent import retrain_due
from backtester.metrics import compute_metrics, max_drawdown
from mother_ai.daily_loss import DailyLossBook
from mother_ai.decision import Decision, portfolio_summary
from mother_ai.explain import reason_code, reason_text
from mother_ai.fills import (
    Fill,
)
from mother_ai.orders import Portfolio, price_decimal
from mother_ai.policy import Candidate, book_of, decide_action, kill_switch_check
from mother_ai.replay_ledger import Ledger, fill_note, order_record
from mother_ai.replay_voters import (
    Progress,
    ReplayCancelled,
    ReplayInputs,
    ReplayParams,
    RetrainMode,
    StrategyInput,
    Timeline,
    VoterSeries,
    agent_series,
    resolve_and_weigh,
    strategy_series,
)
from mother_ai.votes import IgnoredVoter, Vote, Weight
from mother_ai.weighting import weighting_summary
from utils.gc_pause import gc_paused
from utils.market_data.candles import Candles

__all__ = [
    "LoopOutcome",
    "ReplayCancelled",
    "ReplayInputs",
    "ReplayParams",
    "ReplayResult",
    "RetrainMode",
    "StrategyInput",
    "retrain_due",
    "run_replay",
]

EQUAL_WEIGHT = 1.0


@dataclass(frozen=True, slots=True)
class LoopOutcome:
    equity: np.ndarray  # per step, marked at the close before that step's fill
    final_equity: float
    fills: list[dict[str, Any]]
    trade_pnl: list[float]
    trade_returns: list[float]
    bars_in_position: int
    decisions: list[dict[str, Any]]
    decision_seconds: float


@dataclass(frozen=True, slots=True)
class ReplayResult:
    params: ReplayParams
    step_times: np.ndarray  # decision times (close times), ms
    main: LoopOutcome
    voters: list[VoterSeries]
    retrains: list[dict[str, Any]]
    comparisons: dict[str, Any]
    metrics: dict[str, Any]
    timings: dict[str, float]
    data_sources: dict[str, str]


def run_replay(
    params: ReplayParams,
    inputs: ReplayInputs,
    *,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ReplayResult:
    """Replay the decision loop over `inputs` (see the module docstring)."""
    report = progress or (lambda _f, _m: None)
    stop = should_stop or (lambda: False)
    timeline = Timeline(inputs.candles, params.interval)
    n = timeline.open_time.shape[0]
    steps = np.arange(params.warmup, n)
    if steps.shape[0] == 0:
        raise ValueError(f"no decision step: {n} candles do not reach past a warm-up of {params.warmup}")
    timings: dict[str, float] = {"training": 0.0, "prediction": 0.0}
    retrains: list[dict[str, Any]] = []
    voters: list[VoterSeries] = []
    for k, symbol in enumerate(sorted(inputs.agents)):
        voters.append(
            agent_series(
                params,
                inputs,
                timeline,
                steps,
                symbol,
                retrains,
                timings,
                stop,
                _scaled(report, k, len(inputs.agents)),
            )
        )
    started = time.perf_counter()
    for strategy in inputs.strategies:
        voters.append(strategy_series(inputs, timeline, steps, strategy))
    resolve_and_weigh(voters, inputs.candles, timeline, steps)
    timings["prediction"] += time.perf_counter() - started
    if stop():
        raise ReplayCancelled()
    report(0.72, "deciding")
    main = _decision_loop(params, inputs, timeline, steps, voters, weights="skill", record=True, stop=stop)
    timings["decision"] = main.decision_seconds
    report(0.85, "comparing with each voter alone, equal weights and buy and hold")
    comparisons = _comparisons(params, inputs, timeline, steps, voters, main, stop)
    metrics = _metrics(params, inputs, timeline, steps, main)
    report(1.0, "done")
    return ReplayResult(
        params=params,
        step_times=timeline.close_time[steps],
        main=main,
        voters=voters,
        retrains=retrains,
        comparisons=comparisons,
        metrics=metrics,
        timings=timings,
        data_sources={s: c.source for s, c in inputs.candles.items()},
    )


def _scaled(report: Progress, k: int, count: int) -> Progress:
    """Agent k's training progress as its share of the first 70% of the replay's."""
    return lambda f, m: report(0.7 * (k + f) / max(1, count), m)


# --- the decision loop ----------------------------------------------------------------------------


@gc_paused()  # decision payloads hold no cycles (utils.gc_pause says why)
def _decision_loop(
    params: ReplayParams,
    inputs: ReplayInputs,
    timeline: Timeline,
    steps: np.ndarray,
    voters: Sequence[VoterSeries],
    *,
    weights: Literal["skill", "equal"],
    record: bool,
    stop: Callable[[], bool],
) -> LoopOutcome:
    begun = time.perf_counter()
    ledger = Ledger(params.quote_asset, params.initial_balance)
    daily = DailyLossBook("replay", params.limits.daily_loss_limit)
    equal = Weight(EQUAL_WEIGHT, EQUAL_WEIGHT, 0, 0, None, 1.0, "equal weights: w = 1")
    symbols = sorted(params.symbols)
    prices = _Prices(inputs, symbols)
    open_times = {s: np.asarray(inputs.candles[s].open_time, dtype=np.int64) for s in symbols}
    equity = np.zeros(steps.shape[0])
    fills: list[dict[str, Any]] = []
    trade_pnl: list[float] = []
    trade_returns: list[float] = []
    decisions: list[dict[str, Any]] = []
    in_position = 0
    for j, step in enumerate(steps):
        if j % 2048 == 0 and stop():
            raise ReplayCancelled()
        close_ms = int(timeline.close_time[step])
        now = datetime.fromtimestamp(close_ms / 1000, tz=UTC)
        votes, ignored = _votes_at(j, voters, params.interval, None if weights == "skill" else equal)
        rows = {s: int(timeline.index[s][step]) for s in symbols}
        marks = {s: prices.close(s, r) for s, r in rows.items() if r >= 0}
        portfolio = ledger.portfolio(marks, now)
        if portfolio.positions and any(v.quantity > 0 for v in portfolio.positions):
            in_position += 1
        equity[j] = float(portfolio.equity)
        state = daily.evaluate(1, portfolio.equity, now)
        book = book_of(portfolio, inputs.filters)
        policy = decide_action(votes, book, params.limits, params.costs, state)
        chosen = policy.chosen
        note, order = "", None
        if chosen is not None:
            nxt = rows[chosen.symbol] + 1
            if rows[chosen.symbol] < 0 or nxt >= open_times[chosen.symbol].shape[0]:
                note = " No next candle to fill at: the replay ends here, so nothing is filled."
            else:
                price, fill_time = prices.open(chosen.symbol, nxt), int(open_times[chosen.symbol][nxt])
                order, trade = _fill(j, chosen, price, fill_time, ledger, inputs, params, now)
                if order["status"] == "FILLED":
                    fills.append(order)
                if trade is not None:
                    trade_pnl.append(trade[0])
                    trade_returns.append(trade[1])
                note = fill_note(order)
        if record:
            decisions.append(
                _decision_payload(params, j, now, votes, ignored, policy, portfolio, book, state, order, note)
            )
    last = steps[-1]
    marks = {
        s: prices.close(s, int(timeline.index[s][last])) for s in symbols if timeline.index[s][last] >= 0
    }
    final = float(ledger.portfolio(marks, datetime.fromtimestamp(0, tz=UTC)).equity)
    return LoopOutcome(
        equity=equity,
        final_equity=final,
        fills=fills,
        trade_pnl=trade_pnl,
        trade_returns=trade_returns,
        bars_in_position=in_position,
        decisions=decisions,
        decision_seconds=time.perf_counter() - begun,
    )


class _Prices:
    """Candle opens and closes as the executor's decimals, each converted once (a step reads every
    symbol's close, and the conversion is the loop's hot spot)."""

    def __init__(self, inputs: ReplayInputs, symbols: Sequence[str]) -> None:
        self._columns = {
            (kind, s): np.asarray(getattr(inputs.candles[s], kind), dtype=np.float64)
            for s in symbols
            for kind in ("open", "close")
        }
        self._cache: dict[tuple[str, str, int], Decimal] = {}

    def open(self, symbol: str, index: int) -> Decimal:
        return self._at("open", symbol, index)

    def close(self, symbol: str, index: int) -> Decimal:
        return self._at("close", symbol, index)

    def _at(self, kind: str, symbol: str, index: int) -> Decimal:
        key = (kind, symbol, index)
        value = self._cache.get(key)
        if value is None:
            value = self._cache[key] = price_decimal(float(self._columns[kind, symbol][index]))
        return value


def _fill(
    step: int,
    chosen: Candidate,
    price: Decimal,
    fill_time: int,
    ledger: Ledger,
    inputs: ReplayInputs,
    params: ReplayParams,
    now: datetime,
) -> tuple[dict[str, Any], tuple[float, float] | None]:
    """Fill the chosen order at `price` (the next candle's open); with the (pnl, return) a sell closed."""
    symbol, side = chosen.symbol, "BUY" if chosen.side == "buy" else "SELL"
    rules = inputs.filters.get(symbol)
    outcome, realised = ledger.fill(symbol, side, chosen, price, rules, params.costs, now)
    order = order_record(step, symbol, side, fill_time, price, outcome, realised)
    if not isinstance(outcome, Fill) or side != "SELL":
        return order, None
    cost = outcome.notional - outcome.fee - realised
    return order, (float(realised), float(realised / cost) if cost > 0 else 0.0)


def _votes_at(
    j: int, voters: Sequence[VoterSeries], interval: str, weight: Weight | None
) -> tuple[list[Vote], list[IgnoredVoter]]:
    """The votes of step `j` (each voter's own skill weight, or `weight` for all), and who cannot vote."""
    votes: list[Vote] = []
    ignored: list[IgnoredVoter] = []
    for series in voters:
        p = float(series.prob_up[j])
        if p != p:  # NaN: this voter cannot vote now
            reason = series.ignored[j]
            if reason is not None:
                ignored.append(reason)
            continue
        votes.append(
            Vote(
                agent=series.voter,
                symbol=series.symbol,
                interval=interval,
                horizon=series.horizon,
                model_version=series.version[j],
                action=series.action[j],
                prob_up=p,
                confidence=abs(2 * p - 1),
                expected_return=float(series.expected[j]),
                as_of=int(series.as_of[j]),
                weight=series.weights[j] if weight is None else weight,
                kind=series.kind,
            )
        )
    return votes, ignored


def _decision_payload(
    params: ReplayParams,
    step: int,
    now: datetime,
    votes: list[Vote],
    ignored: list[IgnoredVoter],
    policy: Any,
    portfolio: Portfolio,
    book: Any,
    state: Any,
    order: dict[str, Any] | None,
    note: str,
) -> dict[str, Any]:
    chosen = policy.chosen
    decision = Decision(
        id=f"step-{step}",
        created_at=now,
        mode="replay",
        symbols=sorted(params.symbols),
        action=policy.action,
        symbol=chosen.symbol if chosen else None,
        size_quote=Decimal(chosen.size_quote) if chosen and chosen.size_quote else None,
        size_fraction=chosen.size_fraction if chosen else None,
        quantity=Decimal(chosen.quantity) if chosen and chosen.quantity else None,
        execute_requested=True,
        executed=order is not None and order["status"] == "FILLED",
        client_order_id=None,
        order_id=None,
        order_status=order["status"] if order else None,
        halted=False,
        votes=votes,
        ignored=ignored,
        edges=policy.edges,
        candidates=policy.candidates,
        risk_checks=[*policy.shown_checks(), kill_switch_check(False)],
        portfolio=portfolio_summary(
            "replay", 1, book, (portfolio.realised_pnl, portfolio.unrealised_pnl), False
        ),
        daily_loss=state.to_dict(),
        costs=params.costs.to_dict(),
        weighting=weighting_summary(),
        reason="",
        order=order,
    )
    reason = reason_text(decision, chosen, policy.candidates, True, params.costs) + note
    payload = replace(decision, reason=reason).to_dict()
    payload["step"] = step
    payload["time"] = int(now.timestamp() * 1000)
    payload["reason_code"] = reason_code(decision)
    return payload


# --- comparisons and metrics ----------------------------------------------------------------------


def _comparisons(
    params: ReplayParams,
    inputs: ReplayInputs,
    timeline: Timeline,
    steps: np.ndarray,
    voters: Sequence[VoterSeries],
    main: LoopOutcome,
    stop: Callable[[], bool],
) -> dict[str, Any]:
    initial = float(params.initial_balance)

    def summary(outcome: LoopOutcome) -> dict[str, Any]:
        return {
            "final_equity": outcome.final_equity,
            "total_return": outcome.final_equity / initial - 1.0,
            "fills": len(outcome.fills),
            "max_drawdown": max_drawdown(outcome.equity, initial)[0],
        }

    alone = {}
    curves: dict[str, np.ndarray] = {"mother_ai": main.equity}
    for series in voters:
        outcome = _decision_loop(
            params, inputs, timeline, steps, [series], weights="skill", record=False, stop=stop
        )
        alone[series.voter] = {**summary(outcome), "kind": series.kind}
        curves[f"alone:{series.voter}"] = outcome.equity
    equal = _decision_loop(params, inputs, timeline, steps, voters, weights="equal", record=False, stop=stop)
    curves["equal_weights"] = equal.equity
    holds = {}
    for s in sorted(params.symbols):
        holds[s], curves[f"buy_and_hold:{s}"] = _buy_and_hold(params, inputs.candles[s], timeline, steps, s)
    best_alone = max(alone.items(), key=lambda kv: kv[1]["final_equity"], default=None)
    return {
        "mother_ai": summary(main),
        "voters_alone": alone,
        "equal_weights": summary(equal),
        "buy_and_hold": holds,
        "best_voter_alone": best_alone[0] if best_alone else None,
        "beats_best_voter_alone": bool(
            best_alone is None or main.final_equity > best_alone[1]["final_equity"]
        ),
        "beats_equal_weights": main.final_equity > equal.final_equity,
        "beats_buy_and_hold": {s: main.final_equity > h["final_equity"] for s, h in holds.items()},
        "curves": curves,
    }


def _buy_and_hold(
    params: ReplayParams, candles: Candles, timeline: Timeline, steps: np.ndarray, symbol: str
) -> tuple[dict[str, Any], np.ndarray]:
    """All cash into `symbol` at the first decision's next open (slippage and fee), held to the end."""
    initial = float(params.initial_balance)
    rows = timeline.index[symbol][steps]
    first = int(rows[0]) + 1 if rows[0] >= 0 else 0
    if first >= len(candles):
        flat = np.full(steps.shape[0], initial)
        return {"final_equity": initial, "total_return": 0.0, "max_drawdown": 0.0}, flat
    price = float(candles.open[first]) * (1 + params.costs.slippage)
    quantity = initial / (price * (1 + params.costs.fee_rate))
    close = np.asarray(candles.close, dtype=np.float64)
    curve = np.where(rows >= first, quantity * close[np.maximum(rows, 0)], initial)
    final = float(quantity * close[int(rows[-1])]) if rows[-1] >= first else initial
    return {
        "final_equity": final,
        "total_return": final / initial - 1.0,
        "max_drawdown": max_drawdown(curve, initial)[0],
    }, curve


def _metrics(
    params: ReplayParams, inputs: ReplayInputs, timeline: Timeline, steps: np.ndarray, main: LoopOutcome
) -> dict[str, Any]:
    # Buy and hold in the metrics is an equal-weight basket of the replay's symbols.
    basket = np.zeros(steps.shape[0])
    for symbol in params.symbols:
        close = np.asarray(inputs.candles[symbol].close, dtype=np.float64)
        rows = timeline.index[symbol][steps]
        series = np.where(rows >= 0, close[np.maximum(rows, 0)], np.nan)
        first = series[np.isfinite(series)][0] if np.isfinite(series).any() else 1.0
        basket += np.nan_to_num(series / first, nan=1.0)
    basket /= max(1, len(params.symbols))
    metrics = compute_metrics(
        equity=main.equity,
        initial_capital=float(params.initial_balance),
        open_time=timeline.open_time[steps],
        interval=params.interval,
        close=basket,
        trade_pnl=np.asarray(main.trade_pnl),
        trade_returns=np.asarray(main.trade_returns),
        bars_in_position=main.bars_in_position,
    )
    return asdict(metrics)
