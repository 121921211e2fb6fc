"""Saved strategies as voters: a strategy's entry/exit state turned into prob_up and expected_return from its
own track record, so the Mother AI can weigh, track and resolve it like an agent.

State: after bar t's signals the strategy wants to be long (``state[t]``) or flat, with the engine's
precedence (in a position an exit closes it; flat, an entry without an exit opens one). Stops are not
part of the vote: they are the strategy's own risk management, not a view of the market.

Track record at bar t: every earlier bar s whose horizon has closed by t (s + h <= t) and lies within the
last RECORD_BARS of them, with r_s = close[s+h] / close[s] - 1 and u_s = 1 if r_s > 0. With S = state[t]:

    n_S = #{s : state[s] = S},   p_S = mean(u_s | state[s] = S),   m_S = mean(r_s | state[s] = S)
    p_all = mean(u_s),           m_all = mean(r_s)                 (over every bar of the record)
    shrink = n_S / (n_S + K)                                        K = 50
    prob_up = 1/2 + shrink · (p_S - p_all)
    expected_return = shrink · (m_S - m_all)

So a vote is what the strategy's current state has added to the market's own drift after such states,
shrunk toward no edge while that record is short: a strategy that is always in the market (or never)
has p_S = p_all and m_S = m_all and gets no edge, whatever the market did; one whose long states were
followed by better returns than the market's average votes up while long and down while flat. Only
candles closed by t enter a vote at t: the record needs s + h <= t, the state needs signals up to t.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from strategy_engine.spec import StrategySpec
from strategy_engine.strategy_parser import evaluate
from utils.market_data.candles import Candles

SHRINK_K = 50
RECORD_BARS = 5000
HORIZON = 4  # bars ahead a strategy vote is about (and resolved on), like the default agents'


@dataclass(frozen=True, slots=True)
class StrategyViews:
    """Per bar of a series: the vote a strategy would cast after that bar closed."""

    state: np.ndarray  # bool: wants to be long after bar t's signals
    prob_up: np.ndarray
    expected_return: np.ndarray
    record: np.ndarray  # n_S: same-state bars in the resolved record


@dataclass(frozen=True, slots=True)
class StrategyVote:
    """One strategy's vote, shaped like an agent's prediction (``mother_ai.votes.PredictionLike``)."""

    symbol: str
    interval: str
    horizon: int
    model_version: str
    action: str
    prob_up: float
    confidence: float
    expected_return: float
    as_of: int


def voter_id(strategy_id: int) -> str:
    return f"strategy:{strategy_id}"


def states(entries: np.ndarray, exits: np.ndarray) -> np.ndarray:
    """Whether the strategy wants to be long after each bar's signals (the engine's precedence)."""
    out = np.zeros(entries.shape[0], dtype=bool)
    held = False
    for t in range(entries.shape[0]):
        # An exit always leaves (or keeps) it flat; otherwise it stays in, or an entry takes it in.
        held = not bool(exits[t]) and (held or bool(entries[t]))
        out[t] = held
    return out


def views(
    spec: StrategySpec, candles: Candles, horizon: int = HORIZON, record_bars: int = RECORD_BARS
) -> StrategyViews:
    """The strategy's vote after every bar of `candles` (formulas in the module docstring)."""
    signals = evaluate(spec, candles)
    state = states(np.asarray(signals.entries, dtype=bool), np.asarray(signals.exits, dtype=bool))
    close = np.asarray(candles.close, dtype=np.float64)
    n = close.shape[0]
    fwd = np.full(n, np.nan)
    if n > horizon:
        with np.errstate(divide="ignore", invalid="ignore"):
            fwd[: n - horizon] = close[horizon:] / close[: n - horizon] - 1.0
    valid = np.isfinite(fwd)
    r = np.where(valid, fwd, 0.0)
    u = (r > 0) & valid
    long_ = state & valid

    # Prefix sums over s; the record at t is s in [t - h - W + 1, t - h].
    def prefix(values: np.ndarray) -> np.ndarray:
        return np.concatenate(([0.0], np.cumsum(values, dtype=np.float64)))

    c_all, c_u, c_r = prefix(valid), prefix(u), prefix(r)
    c_l, c_lu, c_lr = prefix(long_), prefix(u & long_), prefix(np.where(long_, r, 0.0))
    t = np.arange(n)
    hi = np.clip(t - horizon + 1, 0, n)  # exclusive end: s <= t - h
    lo = np.clip(hi - record_bars, 0, n)

    def window(c: np.ndarray) -> np.ndarray:
        return np.asarray(c[hi] - c[lo])

    n_all, u_all, r_all = window(c_all), window(c_u), window(c_r)
    n_long, u_long, r_long = window(c_l), window(c_lu), window(c_lr)
    n_same = np.where(state, n_long, n_all - n_long)
    u_same = np.where(state, u_long, u_all - u_long)
    r_same = np.where(state, r_long, r_all - r_long)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_diff = np.where(n_same > 0, u_same / n_same - u_all / np.maximum(n_all, 1), 0.0)
        m_diff = np.where(n_same > 0, r_same / n_same - r_all / np.maximum(n_all, 1), 0.0)
    shrink = n_same / (n_same + SHRINK_K)
    return StrategyViews(state, 0.5 + shrink * p_diff, shrink * m_diff, n_same.astype(np.int64))


def vote_at(
    strategy_id: int, version: int, candles: Candles, v: StrategyViews, index: int, horizon: int = HORIZON
) -> StrategyVote:
    """The vote after bar `index` of `candles` (whose views are `v`)."""
    p = float(v.prob_up[index])
    return StrategyVote(
        symbol=candles.symbol,
        interval=candles.interval,
        horizon=horizon,
        model_version=f"strategy-{strategy_id}-v{version}",
        action="buy" if bool(v.state[index]) else "sell",
        prob_up=p,
        confidence=abs(2 * p - 1),
        expected_return=float(v.expected_return[index]),
        as_of=int(candles.open_time[index]),
    )
