"""Backtest service: candles from the store, signals from a strategy, the engine, stored results, sweeps.

The strategy arrives as anything with `name`, `params`, `warmup` and `signals(candles)` (the
registry's `ResolvedStrategy`), so this floor never imports the registry above it. A sweep runs its
combinations on a `Compute` backend (worker processes or a Dask cluster), so it takes a picklable
`SignalFactory` instead of strategies: each worker builds its own from the parameters.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar, get_args

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from backtester.columnar import pack_curve, pack_trades, unpack_curve, unpack_trades
from backtester.metrics import drawdown_series
from backtester.runner import BacktestConfig, BacktestResult, Trade, TradeColumns, run_backtest
from db import storage
from db.models import BacktestRun, utcnow
from utils.compute import Compute
from utils.errors import InvalidInput, NotFound
from utils.market_data.candles import Candles, DataSource
from utils.market_data.market import MarketData

R = TypeVar("R")

MAX_CURVE_POINTS = 2000
MAX_SWEEP_COMBINATIONS = 256
RankMetric = Literal[
    "total_return",
    "cagr",
    "sharpe",
    "sortino",
    "calmar",
    "win_rate",
    "profit_factor",
    "expectancy",
    "avg_trade_return",
    "max_drawdown",
    "n_trades",
    "exposure",
]
RANK_METRICS: tuple[RankMetric, ...] = get_args(RankMetric)
_LOWER_IS_BETTER = {"max_drawdown"}


class _Spec(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


class SignalSource(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def spec(self) -> _Spec | None: ...  # JSON strategies: stored with the backtest
    @property
    def params(self) -> dict[str, Any]: ...
    @property
    def warmup(self) -> int: ...
    @property
    def kind(self) -> str: ...  # builtin, saved or inline
    @property
    def id(self) -> int | None: ...  # a saved strategy's id and version
    @property
    def version(self) -> int | None: ...

    def signals(self, candles: Candles) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True, slots=True)
class BacktestRequest:
    symbol: str
    interval: str
    start_ms: int | None
    end_ms: int | None
    config: BacktestConfig


@dataclass(frozen=True, slots=True)
class StoredBacktest:
    """A stored row with its blobs unpacked: the curve's open times and equity, the closed trades."""

    run: BacktestRun
    times: np.ndarray
    equity: np.ndarray
    trades: TradeColumns


def load_candles(
    market: MarketData, request: BacktestRequest, warmup: int
) -> tuple[Candles, DataSource, bool]:
    answer = market.history(
        request.symbol, request.interval, start_ms=request.start_ms, end_ms=request.end_ms
    )
    needed = warmup + 2  # warm-up, one bar to signal on, one to fill at
    if len(answer.candles) < needed:
        raise InvalidInput(
            f"Not enough candles: this strategy needs at least {needed} {request.interval} candles, "
            f"the range has {len(answer.candles)}.",
            code="not_enough_candles",
            details={"needed": needed, "available": len(answer.candles)},
        )
    return answer.candles, answer.source, answer.stale


def run_and_store(
    market: MarketData, sessions: sessionmaker[Session], strategy: SignalSource, request: BacktestRequest
) -> StoredBacktest:
    """Run one backtest and store it; the stored row is what every later read returns."""
    stored = _run(market, strategy, request)
    _save(sessions, stored)
    return stored


def run_store_and_render(
    market: MarketData,
    sessions: sessionmaker[Session],
    strategy: SignalSource,
    request: BacktestRequest,
    render: Callable[[StoredBacktest], R],
) -> R:
    """`run_and_store`, with `render(stored)` (a response body) made while the row is written.

    Packing the blobs and the commit spend most of their time outside the GIL (Parquet's encoders and
    zstd, SQLite's write), so on two cores the body costs little extra time. The answer is returned
    only once the row is committed: a failed write raises and the rendered body is dropped. `render`
    may read the row's columns and the stored arrays, never the row's blobs (being written meanwhile).
    """
    stored = _run(market, strategy, request)
    failure: list[BaseException] = []

    def save() -> None:
        try:
            _save(sessions, stored)
        except BaseException as exc:  # handed to the caller's thread below
            failure.append(exc)

    saving = threading.Thread(target=save, name="backtest-save")
    saving.start()
    try:
        rendered = render(stored)
    finally:
        saving.join()  # the row is committed (or not) before anything is answered
    if failure:
        raise failure[0]
    return rendered


def _run(market: MarketData, strategy: SignalSource, request: BacktestRequest) -> StoredBacktest:
    """The backtest and its row, every column set but the blobs (`_save` packs them)."""
    candles, source, _stale = load_candles(market, request, strategy.warmup)
    entries, exits = strategy.signals(candles)
    result = run_backtest(candles, entries, exits, request.config)
    run = BacktestRun(
        id=uuid.uuid4().hex,
        created_at=utcnow(),  # set here, not at the flush: a body may be rendered before it
        symbol=request.symbol,
        interval=request.interval,
        strategy=strategy.name,
        strategy_kind=strategy.kind,
        strategy_id=strategy.id,
        strategy_version=strategy.version,
        spec=strategy.spec.to_dict() if strategy.spec is not None else None,
        params=dict(strategy.params),
        config=dataclasses.asdict(request.config),
        data_source=source,
        start_time=int(candles.open_time[0]),
        end_time=int(candles.open_time[-1]),
        n_bars=len(candles),
        metrics=metrics_dict(result),
        open_trade=_trade(result.open_trade) if result.open_trade else None,
    )
    # The columns in hand are what the blobs hold (tests/backtester/test_columnar.py): no read back.
    return StoredBacktest(run, candles.open_time, result.equity, result.trade_columns)


def _save(sessions: sessionmaker[Session], stored: StoredBacktest) -> None:
    stored.run.trades = pack_trades(stored.trades)
    stored.run.equity_blob = pack_curve(stored.times, stored.equity)
    storage.save_backtest(sessions, stored.run)


def get_stored(sessions: sessionmaker[Session], backtest_id: str) -> StoredBacktest:
    run = storage.get_backtest(sessions, backtest_id)
    if run is None:
        raise NotFound(f"No backtest with id {backtest_id!r}.", code="backtest_not_found")
    times, equity = unpack_curve(run.equity_blob)
    return StoredBacktest(run, times, equity, unpack_trades(run.trades))


def list_stored(
    sessions: sessionmaker[Session], limit: int, offset: int, **filters: Any
) -> tuple[Sequence[BacktestRun], int]:
    """Stored backtests (filters: symbol, interval, strategy, strategy_id, newest_first)."""
    return storage.list_backtests(sessions, limit, offset, **filters)


def metrics_dict(result: BacktestResult) -> dict[str, Any]:
    return {**dataclasses.asdict(result.metrics), "final_equity": result.final_equity}


def _trade(trade: Trade) -> dict[str, Any]:
    return dataclasses.asdict(trade)


def downsample(
    times: np.ndarray, equity: np.ndarray, initial_capital: float, max_points: int = MAX_CURVE_POINTS
) -> list[tuple[int, float, float]]:
    """(time, equity, drawdown) at most `max_points` times, evenly spaced in bar index, always keeping
    the first and last; the drawdown is measured on the whole curve (from the capital or a later peak)."""
    n = len(times)
    idx = (
        np.arange(n)
        if n <= max_points
        else np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))
    )
    drawdown = drawdown_series(equity, initial_capital)
    return list(zip(times[idx].tolist(), equity[idx].tolist(), drawdown[idx].tolist(), strict=True))


# --- sweeps ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SweepRow:
    params: dict[str, Any]
    metrics: dict[str, Any] | None
    error: str | None


# Parameters to a strategy, run again in each worker process: the strategies themselves hold closures
# (unpicklable), their recipe does not. Must be picklable: a module-level function, or a functools.partial
# of one over picklable arguments (the router passes `partial(strategy_registry.resolve, name)`).
SignalFactory = Callable[[Mapping[str, Any]], SignalSource]


@dataclass(frozen=True, slots=True)
class SweepShared:
    """What every combination of a sweep reads: sent to each worker once per sweep, not once per task."""

    strategy_for: SignalFactory
    candles: Candles
    config: BacktestConfig


def sweep(
    market: MarketData,
    compute: Compute,
    strategy_for: SignalFactory,
    base_params: Mapping[str, Any],
    grid: Mapping[str, Sequence[Any]],
    request: BacktestRequest,
    rank_by: str,
) -> tuple[list[SweepRow], DataSource, int]:
    """Every combination of `grid` over `base_params`, run on `compute` and ranked by `rank_by`.

    Combinations the strategy rejects (say fast >= slow) are reported with their reason rather
    than failing the whole sweep. Returns (rows best first, data source, bars).
    """
    if rank_by not in RANK_METRICS:
        raise InvalidInput(f"rank_by must be one of {', '.join(RANK_METRICS)}.", details={"field": "rank_by"})
    if not grid or any(len(values) == 0 for values in grid.values()):
        raise InvalidInput(
            "grid needs at least one parameter with at least one value.", details={"field": "grid"}
        )
    names = sorted(grid)
    count = int(np.prod([len(grid[name]) for name in names]))
    if count > MAX_SWEEP_COMBINATIONS:
        raise InvalidInput(
            f"The grid has {count} combinations; at most {MAX_SWEEP_COMBINATIONS} are allowed per sweep.",
            code="too_many_combinations",
            details={"field": "grid", "combinations": count, "max": MAX_SWEEP_COMBINATIONS},
        )
    combos = [
        {**base_params, **dict(zip(names, values, strict=True))}
        for values in itertools.product(*(grid[name] for name in names))
    ]
    # Resolved here too: the rejected combinations are known (and reported) before any work is sent, and
    # the largest warm-up decides how many candles to load.
    strategies: list[SignalSource | str] = []
    for combo in combos:
        try:
            strategies.append(strategy_for(combo))
        except InvalidInput as exc:
            strategies.append(exc.message)
    valid = [s for s in strategies if not isinstance(s, str)]
    if not valid:
        raise InvalidInput(
            "No combination in the grid is valid for this strategy.", details={"field": "grid"}
        )
    candles, source, _ = load_candles(market, request, max(s.warmup for s in valid))
    results = run_combinations(compute, strategy_for, [s.params for s in valid], candles, request.config)
    by_strategy = iter(results)
    rows = [
        SweepRow(combo, None, s) if isinstance(s, str) else SweepRow(dict(s.params), next(by_strategy), None)
        for combo, s in zip(combos, strategies, strict=True)
    ]
    return _ranked(rows, rank_by), source, len(candles)


def run_combinations(
    compute: Compute,
    strategy_for: SignalFactory,
    combinations: Sequence[Mapping[str, Any]],
    candles: Candles,
    config: BacktestConfig,
    *,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[dict[str, Any]]:
    """The metrics of each parameter combination (each valid for `strategy_for`) backtested on the same
    candles, in order, on `compute`: the sweep's work (bench/research_bench.py times it)."""
    return compute.map(
        _sweep_one,
        [dict(params) for params in combinations],
        SweepShared(strategy_for, candles, config),
        progress=progress,
        should_stop=should_stop,
    )


def _sweep_one(shared: SweepShared, params: dict[str, Any]) -> dict[str, Any]:
    """One combination, in a worker process: its strategy from the factory, its signals, the engine."""
    strategy = shared.strategy_for(params)
    entries, exits = strategy.signals(shared.candles)
    return metrics_dict(run_backtest(shared.candles, entries, exits, shared.config))


def _ranked(rows: list[SweepRow], rank_by: str) -> list[SweepRow]:
    sign = 1.0 if rank_by in _LOWER_IS_BETTER else -1.0

    def key(row: SweepRow) -> tuple[int, float]:
        value = None if row.metrics is None else row.metrics.get(rank_by)
        # Undefined metrics and rejected combinations sort last, never as "best".
        return (1, 0.0) if value is None else (0, sign * float(value))

    return sorted(rows, key=key)
