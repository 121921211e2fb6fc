"""Strategy optimisation: the search space, one trial's backtest, Optuna's ask/tell over a compute backend,
and the statistics every search carries (statistics.py computes them; walk_forward.py runs windows).

A trial is a backtest of a *recipe* (a built-in strategy's name and fixed parameters, or a JSON spec with
tunable parameters) at chosen values, on one slice of the candles. Trials run wherever the compute backend
puts them (a local process pool or a Dask cluster): the candles, the recipe and the backtest settings go to
each worker once per batch (``Compute.map``'s shared value), a trial's own input is its values and slice.

The study lives in Optuna's RDB storage on the application's database (its tables beside ours), under the
optimisation's id: a run interrupted (a killed process, a restart) resumes from the trials already told,
and several processes can tell one study. Trials left running by a dead run are marked failed and asked
again. Limits: at most ``MAX_TRIALS`` trials per search (per window in walk-forward) and the window cap of
``windows.MAX_WINDOWS``.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, TypeVar

import numpy as np

from backtester.optimize import statistics as stats
from backtester.runner import BacktestConfig, run_backtest
from backtester.strategies import BUILTINS
from strategy_engine import strategy_parser
from strategy_engine.spec import ChoiceTunable, FloatTunable, IntTunable, StrategySpec, validate_spec
from utils.market_data.candles import Candles

log = logging.getLogger(__name__)

MAX_TRIALS = 2_000
# Trials asked of a study per round and evaluated together (TPE learns from a round's results before
# the next). Set by the request, never by the number of workers, so a seed gives the same trials on one
# local worker as on a cluster of any size: more per round keeps more workers busy, fewer lets each ask
# learn from more trials told.
TRIALS_PER_ROUND = 8
MAX_TRIALS_PER_ROUND = 256
BUCKETS = 1_000  # per-trial returns are summed into at most this many buckets for PBO (bounded memory)
PBO_BLOCKS = 16
Sampler = Literal["tpe", "grid"]
Direction = Literal["maximize", "minimize"]
AnyTunable = IntTunable | FloatTunable | ChoiceTunable
S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")


class Mapper(Protocol):
    """What the search needs from ``utils.compute.Compute``."""

    @property
    def workers(self) -> int: ...

    def map(
        self,
        fn: Callable[[S, T], R],
        items: Sequence[T],
        shared: S,
        *,
        progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[R]: ...


# --- one trial ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recipe:
    """A strategy with some parameters left open: a built-in's name and its fixed parameters, or a
    JSON spec template (canonical dict, with ``{"param": ...}`` references)."""

    builtin: str | None = None
    fixed: Mapping[str, Any] = field(default_factory=dict)
    spec: Mapping[str, Any] | None = None

    def concrete(
        self, values: Mapping[str, Any]
    ) -> tuple[Callable[[Candles], tuple[np.ndarray, np.ndarray]], int, StrategySpec | None]:
        """(signals function, warm-up bars, the bound spec) at `values`; ValueError when the strategy
        refuses them (say fast >= slow)."""
        if self.builtin is not None:
            builtin = BUILTINS[self.builtin]
            params = builtin.make_params({**self.fixed, **values})
            return (lambda candles: builtin.signals(candles, params)), builtin.warmup(params), None
        assert self.spec is not None
        bound = validate_spec(self.spec).bind(values)
        return (lambda candles: _spec_signals(bound, candles)), strategy_parser.warmup(bound), bound


def _spec_signals(spec: StrategySpec, candles: Candles) -> tuple[np.ndarray, np.ndarray]:
    signals = strategy_parser.evaluate(spec, candles)
    return signals.entries, signals.exits


@dataclass(frozen=True, slots=True)
class Shared:
    """What every trial of a batch reads: sent to each worker once per batch."""

    candles: Candles
    recipe: Recipe
    config: BacktestConfig
    objective: str


@dataclass(frozen=True, slots=True)
class TrialInput:
    values: dict[str, float]
    start: int  # the bars [start, end) of the candles the trial trades on
    end: int
    lead: int = 0  # bars before `start` given to the indicators only (out-of-sample scoring)


@dataclass(frozen=True, slots=True)
class TrialOutcome:
    values: dict[str, float]
    metrics: dict[str, Any] | None  # None when the strategy refused the values
    objective: float | None  # None: undefined for this trial (no trades, refused values)
    sharpe: float | None  # per bar, never annualised (statistics.py's convention)
    buckets: np.ndarray | None  # per-bar log returns summed into BUCKETS buckets (for PBO)
    equity: np.ndarray | None  # only when asked for (scoring a winner)
    error: str | None = None


def evaluate_trial(shared: Shared, item: TrialInput) -> TrialOutcome:
    """Backtest the recipe at `item.values` on its slice (a module-level function: workers import it)."""
    return _evaluate(shared, item, keep_equity=False)


def evaluate_keeping_equity(shared: Shared, item: TrialInput) -> TrialOutcome:
    return _evaluate(shared, item, keep_equity=True)


def _evaluate(shared: Shared, item: TrialInput, *, keep_equity: bool) -> TrialOutcome:
    try:
        signals_of, _warmup, bound = shared.recipe.concrete(item.values)
    except ValueError as exc:
        return TrialOutcome(item.values, None, None, None, None, None, error=str(exc))
    except Exception as exc:  # InvalidInput from a spec bound to values it refuses
        message = getattr(exc, "message", None)
        if message is None:
            raise
        return TrialOutcome(item.values, None, None, None, None, None, error=str(message))
    lead_start = max(0, item.start - item.lead)
    window = shared.candles.slice(lead_start, item.end)
    entries, exits = signals_of(window)
    skip = item.start - lead_start  # the lead bars only feed the indicators
    trading = window.slice(skip, len(window))
    config = strategy_parser.backtest_config(bound, shared.config) if bound is not None else shared.config
    if len(trading) < 2:
        return TrialOutcome(
            item.values, None, None, None, None, None, error="the window has fewer than 2 bars"
        )
    result = run_backtest(trading, entries[skip:], exits[skip:], config)
    metrics = {**_metrics(result), "final_equity": result.final_equity}
    value = metrics.get(shared.objective)
    equity = result.equity
    returns = _log_returns(equity, config.initial_capital)
    sharpe = stats.sharpe_stats(np.expm1(returns)).sharpe if len(returns) >= 2 else None
    return TrialOutcome(
        item.values,
        metrics,
        None if value is None or not math.isfinite(float(value)) else float(value),
        sharpe,
        _bucketed(returns),
        equity if keep_equity else None,
    )


def _metrics(result: Any) -> dict[str, Any]:
    return asdict(result.metrics)


def simple_returns(equity: np.ndarray, initial: float) -> np.ndarray:
    """Per-bar simple returns of an equity curve that starts from `initial`."""
    returns: np.ndarray = np.expm1(_log_returns(equity, initial))
    return returns


def _log_returns(equity: np.ndarray, initial: float) -> np.ndarray:
    curve = np.concatenate(([initial], np.asarray(equity, dtype=np.float64)))
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = np.diff(np.log(np.maximum(curve, 1e-300)))
    return np.nan_to_num(returns, nan=0.0, posinf=0.0, neginf=0.0)


def _bucketed(returns: np.ndarray) -> np.ndarray:
    n = len(returns)
    if n <= BUCKETS:
        return returns.astype(np.float64)
    edges = np.linspace(0, n, BUCKETS + 1).astype(np.int64)[:-1]
    return np.add.reduceat(returns, edges).astype(np.float64)


# --- the search -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Constraints:
    min_trades: int = 0
    max_drawdown: float | None = None  # a fraction: trials deeper than this are infeasible

    def violations(self, metrics: Mapping[str, Any] | None) -> list[float]:
        """Optuna's convention: each value <= 0 means satisfied."""
        if metrics is None:
            return [1.0]
        out = [float(self.min_trades - int(metrics.get("n_trades") or 0))]
        if self.max_drawdown is not None:
            out.append(float(metrics.get("max_drawdown") or 0.0) - self.max_drawdown)
        return out


@dataclass(frozen=True, slots=True)
class Trial:
    number: int
    values: dict[str, float]
    objective: float | None
    metrics: dict[str, Any] | None
    feasible: bool
    sharpe: float | None
    error: str | None


@dataclass(frozen=True, slots=True)
class SearchResult:
    trials: list[Trial]
    winner: Trial | None
    buckets: dict[int, np.ndarray]  # trial number -> its bucketed returns (feasible trials)


def grid_size(space: Mapping[str, AnyTunable]) -> int | None:
    """Combinations of the space's grid, or None when a parameter is continuous."""
    total = 1
    for tunable in space.values():
        count = tunable.count()
        if count is None:
            return None
        total *= count
    return total


def _suggest(trial: Any, name: str, tunable: AnyTunable) -> float:
    if isinstance(tunable, IntTunable):
        return float(trial.suggest_int(name, tunable.low, tunable.high, step=tunable.step))
    if isinstance(tunable, FloatTunable):
        if tunable.step is not None:
            high = tunable.extremes()[1]
            return float(trial.suggest_float(name, tunable.low, high, step=tunable.step))
        return float(trial.suggest_float(name, tunable.low, tunable.high))
    return float(trial.suggest_categorical(name, list(tunable.choices)))


def _typed(values: Mapping[str, float], space: Mapping[str, AnyTunable]) -> dict[str, float]:
    return {name: (int(v) if isinstance(space[name], IntTunable) else float(v)) for name, v in values.items()}


@dataclass(frozen=True, slots=True)
class Slice:
    """One search's bars [start, end) and the study its trials are told to."""

    start: int
    end: int
    study_name: str


# What a running search hands its driver: the trials to evaluate next; what it is sent back: their
# outcomes, in order; what it returns: the finished search.
Steps = Generator[list[TrialInput], list[TrialOutcome], SearchResult]


def search(
    mapper: Mapper,
    shared: Shared,
    space: Mapping[str, AnyTunable],
    *,
    start: int,
    end: int,
    study_name: str,
    progress: Callable[[int, int], None] | None = None,
    **common: Any,
) -> SearchResult:
    """One search on the bars [start, end): `search_many` with one slice."""
    return search_many(mapper, shared, space, [Slice(start, end, study_name)], progress=progress, **common)[0]


def search_many(
    mapper: Mapper,
    shared: Shared,
    space: Mapping[str, AnyTunable],
    slices: Sequence[Slice],
    *,
    n_trials: int,
    sampler: Sampler,
    direction: Direction,
    constraints: Constraints,
    storage: Any,
    seed: int,
    trials_per_round: int = TRIALS_PER_ROUND,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[SearchResult]:
    """`n_trials` trials of the recipe on each slice, told to that slice's study in `storage` (resumed
    when it exists). The searches advance in lockstep: each round asks `trials_per_round` trials of every
    study and evaluates them all in one ``map``, so walk-forward windows share the workers instead of
    queueing behind one another. Each study sees the same asks and tells, in the same order, as it would
    searched alone, on any number of workers: the results depend on neither."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not 1 <= trials_per_round <= MAX_TRIALS_PER_ROUND:
        raise ValueError(f"trials_per_round must be from 1 to {MAX_TRIALS_PER_ROUND}, got {trials_per_round}")
    batch = trials_per_round
    runs = [
        _steps(
            _open_study(storage, part.study_name, space, sampler, direction, seed),
            space,
            part,
            n_trials,
            batch,
            constraints,
            direction,
        )
        for part in slices
    ]
    pending: dict[int, list[TrialInput]] = {}
    finished: dict[int, SearchResult] = {}
    evaluated = [0] * len(runs)

    def advance(index: int, outcomes: list[TrialOutcome] | None) -> None:
        try:
            pending[index] = next(runs[index]) if outcomes is None else runs[index].send(outcomes)
        except StopIteration as stop:
            finished[index] = stop.value
            pending.pop(index, None)

    for index in range(len(runs)):
        advance(index, None)
    total = n_trials * len(runs)
    while pending:
        order = list(pending)
        items = [item for index in order for item in pending[index]]
        outcomes = mapper.map(evaluate_trial, items, shared, should_stop=should_stop)
        offset = 0
        for index in order:
            count = len(pending[index])
            evaluated[index] += count
            advance(index, outcomes[offset : offset + count])
            offset += count
        if progress is not None:
            progress(sum(min(n_trials, done) for done in evaluated), total)
    return [finished[index] for index in range(len(runs))]


def _open_study(
    storage: Any,
    study_name: str,
    space: Mapping[str, AnyTunable],
    sampler: Sampler,
    direction: Direction,
    seed: int,
) -> Any:
    import optuna

    # A grid is enqueued trial by trial (Optuna's GridSampler stops the study itself, which ask/tell does
    # not allow); the random sampler never decides anything then, every trial comes from the queue.
    chosen: optuna.samplers.BaseSampler = (
        optuna.samplers.RandomSampler(seed=seed)
        if sampler == "grid"
        else optuna.samplers.TPESampler(seed=seed, multivariate=True)  # reads set_constraint below
    )
    study = optuna.create_study(
        study_name=study_name, storage=storage, sampler=chosen, direction=direction, load_if_exists=True
    )
    if sampler == "grid" and not study.user_attrs.get("grid_enqueued"):
        names = list(space)
        for combo in itertools.product(*(space[name].grid() or [] for name in names)):
            study.enqueue_trial(dict(zip(names, combo, strict=True)))
        study.set_user_attr("grid_enqueued", True)
    return study


def _steps(
    study: Any,
    space: Mapping[str, AnyTunable],
    bars: Slice,
    n_trials: int,
    batch: int,
    constraints: Constraints,
    direction: Direction,
) -> Steps:
    """One study's search, as steps its driver evaluates (see `Steps`)."""
    import optuna

    start, end = bars.start, bars.end
    _fail_abandoned(study)
    told = _told(study)
    # Resuming: the per-trial returns are not stored in the study, so the trials told before are
    # evaluated again (deterministic) rather than left out of the statistics.
    outcomes: dict[int, TrialOutcome] = {}
    if told:
        redo = yield [TrialInput(_typed(t.params, space), start, end) for t in told]
        outcomes.update({t.number: o for t, o in zip(told, redo, strict=True)})
    done = len(told)
    while done < n_trials:
        asked = [study.ask() for _ in range(min(batch, n_trials - done))]
        values = [
            {name: _suggest(trial, name, tunable) for name, tunable in space.items()} for trial in asked
        ]
        results = yield [TrialInput(_typed(v, space), start, end) for v in values]
        for trial, outcome in zip(asked, results, strict=True):
            violations = constraints.violations(outcome.metrics)
            trial.set_user_attr("constraints", violations)
            for index, value in enumerate(violations):
                trial.set_constraint(f"c{index}", value)
            if outcome.metrics is not None:
                trial.set_user_attr("metrics", _jsonable(outcome.metrics))
            if outcome.error is not None:
                trial.set_user_attr("error", outcome.error[:500])
            if outcome.objective is None:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, outcome.objective)
            outcomes[trial.number] = outcome
        done += len(asked)
    return _result(outcomes, space, constraints, direction)


def _result(
    outcomes: Mapping[int, TrialOutcome],
    space: Mapping[str, AnyTunable],
    constraints: Constraints,
    direction: Direction,
) -> SearchResult:
    trials = [
        Trial(
            number,
            _typed(o.values, space),
            o.objective,
            o.metrics,
            o.objective is not None and all(v <= 0 for v in constraints.violations(o.metrics)),
            o.sharpe,
            o.error,
        )
        for number, o in sorted(outcomes.items())
    ]
    feasible = [t for t in trials if t.feasible]
    sign = 1.0 if direction == "maximize" else -1.0
    winner = max(feasible, key=lambda t: (sign * (t.objective or 0.0), -t.number)) if feasible else None
    buckets = {
        t.number: outcomes[t.number].buckets for t in feasible if outcomes[t.number].buckets is not None
    }
    return SearchResult(trials, winner, {k: v for k, v in buckets.items() if v is not None})


def _fail_abandoned(study: Any) -> None:
    import optuna

    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)


def _told(study: Any) -> list[Any]:
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
    return [t for t in study.get_trials(deepcopy=False, states=states) if "constraints" in t.user_attrs]


def _jsonable(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}


# --- statistics of one search ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SearchStats:
    spread: stats.TrialSpread
    dsr: stats.DeflatedSharpe | None
    pbo: stats.PBOResult | None
    pbo_error: str | None
    neighbourhood: stats.Neighbourhood | None
    verdict: stats.Verdict


def neighbour_values(
    winner: Mapping[str, float], space: Mapping[str, AnyTunable], axes: Sequence[str], k: int = 1
) -> list[dict[str, float]]:
    """The winner's grid neighbours on `axes` (±k steps, inside the space), the winner itself excluded."""
    options: list[list[float]] = []
    for name in axes:
        tunable = space[name]
        options.append(_adjacent(winner[name], tunable, k))
    combos: list[dict[str, float]] = [dict(winner)]
    for name, values in zip(axes, options, strict=True):
        combos = [{**c, name: v} for c in combos for v in values]
    return [c for c in combos if any(c[n] != winner[n] for n in axes)]


def _adjacent(value: float, tunable: AnyTunable, k: int) -> list[float]:
    if isinstance(tunable, ChoiceTunable):
        ordered = sorted(tunable.choices)
        i = ordered.index(value) if value in ordered else 0
        return ordered[max(0, i - k) : i + k + 1]
    low, high = tunable.extremes()
    step = float(tunable.step) if tunable.step is not None else (tunable.high - tunable.low) / 10
    found = [round(value + j * step, 12) for j in range(-k, k + 1)]
    return [v for v in found if low - 1e-9 <= v <= high + 1e-9]


MAX_AXIS_GRID = 100_000  # beyond this a parameter's grid is described by its step (neighbours may leave it)


def space_steps(space: Mapping[str, AnyTunable]) -> dict[str, Sequence[Any] | float]:
    """The space as statistics.neighbourhood reads it: the grid where the parameter has one (so the
    heatmap stays inside the range), else a tenth of the range as the step."""
    out: dict[str, Sequence[Any] | float] = {}
    for name, tunable in space.items():
        count = tunable.count()
        if count is not None and count <= MAX_AXIS_GRID:
            out[name] = sorted(tunable.grid() or [])
        elif isinstance(tunable, IntTunable | FloatTunable) and tunable.step is not None:
            out[name] = float(tunable.step)
        else:
            out[name] = (tunable.extremes()[1] - tunable.extremes()[0]) / 10
    return out


def search_stats(
    result: SearchResult,
    winner_returns: np.ndarray | None,
    neighbours: Sequence[TrialOutcome],
    space: Mapping[str, AnyTunable],
    *,
    direction: Direction = "maximize",
    oos_sharpe: float | None = None,
) -> SearchStats:
    """Spread, deflated Sharpe ratio of the winner given every trial, PBO by CSCV over the feasible
    trials, the winner's neighbourhood, and the verdict."""
    spread = stats.trial_spread([t.objective for t in result.trials])
    # A sampler may ask the same values again (TPE on a stepped grid often does): the repeat backtests
    # the same, so it is no further selection. The DSR's N and PBO's columns count each values once.
    distinct = distinct_trials(result.trials)
    dsr = None
    if result.winner is not None and winner_returns is not None and len(winner_returns) >= 2:
        dsr = stats.deflated_sharpe_ratio(winner_returns, [t.sharpe for t in distinct])
    pbo, pbo_error = None, None
    columns = [result.buckets[t.number] for t in distinct if t.number in result.buckets]
    if len(columns) >= 2:
        rows = min(len(c) for c in columns)
        blocks = PBO_BLOCKS if rows >= PBO_BLOCKS * 2 else max(2, (rows // 2) // 2 * 2)
        try:
            pbo = stats.probability_of_backtest_overfitting(
                np.column_stack([c[:rows] for c in columns]), n_blocks=blocks
            )
        except ValueError as exc:
            pbo_error = str(exc)
    else:
        pbo_error = "fewer than 2 feasible trials"
    hood = None
    if result.winner is not None and space:
        axes = list(space)[:2]
        points = [(t.values, t.objective) for t in result.trials if t.feasible]
        points += [(o.values, o.objective) for o in neighbours]
        hood = stats.neighbourhood(
            points,
            space_steps(space),
            axes=axes,
            winner=result.winner.values,
            lower_is_better=direction == "minimize",
        )
    verdict = stats.verdict(
        dsr=None if dsr is None else dsr.dsr,
        pbo=None if pbo is None else pbo.pbo,
        n_trials=max(1, len(distinct)),
        neighbourhood_shape=None if hood is None else hood.shape,
        oos_sharpe=oos_sharpe,
    )
    return SearchStats(spread, dsr, pbo, pbo_error, hood, verdict)


def distinct_trials(trials: Sequence[Trial]) -> list[Trial]:
    """The first trial of each set of parameter values, in order."""
    seen: set[tuple[tuple[str, float], ...]] = set()
    out = []
    for trial in trials:
        key = tuple(sorted(trial.values.items()))
        if key not in seen:
            seen.add(key)
            out.append(trial)
    return out
