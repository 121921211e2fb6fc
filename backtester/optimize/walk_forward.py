"""Walk-forward optimisation: every window's in-sample search run together, each winner scored on the
out-of-sample bars that follow, the stitched out-of-sample curve, and how stable the winners are.

Honesty rules: a window's winner is chosen on its in-sample bars only and scored on the out-of-sample bars
that follow (signals there see only the past: each out-of-sample backtest is given the ``warmup`` bars
before its start to compute indicators, and trades only inside the window); the stitched out-of-sample
curve is made of those scores alone.

The windows share the workers: their studies advance in lockstep (``search.search_many``), and the
winners' scoring runs as one ``map`` (their in-sample neighbours, for each window's heatmap, as
another), so no window waits for the one before it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from backtester.metrics import compute_metrics
from backtester.optimize.search import (
    AnyTunable,
    Mapper,
    Recipe,
    SearchResult,
    SearchStats,
    Shared,
    Slice,
    TrialInput,
    TrialOutcome,
    evaluate_keeping_equity,
    evaluate_trial,
    neighbour_values,
    search_many,
    search_stats,
    simple_returns,
)
from backtester.optimize.windows import Window


def run_windows(
    mapper: Mapper,
    shared: Shared,
    recipe: Recipe,
    space: Mapping[str, AnyTunable],
    windows: Sequence[Window],
    *,
    study_prefix: str,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    **common: Any,
) -> list[WindowResult]:
    """Search each window's in-sample bars (studies ``<study_prefix>-w<index>``), then score each winner
    out of sample and in sample (its returns feed the window's statistics). `common` is what
    ``search_many`` takes besides the slices."""
    searches = search_many(
        mapper,
        shared,
        space,
        [Slice(w.is_start, w.is_end, f"{study_prefix}-w{i}") for i, w in enumerate(windows)],
        progress=progress,
        should_stop=should_stop,
        **common,
    )
    # Two backtests per window with a winner, in one map: out of sample (it trades alone there; the bars
    # before it only feed its indicators) and in sample.
    scored: list[tuple[int, TrialInput]] = []
    for index, (window, found) in enumerate(zip(windows, searches, strict=True)):
        if found.winner is not None:
            values = found.winner.values
            _signals, warmup, _spec = recipe.concrete(values)
            scored.append((index, TrialInput(values, window.oos_start, window.oos_end, lead=warmup + 1)))
            scored.append((index, TrialInput(values, window.is_start, window.is_end)))
    runs = mapper.map(evaluate_keeping_equity, [item for _, item in scored], shared, should_stop=should_stop)
    by_window: dict[int, list[TrialOutcome]] = {}
    for (index, _item), outcome in zip(scored, runs, strict=True):
        by_window.setdefault(index, []).append(outcome)
    # Each winner's neighbours one step away that its search did not try, on its own in-sample bars.
    asked: list[tuple[int, TrialInput]] = []
    axes = list(space)[:2]
    for index, (window, found) in enumerate(zip(windows, searches, strict=True)):
        if found.winner is None:
            continue
        known = {tuple(sorted(t.values.items())) for t in found.trials}
        for values in neighbour_values(found.winner.values, space, axes):
            if tuple(sorted(values.items())) not in known:
                asked.append((index, TrialInput(values, window.is_start, window.is_end)))
    near = mapper.map(evaluate_trial, [item for _, item in asked], shared, should_stop=should_stop)
    neighbours: dict[int, list[TrialOutcome]] = {}
    for (index, _item), outcome in zip(asked, near, strict=True):
        neighbours.setdefault(index, []).append(outcome)
    results = []
    direction = common.get("direction", "maximize")
    for index, (window, found) in enumerate(zip(windows, searches, strict=True)):
        oos, returns = None, None
        if index in by_window:
            oos, in_sample = by_window[index]
            if in_sample.equity is not None:
                returns = simple_returns(in_sample.equity, shared.config.initial_capital)
        summary = search_stats(found, returns, neighbours.get(index, []), space, direction=direction)
        results.append(WindowResult(window, found, summary, oos))
    return results


@dataclass(frozen=True, slots=True)
class WindowResult:
    window: Window
    search: SearchResult
    stats: SearchStats
    oos: TrialOutcome | None  # the winner scored on the window's out-of-sample bars


def stitch(
    shared: Shared, windows: Sequence[WindowResult]
) -> tuple[np.ndarray, np.ndarray, dict[str, Any] | None]:
    """The out-of-sample curves end to end, each one scaled to start where the previous ended; the
    metrics of that curve (trades counted per window)."""
    capital = shared.config.initial_capital
    curves: list[np.ndarray] = []
    times: list[np.ndarray] = []
    level = capital
    n_trades = 0
    for result in windows:
        if result.oos is None or result.oos.equity is None:
            continue
        curve = result.oos.equity / capital * level
        curves.append(curve)
        times.append(shared.candles.open_time[result.window.oos_start : result.window.oos_end])
        level = float(curve[-1])
        n_trades += int((result.oos.metrics or {}).get("n_trades") or 0)
    if not curves:
        return np.empty(0), np.empty(0, dtype=np.int64), None
    equity, open_time = np.concatenate(curves), np.concatenate(times)
    close = shared.candles.close[np.searchsorted(shared.candles.open_time, open_time)]
    metrics = compute_metrics(
        equity=equity,
        initial_capital=capital,
        open_time=open_time,
        interval=shared.candles.interval,
        close=close,
        trade_pnl=np.zeros(0),
        trade_returns=np.zeros(0),
        bars_in_position=0,
    )
    out = asdict(metrics)
    # Trade-based metrics are per window; the curve-based ones above are what the stitched curve says.
    for key in ("win_rate", "profit_factor", "expectancy", "avg_trade_return", "exposure"):
        out[key] = None
    out["n_trades"] = n_trades
    out["final_equity"] = level
    return equity, open_time, out


def stability(windows: Sequence[WindowResult], space: Mapping[str, AnyTunable]) -> dict[str, Any]:
    """How much the winners move between windows: per parameter the winners, how many distinct, and their
    spread as a fraction of the range; the share of windows whose winner is the most common one."""
    winners = [w.search.winner.values for w in windows if w.search.winner is not None]
    per_param: dict[str, Any] = {}
    for name, tunable in space.items():
        values = [float(v[name]) for v in winners]
        low, high = tunable.extremes()
        width = high - low
        per_param[name] = {
            "winners": values,
            "distinct": len(set(values)),
            "relative_spread": (float(np.std(values)) / width) if values and width > 0 else None,
        }
    keys = [tuple(sorted(v.items())) for v in winners]
    modal = max((keys.count(k) for k in set(keys)), default=0)
    share = modal / len(keys) if keys else None
    spreads = [p["relative_spread"] for p in per_param.values() if p["relative_spread"] is not None]
    stable = bool(keys) and ((share is not None and share >= 0.5) or (bool(spreads) and max(spreads) <= 0.25))
    return {"parameters": per_param, "modal_share": share, "stable": stable}
