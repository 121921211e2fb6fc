"""The Mother AI replay held to its own rules (``mother_ai.replay``'s docstring): fills at the next open with
slippage, the fee and the filters; nothing from the future; no edge on a random walk; a planted pattern
learnt and paid for; walk-forward retraining; skill weights moving on the replay clock.

Every expected value is recomputed here from the candles, the filters and the written rules, never copied
from a run. Sizes are small on purpose: hourly candles, logreg-only agents on the compact feature set with
a 4000-bar window, so one replay of a few thousand steps takes a few seconds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from agents.generic_agent import AgentConfig
from mother_ai.fills import CostModel
from mother_ai.policy import RiskLimits
from mother_ai.replay import ReplayInputs, ReplayParams, ReplayResult, RetrainMode, retrain_due, run_replay
from mother_ai.weighting import PRIOR_WEIGHT, SHRINK_K, SKILL_WINDOW
from tests.support.candles import HOUR_MS, START_MS, ar1_candles, edited_after
from tests.support.exchange import usdt_filters

PLANTED, PLAIN = "BTCUSDT", "ETHUSDT"  # AR(1) returns (learnable) / a pure random walk
SYMBOLS = (PLANTED, PLAIN)
HORIZON = 4
TRAIN_BARS = 4000
WARMUP = 4000
RETRAIN_EVERY = 120  # below the agents' 168 h max model age, so no model goes stale between retrains
INITIAL = Decimal(10_000)
K_SIGMA = 3.0  # one-sided 3-sigma bounds: an honest replay breaks one with probability ~0.13%


def agent(symbol: str, **overrides: Any) -> AgentConfig:
    values: dict[str, Any] = {
        "symbol": symbol,
        "interval": "1h",
        "horizon": HORIZON,
        "candidates": ("logreg",),
        "feature_set": "compact",
        "train_bars": TRAIN_BARS,
        "fee_rate": 0.0,  # the labels' dead zone: 0 keeps every row, so 4000 bars are enough to train
    }
    values.update(overrides)
    return AgentConfig(**values)


def replay_params(
    symbols: tuple[str, ...] = SYMBOLS,
    *,
    fee: float,
    slippage_bps: float,
    warmup: int = WARMUP,
    retrain_every: int = RETRAIN_EVERY,
    mode: RetrainMode = "refit",
) -> ReplayParams:
    return ReplayParams(
        symbols=symbols,
        interval="1h",
        warmup=warmup,
        retrain_every=retrain_every,
        initial_balance=INITIAL,
        quote_asset="USDT",
        costs=CostModel(fee, slippage_bps),
        limits=RiskLimits(),
        retrain_mode=mode,
    )


@dataclass(frozen=True)
class Run:
    params: ReplayParams
    inputs: ReplayInputs
    result: ReplayResult


def replay(params: ReplayParams, inputs: ReplayInputs) -> Run:
    return Run(params, inputs, run_replay(params, inputs))


@pytest.fixture(scope="module")
def planted() -> Run:
    """phi = 0.5 AR(1) returns on BTCUSDT, a random walk on ETHUSDT, both sigma 1%/bar, each open 0.1% off
    the previous close (so the next open is not the decision's close); low costs."""
    n = WARMUP + 2500
    candles = {
        PLANTED: ar1_candles(PLANTED, n, phi=0.5, gap=0.001, seed=1),
        PLAIN: ar1_candles(PLAIN, n, phi=0.0, gap=0.001, seed=11),
    }
    inputs = ReplayInputs(
        candles=candles,
        agents={s: agent(s) for s in SYMBOLS},
        strategies=[],
        filters=usdt_filters(SYMBOLS),
    )
    return replay(replay_params(fee=0.0005, slippage_bps=2.0), inputs)


def voter(result: ReplayResult, name: str) -> Any:
    return next(v for v in result.voters if v.voter == name)


def log_returns(close: np.ndarray) -> np.ndarray:
    return np.diff(np.log(np.asarray(close, dtype=np.float64)))


def exposures(result: ReplayResult) -> np.ndarray:
    """F_j: the share of equity in positions at step j's close (after the fill at that candle's open),
    i.e. what was held through candle warmup + j; step 0 holds nothing yet."""
    out = []
    for d in result.main.decisions[1:]:
        equity, cash = Decimal(d["portfolio"]["equity"]), Decimal(d["portfolio"]["cash"])
        out.append(float(1 - cash / equity) if equity > 0 else 0.0)
    return np.asarray(out)


# --- 1. fills ---------------------------------------------------------------------------------------


def test_every_fill_is_the_next_open_moved_by_slippage_on_the_tick_with_the_fee_and_the_lot_step(
    planted: Run,
) -> None:
    params, inputs, result = planted.params, planted.inputs, planted.result
    fills, decisions = result.main.fills, result.main.decisions
    assert {f["side"] for f in fills} == {"BUY", "SELL"}, "the run must exercise both sides"
    slip = Fraction(str(params.costs.slippage_bps)) / 10_000
    fee_rate = Fraction(str(params.costs.fee_rate))
    cash = Fraction(INITIAL)
    held = dict.fromkeys(SYMBOLS, Fraction(0))
    for fill in fills:
        symbol, side = fill["symbol"], fill["side"]
        candles, rules = inputs.candles[symbol], inputs.filters[symbol]
        assert rules is not None
        row = WARMUP + fill["step"] + 1  # the candle after the decision step's candle
        assert fill["fill_time"] == int(candles.open_time[row]) == int(result.step_times[fill["step"]])
        reference = Fraction(repr(float(candles.open[row])))
        assert Fraction(fill["reference_price"]) == reference
        tick, step = Fraction(rules.tick_size), Fraction(rules.step_size)
        if side == "BUY":  # against the trader: up, then up to the tick
            expected_price = math.ceil(reference * (1 + slip) / tick) * tick
        else:
            expected_price = math.floor(reference * (1 - slip) / tick) * tick
        price, quantity = Fraction(fill["price"]), Fraction(fill["quantity"])
        assert price == expected_price, fill
        assert (quantity / step).denominator == 1 and quantity >= Fraction(rules.min_qty), fill
        decision = decisions[fill["step"]]
        assert decision["order"] == fill and decision["action"] == side.lower()
        if side == "BUY":  # the decided quote amount, at the fill price, down to the LOT_SIZE step
            assert quantity == math.floor(Fraction(decision["size_quote"]) / price / step) * step, fill
        else:  # an exit sells the whole position
            assert quantity == held[symbol] == Fraction(decision["quantity"]), fill
        notional = price * quantity
        fee = Fraction(math.ceil(notional * fee_rate * 10**8), 10**8)  # 8 decimals, rounded up
        assert Fraction(fill["notional"]) == notional and Fraction(fill["fee"]) == fee, fill
        if side == "BUY":
            cash -= notional + fee
            held[symbol] += quantity
        else:
            cash += notional - fee
            held[symbol] -= quantity
        assert cash >= 0
    # The account the fills imply, marked at the last closes, is the replay's final equity.
    last = {s: Fraction(repr(float(inputs.candles[s].close[-1]))) for s in SYMBOLS}
    implied = cash + sum(held[s] * last[s] for s in SYMBOLS)
    assert result.main.final_equity == pytest.approx(float(implied), rel=1e-12, abs=1e-6)


def test_each_step_marks_the_account_at_its_candles_closes_before_its_own_fill(planted: Run) -> None:
    inputs, result = planted.inputs, planted.result
    by_step = {f["step"]: f for f in result.main.fills}
    cash, held = Fraction(INITIAL), dict.fromkeys(SYMBOLS, Fraction(0))
    for j, decision in enumerate(result.main.decisions):
        marks = {s: Fraction(repr(float(inputs.candles[s].close[WARMUP + j]))) for s in SYMBOLS}
        # Each position's value is kept to 8 decimals, hence the tolerance.
        equity = cash + sum(held[s] * marks[s] for s in SYMBOLS)
        assert abs(Fraction(decision["portfolio"]["equity"]) - equity) <= Fraction(len(SYMBOLS), 10**8), j
        assert result.main.equity[j] == pytest.approx(float(equity), rel=1e-12, abs=1e-7), j
        fill = by_step.get(j)  # filled at the next candle's open: counts from the next step's marks on
        if fill is not None:
            notional, fee, quantity = (Fraction(fill[k]) for k in ("notional", "fee", "quantity"))
            buy = fill["side"] == "BUY"
            cash += -(notional + fee) if buy else notional - fee
            held[fill["symbol"]] += quantity if buy else -quantity


def test_the_daily_loss_limit_counts_utc_days_of_the_replay_clock() -> None:
    """A tight limit (0.2% of the day's starting equity): once the loss reaches it, no entry until the next
    UTC day; each day starts from the equity at its first decision. Recomputed from the decisions' equity."""
    limit = 0.002
    n = WARMUP + 600
    inputs = ReplayInputs(
        {PLANTED: ar1_candles(PLANTED, n, phi=0.5, seed=61)},
        {PLANTED: agent(PLANTED)},
        [],
        usdt_filters([PLANTED]),
    )
    params = replace(
        replay_params((PLANTED,), fee=0.0005, slippage_bps=2.0), limits=RiskLimits(daily_loss_limit=limit)
    )
    result = run_replay(params, inputs)
    day, start, breached = "", Decimal(0), False
    breached_days: list[str] = []
    buy_days: list[str] = []
    for d in result.main.decisions:
        equity = Decimal(d["portfolio"]["equity"])
        today = datetime.fromtimestamp(d["time"] / 1000, tz=UTC).date().isoformat()
        if today != day:
            day, start, breached = today, equity, False
        if not breached and (start - equity) / start >= Decimal(str(limit)):
            breached = True
            breached_days.append(day)
        state = d["daily_loss"]
        assert (state["day"], Decimal(state["start_equity"]), state["breached"]) == (day, start, breached), d[
            "step"
        ]
        if d["action"] == "buy":
            assert not breached, d["step"]
            buy_days.append(day)
    assert len(breached_days) >= 2, "the run must breach the limit"
    assert any(b > breached_days[0] for b in buy_days), "entries resume on a later UTC day"


def test_every_order_is_the_decision_before_it_and_the_last_decision_is_not_filled(planted: Run) -> None:
    decisions = planted.result.main.decisions
    open_time = planted.inputs.candles[PLANTED].open_time
    # Step j is candle warmup + j's close: the first `warmup` candles are history only.
    assert len(decisions) == len(open_time) - WARMUP
    assert [d["step"] for d in decisions] == list(range(len(decisions)))
    assert [d["time"] for d in decisions] == (open_time[WARMUP:] + HOUR_MS).tolist()
    np.testing.assert_array_equal(planted.result.step_times, open_time[WARMUP:] + HOUR_MS)
    for d in decisions[:-1]:
        assert (d["order"] is not None) == (d["action"] != "hold"), d["step"]
        if d["order"] is not None:
            assert d["order"]["side"] == d["action"].upper() and d["order"]["symbol"] == d["symbol"]
    assert decisions[-1]["order"] is None  # no next open to fill at
    filled = [d["order"] for d in decisions if d["order"] is not None and d["order"]["status"] == "FILLED"]
    assert filled == planted.result.main.fills


# --- 2. no future -----------------------------------------------------------------------------------


def test_nothing_decided_or_filled_up_to_t_depends_on_candles_after_t(planted: Run) -> None:
    base = planted.result
    # Candles 0..cut stay, every candle opening after t changes. The cut is a retrain point (candle cut
    # closes on a multiple of retrain_every), so a training window reaching one candle too far shows.
    open_time = planted.inputs.candles[PLANTED].open_time
    cut = next(
        i for i in range(WARMUP + 1200, len(open_time)) if (open_time[i] // HOUR_MS + 1) % RETRAIN_EVERY == 0
    )
    t = int(open_time[cut])
    assert any(r["time"] == t + HOUR_MS for r in base.retrains)
    extra = 150
    candles = {
        s: edited_after(c, t, seed=100 + i, extra=extra)
        for i, (s, c) in enumerate(planted.inputs.candles.items())
    }
    other = run_replay(planted.params, replace(planted.inputs, candles=candles))
    assert len(other.main.decisions) == len(base.main.decisions) + extra

    before = [d for d in base.main.decisions if d["time"] <= t]
    assert len(before) == cut - WARMUP and sum(d["order"] is not None for d in before) >= 20
    assert other.main.decisions[: len(before)] == before  # the whole payload: votes, edges, order, reason
    # The decision at t's close (candle `cut`) still sees only unchanged candles; only its fill, at the
    # next (changed) open, may differ.
    at = len(before)
    a, b = base.main.decisions[at], other.main.decisions[at]
    assert a["time"] == t + HOUR_MS
    for key in ("action", "symbol", "size_quote", "quantity", "votes", "edges"):
        assert a[key] == b[key], key
    assert [v["prob_up"] for v in a["votes"]] == [v["prob_up"] for v in b["votes"]]

    early = [f for f in base.main.fills if f["fill_time"] <= t]
    assert early and [f for f in other.main.fills if f["fill_time"] <= t] == early
    for series, edited in zip(base.voters, other.voters, strict=True):
        np.testing.assert_array_equal(series.prob_up[: at + 1], edited.prob_up[: at + 1])
        assert series.weights[: at + 1] == edited.weights[: at + 1]

    def no_seconds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows if r["time"] <= t + HOUR_MS]

    assert no_seconds(other.retrains) == no_seconds(base.retrains)
    # ... and the edit did reach the replay: the later votes differ.
    assert any(
        not np.array_equal(x.prob_up[at + 1 :], y.prob_up[at + 1 : len(x.prob_up)], equal_nan=True)
        for x, y in zip(base.voters, other.voters, strict=True)
    )


# --- 3. honesty on a random walk --------------------------------------------------------------------


def test_on_a_random_walk_the_replay_neither_beats_buy_and_hold_nor_makes_money_beyond_noise() -> None:
    """Both symbols driftless random walks (sigma 2%/bar), paper costs fee 0.1% and slippage 5 bps.

    The noise bounds. Each bar opens at the previous close, so a position filled at candle c's open holds
    through c's close-to-close log return r_c. Let F_c be the share of equity held during candle c
    (decided at the close before it, from candles up to then). Long-only spot with cash >= 0 keeps
    0 <= F <= 1, fees and slippage only lower equity, and

        log(E_end / E_0) <= sum_c log(1 + sum_s F_s,c (e^r_s,c - 1)) ~ sum_c sum_s F_s,c r_s,c + conv,

    where conv <= sigma^2/2 * sum_c F_c is the one-bar convexity gain of holding a log-normal price. Without
    a look into the future, F_c is fixed before r_c, and the r are independent with mean 0, so the sum
    is a martingale of standard deviation sigma * sqrt(sum_c sum_s F_s,c^2) <= sigma * sqrt(sum_c F_c^2).
    Hence (a) it makes no money beyond K·sigma·sqrt(sum F^2) + conv. Against buy and hold (log return
    sum_c r_s,c minus one fee and slippage), the ex-post better symbol does at least as well as their
    average, and  log E - mean_s log BH_s = sum_c sum_s (F_s,c - 1/2) r_s,c + conv + costs  has standard
    deviation sigma * sqrt(sum_c sum_s (F_s,c - 1/2)^2) <= sigma * sqrt(m / 2) over m candles (F_s in [0, 1],
    sum_s F_s <= 1). Hence (b) it beats the better buy and hold by at most K·sigma·sqrt(m/2) + conv +
    costs. sigma is the larger of the two symbols' sample standard deviations over those candles.
    """
    warmup, steps = WARMUP, 2500
    n = warmup + steps
    # 2%/bar: moves large enough against the costs that the agents' views do trade (a replay that never
    # trades would pass any bound); the agents' own 0.1% fee sets their labels' dead zone.
    candles = {
        PLANTED: ar1_candles(PLANTED, n, sigma=0.02, seed=21),
        PLAIN: ar1_candles(PLAIN, n, sigma=0.02, seed=31),
    }
    agents = {s: agent(s, fee_rate=0.001) for s in SYMBOLS}
    params = replay_params(fee=0.001, slippage_bps=5.0, warmup=warmup)
    result = run_replay(params, ReplayInputs(candles, agents, [], usdt_filters(SYMBOLS)))

    assert all(r["ok"] for r in result.retrains) and len(result.retrains) >= 2 * 10
    assert all(np.isfinite(v.prob_up).mean() > 0.99 for v in result.voters), "the agents must vote"
    held = exposures(result)  # candles warmup+1 .. n-1
    assert held.shape[0] == n - 1 - warmup
    assert len(result.main.fills) >= 20 and held.mean() > 0.01, "the replay must trade to be tested"
    sigma = max(float(np.std(log_returns(c.close)[warmup:], ddof=1)) for c in candles.values())
    conv = sigma**2 / 2 * float(held.sum())
    mother = math.log(result.main.final_equity / float(INITIAL))

    money_bound = K_SIGMA * sigma * math.sqrt(float((held**2).sum())) + conv
    assert mother <= money_bound, (mother, money_bound)

    holds = result.comparisons["buy_and_hold"]
    best = max(math.log1p(h["total_return"]) for h in holds.values())
    costs = math.log1p(params.costs.fee_rate) + math.log1p(params.costs.slippage)
    hold_bound = K_SIGMA * sigma * math.sqrt(held.shape[0] / 2) + conv + costs
    assert mother - best <= hold_bound, (mother, best, hold_bound)
    # The bound's own input is what the replay says buy and hold earned: recomputed from the candles.
    for s, c in candles.items():
        entry = float(c.open[warmup + 1]) * (1 + params.costs.slippage) * (1 + params.costs.fee_rate)
        assert holds[s]["total_return"] == pytest.approx(float(c.close[-1]) / entry - 1, rel=1e-9)


# --- 4. a planted pattern ---------------------------------------------------------------------------


def test_a_planted_pattern_is_learnt_paid_for_and_its_voter_outweighs_the_random_walks(planted: Run) -> None:
    result = planted.result
    assert len(result.main.fills) >= 50
    mother = math.log(result.main.final_equity / float(INITIAL))
    # Makes money after fees, and beyond the noise a no-skill trader with the same exposure would have
    # (test 3's bound (a); sigma of the AR(1) series' bars).
    held = exposures(result)
    sigma = max(  # positions change at the opens: open-to-open or close-to-close, the larger
        float(np.std(log_returns(prices)[WARMUP:], ddof=1))
        for c in planted.inputs.candles.values()
        for prices in (c.open, c.close)
    )
    noise = K_SIGMA * sigma * math.sqrt(float((held**2).sum())) + sigma**2 / 2 * float(held.sum())
    assert result.main.final_equity > float(INITIAL) and mother > noise, (mother, noise)
    # The money comes from the planted symbol: its round trips gained.
    assert sum(float(f["realised_pnl"]) for f in result.main.fills if f["symbol"] == PLANTED) > 0

    # Weights. The last weight alone is a poor judge: w is the calibration slope lambda of the last 500
    # resolved votes clipped to [0, 1], and a random-walk model's votes sit close to 1/2 (|p - 1/2| ~ 0.03),
    # so its lambda has a standard error of order 0.5 / (0.03 * sqrt(500 / 4 overlapping horizons)) ~ 1.5:
    # it swings between the clip's two ends during a replay. Over the half of the replay after the first
    # window has filled, the planted voter's weight is on average above the random walk's, and it ends
    # above the prior.
    planted_w = [w.value for w in voter(result, PLANTED).weights]
    plain_w = [w.value for w in voter(result, PLAIN).weights]
    half = len(planted_w) // 2
    assert half > SKILL_WINDOW + HORIZON
    assert np.mean(planted_w[half:]) > np.mean(plain_w[half:]) + 0.1, (
        np.mean(planted_w[half:]),
        np.mean(plain_w[half:]),
    )
    assert planted_w[-1] > PRIOR_WEIGHT


# --- 5. retraining ----------------------------------------------------------------------------------

RETRAIN_DUE_CASES = [
    # (tried, close time in hours since the epoch, interval, every, due)
    (False, 7, "1h", 24, True),  # the first close always trains
    (False, 48, "1h", 24, True),
    (True, 7, "1h", 24, False),
    (True, 48, "1h", 24, True),  # 48 candles since the epoch: a multiple of 24
    (True, 0, "1h", 24, True),
    (True, 49, "1h", 24, False),
    (True, 96, "4h", 24, True),  # 24 four-hour candles
    (True, 48, "4h", 24, False),  # 12 four-hour candles
    (True, 6000, "1h", 250, True),  # 24 * 250
    (True, 6001, "1h", 250, False),
]


@pytest.mark.parametrize(("tried", "hours", "interval", "every", "due"), RETRAIN_DUE_CASES)
def test_retrain_due_is_the_first_close_and_whole_multiples_since_the_epoch(
    tried: bool, hours: int, interval: str, every: int, due: bool
) -> None:
    assert retrain_due(tried, hours * HOUR_MS, interval, every) is due


def expected_retrain_times(step_times: np.ndarray, every: int) -> list[int]:
    first = int(step_times[0])
    return [first] + [int(c) for c in step_times[1:] if (int(c) // HOUR_MS) % every == 0]


def check_windows(rows: list[dict[str, Any]], train_bars: int) -> None:
    for r in rows:
        step_open = r["time"] - HOUR_MS  # the candle that closed at this step
        assert r["window_end_time"] <= step_open
        assert r["window_end_time"] == step_open  # trained on the latest closed candles
        closed = (step_open - START_MS) // HOUR_MS + 1
        assert r["rows"] == min(train_bars, closed) <= train_bars
        assert r["window_start_time"] == r["window_end_time"] - (r["rows"] - 1) * HOUR_MS


def test_refit_mode_trains_fully_first_then_refits_the_same_family_at_each_retrain_point(
    planted: Run,
) -> None:
    result = planted.result
    assert (int(result.step_times[0]) // HOUR_MS) % RETRAIN_EVERY != 0, "the first step is not a multiple"
    for symbol in SYMBOLS:
        rows = [r for r in result.retrains if r["voter"] == symbol]
        assert [r["time"] for r in rows] == expected_retrain_times(result.step_times, RETRAIN_EVERY)
        assert all(r["ok"] for r in rows)
        assert [r["mode"] for r in rows] == ["full"] + ["refit"] * (len(rows) - 1)
        assert all((r["family"], r["params"]) == (rows[0]["family"], rows[0]["params"]) for r in rows)
        check_windows(rows, TRAIN_BARS)
        # Each step votes with the model of the latest retrain at or before it.
        series = voter(result, symbol)
        times = np.array([r["time"] for r in rows])
        for j, close in enumerate(result.step_times):
            latest = rows[int(np.searchsorted(times, close, side="right")) - 1]
            assert series.version[j] == latest["version"], j


def test_full_mode_runs_the_whole_search_at_every_retrain_point() -> None:
    n = WARMUP + 760
    inputs = ReplayInputs(
        {PLANTED: ar1_candles(PLANTED, n, phi=0.5, seed=41)},
        {PLANTED: agent(PLANTED)},
        [],
        usdt_filters([PLANTED]),
    )
    result = run_replay(replay_params((PLANTED,), fee=0.0005, slippage_bps=2.0, mode="full"), inputs)
    rows = result.retrains
    assert [r["time"] for r in rows] == expected_retrain_times(result.step_times, RETRAIN_EVERY)
    assert len(rows) >= 3 and all(r["ok"] and r["mode"] == "full" for r in rows)
    assert all(r["oos_metrics"] is not None for r in rows)  # each one ran its walk-forward evaluation
    assert [r["version"] for r in rows] == [f"replay-{PLANTED}-{i + 1}" for i in range(len(rows))]
    check_windows(rows, TRAIN_BARS)


def test_a_failed_training_waits_for_the_next_retrain_point_and_an_old_model_goes_stale() -> None:
    """Warm-up 3000 < what a 4000-bar walk-forward needs: the first trainings fail, the agent does not vote
    until one succeeds; its model then ages on the replay clock and stops voting past 100 h."""
    warmup, max_age = 3000, 100.0
    n = warmup + 1600
    inputs = ReplayInputs(
        {PLANTED: ar1_candles(PLANTED, n, phi=0.5, seed=51)},
        {PLANTED: agent(PLANTED, max_model_age_hours=max_age)},
        [],
        usdt_filters([PLANTED]),
    )
    result = run_replay(replay_params((PLANTED,), fee=0.0005, slippage_bps=2.0, warmup=warmup), inputs)
    rows = result.retrains
    assert [r["time"] for r in rows] == expected_retrain_times(result.step_times, RETRAIN_EVERY)
    ok = [r["ok"] for r in rows]
    first_ok = ok.index(True)
    assert first_ok >= 1 and all(ok[first_ok:]) and not any(ok[:first_ok])
    assert all(r["error"] for r in rows[:first_ok])
    good = [r for r in rows if r["ok"]]
    assert [r["mode"] for r in good] == ["full"] + ["refit"] * (len(good) - 1)  # no model before: full
    check_windows(good, TRAIN_BARS)

    series = voter(result, PLANTED)
    trained = np.array([r["time"] for r in good])
    stale_seen = fresh_seen = 0
    for j, close in enumerate(result.step_times):
        k = int(np.searchsorted(trained, close, side="right")) - 1
        ignored = series.ignored[j]
        if k < 0:
            assert np.isnan(series.prob_up[j]) and ignored is not None and ignored.code == "untrained", j
        elif (int(close) - int(trained[k])) / HOUR_MS > max_age:
            assert np.isnan(series.prob_up[j]) and ignored is not None and ignored.code == "stale", j
            stale_seen += 1
        else:
            assert np.isfinite(series.prob_up[j]) and ignored is None, j
            fresh_seen += 1
    assert stale_seen > 0 and fresh_seen > 0
    # An agent that does not vote is listed as ignored in the decision, never counted as a vote.
    for j, d in enumerate(result.main.decisions):
        voting = bool(np.isfinite(series.prob_up[j]))
        assert len(d["votes"]) == int(voting), j
        ignored = series.ignored[j]
        assert [i["code"] for i in d["ignored"]] == ([] if voting or ignored is None else [ignored.code]), j


# --- 6. skill weights -------------------------------------------------------------------------------


def expected_weights(prob_up: np.ndarray, realised: np.ndarray, horizon: int) -> np.ndarray:
    """The weight at every step from weighting's formula, with a vote made at step i resolving at step
    i + horizon (its target candle closes then): w = n/(n+K)·clip(lambda, 0, 1) + K/(n+K)·prior over the
    SKILL_WINDOW latest resolved votes."""
    size = prob_up.shape[0]
    out = np.empty(size)
    d = prob_up - 0.5
    y = (realised > 0).astype(float)
    for j in range(size):
        hi = j - horizon + 1  # votes 0 .. j - horizon have resolved
        lo = max(0, hi - SKILL_WINDOW)
        dd, yy = d[lo : max(hi, 0)], y[lo : max(hi, 0)]
        keep = dd != 0
        n = int(keep.sum())
        denominator = float((dd[keep] ** 2).sum())
        skill = (
            min(1.0, max(0.0, float((dd[keep] * (yy[keep] - 0.5)).sum()) / denominator))
            if denominator
            else 0.0
        )
        share = n / (n + SHRINK_K)
        out[j] = share * skill + (1 - share) * PRIOR_WEIGHT
    return out


def test_skill_weights_start_at_the_prior_and_move_only_as_votes_resolve_horizon_bars_later(
    planted: Run,
) -> None:
    result, candles = planted.result, planted.inputs.candles
    size = result.step_times.shape[0]
    for series in result.voters:
        assert np.isfinite(series.prob_up).all()  # the agents vote at every step of this run
        close = np.asarray(candles[series.symbol].close)
        rows = WARMUP + np.arange(size)
        # Each vote is made from the candle that just closed.
        np.testing.assert_array_equal(series.as_of, np.asarray(candles[series.symbol].open_time)[rows])
        assert series.resolved_step is not None and series.realised is not None
        resolvable = np.arange(size) < size - HORIZON  # the target candle exists
        np.testing.assert_array_equal(series.resolved_step[resolvable], np.flatnonzero(resolvable) + HORIZON)
        assert np.isnan(series.realised[~resolvable]).all()
        target = rows[resolvable] + HORIZON
        np.testing.assert_allclose(
            series.realised[resolvable], close[target] / close[rows[resolvable]] - 1, rtol=1e-12, atol=0
        )

        values = np.array([w.value for w in series.weights])
        assert values.shape[0] == size
        assert (values[:HORIZON] == PRIOR_WEIGHT).all()  # nothing has resolved before step `horizon`
        assert (values[HORIZON:] != PRIOR_WEIGHT).any()
        assert np.ptp(values[SKILL_WINDOW:]) > 0.05  # they keep moving with the record
        np.testing.assert_allclose(
            values, expected_weights(series.prob_up, series.realised, HORIZON), rtol=1e-9, atol=1e-12
        )
        # The decision at step j used the weight of step j.
        for j, d in enumerate(result.main.decisions):
            vote = next(v for v in d["votes"] if v["agent"] == series.voter)
            assert vote["weight"] == asdict(series.weights[j]), j


# --- comparisons ------------------------------------------------------------------------------------


def test_a_voter_alone_is_the_replay_with_that_voter_only(planted: Run) -> None:
    """Weights depend on a voter's own record only, so 'alone' in the comparisons is exactly the replay
    given that one agent."""
    alone = planted.result.comparisons["voters_alone"][PLANTED]
    only = run_replay(
        planted.params, replace(planted.inputs, agents={PLANTED: planted.inputs.agents[PLANTED]})
    )
    assert [v.voter for v in only.voters] == [PLANTED]
    assert alone["fills"] == len(only.main.fills) > 0
    assert alone["final_equity"] == only.main.final_equity
    assert alone["kind"] == "agent"
    # And the replay's own result for a single voter is its own 'alone' row.
    assert only.comparisons["voters_alone"][PLANTED]["final_equity"] == only.main.final_equity
