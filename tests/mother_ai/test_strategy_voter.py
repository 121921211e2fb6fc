"""Saved strategies as voters (``mother_ai.strategy_voter``): the state's precedence, the views' formula on
hand-made series (recomputed here from the docstring, by hand and by a naive loop), causality, and the
voters inside a replay: a planted edge earns weight, an always-in strategy never has an edge."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from mother_ai.fills import CostModel
from mother_ai.policy import RiskLimits
from mother_ai.replay import ReplayInputs, ReplayParams, StrategyInput, run_replay
from mother_ai.strategy_voter import HORIZON, RECORD_BARS, SHRINK_K, states, views, vote_at, voter_id
from mother_ai.weighting import PRIOR_WEIGHT
from strategy_engine.spec import StrategySpec, validate_spec
from tests.support.candles import HOUR_MS, START_MS, ar1_candles, edited_after, ohlcv
from tests.support.exchange import usdt_filters
from utils.market_data.candles import Candles

T, F = True, False


def cmp(left: Any, op: str, right: Any) -> dict[str, Any]:
    return {"left": left, "op": op, "right": right}


def spec(entry: dict[str, Any], exit_: dict[str, Any], symbol: str = "BTCUSDT") -> StrategySpec:
    return validate_spec({"name": "t", "symbol": symbol, "interval": "1h", "entry": entry, "exit": exit_})


VOLUME, CLOSE = {"price": "volume"}, {"price": "close"}
# Long exactly on the bars whose volume is above 5 (volume never equals 5 here).
VOLUME_SPIKE = spec(cmp(VOLUME, ">", 5), cmp(VOLUME, "<", 5))
ALWAYS_IN = spec(cmp(CLOSE, ">", 0), cmp(CLOSE, "<", 0))
NEVER_IN = spec(cmp(CLOSE, "<", 0), cmp(CLOSE, ">", 0))


def planted_candles(n: int, seed: int, symbol: str = "BTCUSDT") -> Candles:
    """A random walk (0.3%/bar) in which ~1 bar in 20 has volume 10 (else 1 to 3) and is followed by four
    bars lifted by +0.5% each: a long state on the spikes is followed by up-moves. The other bars carry the
    opposite drift, so the series as a whole does not drift (the market's own up-rate stays near 1/2)."""
    rng = np.random.default_rng(seed)
    spike = rng.random(n) < 0.05
    spike[-HORIZON:] = False
    r = rng.normal(0.0, 0.003, n)
    lifted = np.zeros(n, dtype=bool)
    for t in np.flatnonzero(spike):
        lifted[t + 1 : t + 1 + HORIZON] = True
    r[lifted] += 0.005
    r[~lifted] -= 0.005 * lifted.sum() / (~lifted).sum()
    volume = np.where(spike, 10.0, rng.uniform(1.0, 3.0, n))
    return ohlcv(symbol, 100.0 * np.exp(np.cumsum(r)), volume=volume, seed=seed + 1)


# --- states ----------------------------------------------------------------------------------------

STATE_CASES = [
    # (entries, exits, wants to be long after each bar)
    ([], [], []),
    ([F, F, F], [F, F, F], [F, F, F]),
    ([T, F, F], [F, F, F], [T, T, T]),  # in until an exit
    ([T, F, F], [F, T, F], [T, F, F]),  # an exit closes it
    ([T], [T], [F]),  # flat: entry and exit together do nothing (the exit wins)
    ([T, T], [F, T], [T, F]),  # in: an exit closes it even with an entry on that bar
    ([T, F, T], [F, T, F], [T, F, T]),  # re-entry after an exit
    ([F, T, F, F], [T, F, F, T], [F, T, T, F]),  # an exit while flat does nothing
    ([T, T, T], [F, F, F], [T, T, T]),  # entries while in change nothing
    ([F, T, T, F], [F, F, T, F], [F, T, F, F]),  # the bar after an exit needs a new entry
]


@pytest.mark.parametrize(("entries", "exits", "expected"), STATE_CASES)
def test_states_follow_the_engines_precedence(
    entries: list[bool], exits: list[bool], expected: list[bool]
) -> None:
    out = states(np.array(entries, dtype=bool), np.array(exits, dtype=bool))
    assert out.dtype == bool and out.tolist() == expected


# --- views on hand-made series ---------------------------------------------------------------------

# Closes alternate +10% / -10% (r_s = +0.1 after the even bars, -0.1 after the odd ones); the strategy is
# long on the even bars. With horizon 1 the record at bar t is s = 0 .. t-1 (the last `record_bars`).
HAND_CLOSE = [100.0, 110.0, 99.0, 108.9, 98.01, 107.811]
HAND_VOLUME = [10.0, 1.0, 10.0, 1.0, 10.0, 1.0]
HAND_CASES = [
    # (record_bars, bar t, n_S, prob_up, expected_return), worked out by hand from the docstring
    (RECORD_BARS, 0, 0, 0.5, 0.0),  # nothing resolved yet
    (RECORD_BARS, 1, 0, 0.5, 0.0),  # flat; the record {0} holds no flat bar
    # long; record {0: up +0.1 long, 1: down -0.1}: p_L = 1, p_all = 1/2, m_L = 0.1, m_all = 0
    (RECORD_BARS, 2, 1, 0.5 + 1 / 51 * (1 - 1 / 2), 1 / 51 * 0.1),
    # flat; record {0, 1, 2}: p_F = 0, p_all = 2/3, m_F = -0.1, m_all = 0.1/3
    (RECORD_BARS, 3, 1, 0.5 + 1 / 51 * (0 - 2 / 3), 1 / 51 * (-0.1 - 0.1 / 3)),
    # long; record {0..3}: two long bars, both up
    (RECORD_BARS, 4, 2, 0.5 + 2 / 52 * (1 - 1 / 2), 2 / 52 * 0.1),
    # flat; record {0..4}: p_all = 3/5, m_all = 0.1/5
    (RECORD_BARS, 5, 2, 0.5 + 2 / 52 * (0 - 3 / 5), 2 / 52 * (-0.1 - 0.02)),
    # a 2-bar record: at t = 4 it is {2 long up, 3 flat down}; at t = 5 {3 flat down, 4 long up}
    (2, 4, 1, 0.5 + 1 / 51 * (1 - 1 / 2), 1 / 51 * 0.1),
    (2, 5, 1, 0.5 + 1 / 51 * (0 - 1 / 2), 1 / 51 * (-0.1 - 0.0)),
]


@pytest.mark.parametrize(
    ("record_bars", "t", "n_same", "prob_up", "expected_return"),
    HAND_CASES,
    ids=[f"record{c[0]}-bar{c[1]}" for c in HAND_CASES],
)
def test_views_match_a_hand_computation(
    record_bars: int, t: int, n_same: int, prob_up: float, expected_return: float
) -> None:
    candles = ohlcv("BTCUSDT", np.array(HAND_CLOSE), volume=np.array(HAND_VOLUME))
    v = views(VOLUME_SPIKE, candles, horizon=1, record_bars=record_bars)
    assert v.state.tolist() == [T, F, T, F, T, F]
    assert int(v.record[t]) == n_same
    assert v.prob_up[t] == pytest.approx(prob_up, rel=1e-12, abs=1e-12)
    assert v.expected_return[t] == pytest.approx(expected_return, rel=1e-9, abs=1e-12)
    assert SHRINK_K == 50  # the hand values' shrink n/(n+50): 1/51 with one same-state bar, 2/52 with two


def naive_views(state: np.ndarray, close: np.ndarray, horizon: int, record_bars: int) -> tuple[Any, ...]:
    """The docstring's formulas, one bar at a time."""
    n = close.shape[0]
    prob, er, record = np.full(n, 0.5), np.zeros(n), np.zeros(n, dtype=int)
    for t in range(n):
        last = t - horizon  # s + h <= t
        record_s = list(range(max(0, last - record_bars + 1), last + 1))
        r = np.array([close[s + horizon] / close[s] - 1 for s in record_s])
        same = np.array([state[s] == state[t] for s in record_s], dtype=bool)
        record[t] = int(same.sum())
        if same.any():
            shrink = same.sum() / (same.sum() + SHRINK_K)
            prob[t] = 0.5 + shrink * ((r[same] > 0).mean() - (r > 0).mean())
            er[t] = shrink * (r[same].mean() - r.mean())
    return prob, er, record


@pytest.mark.parametrize(("horizon", "record_bars"), [(1, 5), (4, 30), (HORIZON, RECORD_BARS)])
def test_views_match_the_formula_computed_bar_by_bar(horizon: int, record_bars: int) -> None:
    rng = np.random.default_rng(horizon * 1000 + record_bars)
    n = 300
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    volume = np.where(rng.random(n) < 0.3, 10.0, 1.0)
    v = views(VOLUME_SPIKE, ohlcv("BTCUSDT", close, volume=volume), horizon=horizon, record_bars=record_bars)
    np.testing.assert_array_equal(v.state, volume > 5)
    prob, er, record = naive_views(v.state, close, horizon, record_bars)
    np.testing.assert_array_equal(v.record, record)
    np.testing.assert_allclose(v.prob_up, prob, rtol=0, atol=1e-12)
    np.testing.assert_allclose(v.expected_return, er, rtol=0, atol=1e-12)


@pytest.mark.parametrize("strategy", [ALWAYS_IN, NEVER_IN], ids=["always_in", "never_in"])
@pytest.mark.parametrize("seed", [1, 2])
def test_a_strategy_always_or_never_in_the_market_has_exactly_no_edge(
    strategy: StrategySpec, seed: int
) -> None:
    # Trending, so the market's own drift is far from zero: the vote must still carry none of it.
    candles = ar1_candles("BTCUSDT", 600, phi=0.3, sigma=0.01, seed=seed)
    v = views(strategy, candles)
    assert len(set(v.state.tolist())) == 1
    assert (v.prob_up == 0.5).all() and (v.expected_return == 0.0).all()
    assert int(v.record[-1]) == len(candles) - HORIZON  # the whole record is the same state


def test_a_state_planted_before_up_moves_votes_up_while_long_and_down_while_flat() -> None:
    candles = planted_candles(1500, seed=3)
    v = views(VOLUME_SPIKE, candles)
    after = np.arange(len(candles)) >= 100  # once the record holds both states
    long_, flat = after & v.state, after & ~v.state
    assert long_.sum() > 30 and flat.sum() > 500
    assert (v.prob_up[long_] > 0.5).all() and (v.expected_return[long_] > 0).all()
    assert (v.prob_up[flat] < 0.5).all() and (v.expected_return[flat] < 0).all()


def test_a_view_at_bar_t_does_not_depend_on_candles_after_t() -> None:
    candles = planted_candles(1200, seed=4)
    cut = 700
    t = int(candles.open_time[cut])
    edited = edited_after(candles, t, seed=5, extra=100)
    a, b = views(VOLUME_SPIKE, candles), views(VOLUME_SPIKE, edited)
    for name in ("state", "prob_up", "expected_return", "record"):
        np.testing.assert_array_equal(getattr(a, name)[: cut + 1], getattr(b, name)[: cut + 1], err_msg=name)
    assert not np.array_equal(a.prob_up[cut + 1 :], b.prob_up[cut + 1 : len(candles)])  # the edit shows later
    for index in (0, 350, cut):
        assert vote_at(7, 3, candles, a, index) == vote_at(7, 3, edited, b, index)


def test_vote_at_is_the_view_of_that_bar_shaped_like_a_prediction() -> None:
    candles = planted_candles(400, seed=6)
    v = views(VOLUME_SPIKE, candles)
    for index in (0, 150, 399):
        vote = vote_at(7, 3, candles, v, index)
        p = float(v.prob_up[index])
        assert (vote.symbol, vote.interval, vote.horizon) == ("BTCUSDT", "1h", HORIZON)
        assert vote.model_version == "strategy-7-v3" and voter_id(7) == "strategy:7"
        assert vote.as_of == int(candles.open_time[index]) == START_MS + index * HOUR_MS
        assert vote.prob_up == p and vote.confidence == abs(2 * p - 1)
        assert vote.expected_return == float(v.expected_return[index])
        assert vote.action == ("buy" if v.state[index] else "sell")


# --- strategy voters in a replay -------------------------------------------------------------------

PLANTED_ID, ALWAYS_BTC_ID, ALWAYS_ETH_ID = 1, 2, 3


@pytest.fixture(scope="module")
def strategy_replay() -> tuple[ReplayParams, ReplayInputs, Any]:
    """Strategies only (no agents): the planted volume spike and an always-in strategy on BTCUSDT, and an
    always-in strategy on a random-walk ETHUSDT; low costs."""
    warmup, n = 200, 1700
    candles = {"BTCUSDT": planted_candles(n, seed=7), "ETHUSDT": ar1_candles("ETHUSDT", n, seed=8)}
    strategies = [
        StrategyInput(PLANTED_ID, 1, "volume spike", VOLUME_SPIKE),
        StrategyInput(ALWAYS_BTC_ID, 1, "always in", ALWAYS_IN),
        StrategyInput(ALWAYS_ETH_ID, 1, "always in", spec(cmp(CLOSE, ">", 0), cmp(CLOSE, "<", 0), "ETHUSDT")),
    ]
    params = ReplayParams(
        symbols=("BTCUSDT", "ETHUSDT"),
        interval="1h",
        warmup=warmup,
        retrain_every=24,
        initial_balance=Decimal(10_000),
        quote_asset="USDT",
        costs=CostModel(0.0005, 1.0),
        limits=RiskLimits(),
    )
    inputs = ReplayInputs(candles, {}, strategies, usdt_filters(candles))
    return params, inputs, run_replay(params, inputs)


def series_of(result: Any, strategy_id: int) -> Any:
    return next(v for v in result.voters if v.voter == voter_id(strategy_id))


def test_replayed_strategy_votes_are_the_strategys_views_at_each_closed_bar(strategy_replay: Any) -> None:
    params, inputs, result = strategy_replay
    assert result.retrains == []  # no agents
    for strategy in inputs.strategies:
        series = series_of(result, strategy.id)
        v = views(strategy.spec, inputs.candles[strategy.spec.symbol])
        rows = params.warmup + np.arange(result.step_times.shape[0])
        np.testing.assert_array_equal(series.prob_up, v.prob_up[rows])
        np.testing.assert_array_equal(series.expected, v.expected_return[rows])
        assert series.kind == "strategy" and series.horizon == HORIZON


def test_a_planted_edge_gains_weight_and_an_always_in_strategy_never_has_one(strategy_replay: Any) -> None:
    params, inputs, result = strategy_replay
    planted = series_of(result, PLANTED_ID)
    assert planted.weights[0].value == PRIOR_WEIGHT
    assert planted.weights[-1].value > PRIOR_WEIGHT + 0.3 and planted.weights[-1].calibration > 0
    # Past its first few dozen resolutions (too few to judge), it stays above the prior.
    assert all(w.value > PRIOR_WEIGHT for w in planted.weights[100:])

    for sid in (ALWAYS_BTC_ID, ALWAYS_ETH_ID):
        always = series_of(result, sid)
        assert (always.prob_up == 0.5).all() and (always.expected == 0.0).all()
        # prob_up = 1/2 has no direction, so it never enters the calibration: the weight stays the prior.
        assert all(w.value == PRIOR_WEIGHT and w.resolved == 0 for w in always.weights)
        for d in result.main.decisions:
            vote = next(x for x in d["votes"] if x["agent"] == voter_id(sid))
            assert vote["prob_up"] == 0.5 and vote["expected_return"] == 0.0
        # Alone, with no edge, it never enters.
        assert result.comparisons["voters_alone"][voter_id(sid)]["fills"] == 0

    # Every entry is the planted strategy's: bought on BTCUSDT only, at a bar where it is long.
    state = views(VOLUME_SPIKE, inputs.candles["BTCUSDT"]).state
    buys = [d for d in result.main.decisions if d["action"] == "buy"]
    assert len(buys) >= 20
    assert all(d["symbol"] == "BTCUSDT" and state[params.warmup + d["step"]] for d in buys)
    # ... and the edge pays after costs.
    assert result.main.final_equity > float(params.initial_balance)
    assert result.comparisons["voters_alone"][voter_id(PLANTED_ID)]["final_equity"] > float(
        params.initial_balance
    )


@pytest.mark.parametrize(("fee", "slippage_bps"), [(0.0, 0.0), (0.001, 5.0)])
def test_an_always_in_strategy_alone_never_trades_even_without_costs(fee: float, slippage_bps: float) -> None:
    """Its expected return is exactly 0, so its edge is minus the round trip: never above 0, even at 0."""
    candles = {"BTCUSDT": ar1_candles("BTCUSDT", 600, phi=0.3, seed=9)}  # trending: drift is not an edge
    params = ReplayParams(
        symbols=("BTCUSDT",),
        interval="1h",
        warmup=50,
        retrain_every=24,
        initial_balance=Decimal(10_000),
        quote_asset="USDT",
        costs=CostModel(fee, slippage_bps),
        limits=RiskLimits(min_confidence=0.0),
    )
    inputs = ReplayInputs(candles, {}, [StrategyInput(1, 1, "always in", ALWAYS_IN)], usdt_filters(candles))
    result = run_replay(params, inputs)
    assert len(result.main.decisions) == 550
    assert all(d["action"] == "hold" and len(d["votes"]) == 1 for d in result.main.decisions)
    assert all(e["edge"] <= 0 for d in result.main.decisions for e in d["edges"])
    assert result.main.fills == [] and result.main.final_equity == float(params.initial_balance)
