"""Optimisation as a service: validate a request (422 naming the field), run it as a background job (any
process may run it; an interrupted one resumes from its Optuna study), store and read its results.

The strategy arrives already turned into a recipe and a search space by the caller (``strategy_registry``
sits above this floor): ``OptimizeDeps.prepare`` does it again in whichever process runs the job.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, cast

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from backtester.optimize import search as S
from backtester.optimize import statistics as stats
from backtester.optimize import walk_forward as W
from backtester.optimize.windows import MAX_WINDOWS, walk_forward_windows
from backtester.runner import BacktestConfig
from backtester.service import RANK_METRICS, RankMetric, downsample
from db.models import Job, OptimizationRun
from db.storage import transaction
from strategy_engine.spec import Tunable, tunable_problem
from utils.compute import ComputeCancelled
from utils.errors import InvalidInput, NotFound
from utils.jobs import JobCancelled, JobHandler, JobRunner, Report
from utils.jsonsafe import json_safe
from utils.market_data.candles import Candles
from utils.market_data.market import MarketData

MAX_GRID = S.MAX_TRIALS
MIN_BARS = 100
LOWER_IS_BETTER = frozenset({"max_drawdown", "max_drawdown_duration"})
# Any backtest metric (the sweep's ranking metrics and the final equity).
Objective = Literal[RankMetric, "final_equity"]
OBJECTIVES: tuple[Objective, ...] = (*RANK_METRICS, "final_equity")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A strategy ready to optimise: its recipe, search space and how results name it."""

    recipe: S.Recipe
    space: dict[str, S.AnyTunable]
    name: str
    kind: str  # builtin, saved or inline
    id: int | None = None
    version: int | None = None


@dataclass(frozen=True, slots=True)
class WalkForward:
    mode: Literal["rolling", "anchored"] = "rolling"
    windows: int = 4
    in_sample: int | float | None = None
    out_of_sample: int | float | None = None
    gap: int = 0


@dataclass(frozen=True, slots=True)
class OptimizeRequest:
    strategy: Any  # the reference as the client gave it (a name, a saved id, or a spec)
    symbol: str
    interval: str
    start_ms: int | None
    end_ms: int | None
    objective: str = "sharpe"
    n_trials: int = 100
    sampler: S.Sampler = "tpe"
    seed: int = 0
    trials_per_round: int = S.TRIALS_PER_ROUND
    constraints: S.Constraints = field(default_factory=S.Constraints)
    walk_forward: WalkForward | None = None
    config: BacktestConfig = field(default_factory=BacktestConfig)
    params: dict[str, Any] | None = None  # fixed parameters of a built-in
    space: dict[str, Any] | None = None  # a built-in's tunable parameters (JSON strategies declare theirs)
    # A saved strategy's version, pinned when the job is queued: a run resumed after a restart, and a
    # strategy saved from its winner, use the spec that was optimised, not a later edit.
    strategy_version: int | None = None

    @property
    def direction(self) -> S.Direction:
        return "minimize" if self.objective in LOWER_IS_BETTER else "maximize"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["start"], data["end"] = data.pop("start_ms"), data.pop("end_ms")
        return cast(dict[str, Any], json_safe(data))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OptimizeRequest:
        wf = data.get("walk_forward")
        return cls(
            strategy=data["strategy"],
            symbol=str(data["symbol"]),
            interval=str(data["interval"]),
            start_ms=data.get("start"),
            end_ms=data.get("end"),
            objective=str(data.get("objective", "sharpe")),
            n_trials=int(data.get("n_trials", 100)),
            sampler=cast(S.Sampler, data.get("sampler", "tpe")),
            seed=int(data.get("seed", 0)),
            trials_per_round=int(data.get("trials_per_round", S.TRIALS_PER_ROUND)),
            constraints=S.Constraints(**(data.get("constraints") or {})),
            walk_forward=WalkForward(**wf) if wf else None,
            config=BacktestConfig(**(data.get("config") or {})),
            params=data.get("params"),
            space=data.get("space"),
            strategy_version=data.get("strategy_version"),
        )


@dataclass(frozen=True, slots=True)
class OptimizeDeps:
    sessions: sessionmaker[Session]
    market: MarketData
    mapper: S.Mapper
    jobs: JobRunner
    storage_url: str  # Optuna's RDB storage: the application's database
    prepare: Callable[[OptimizeRequest], Prepared]


# --- starting -------------------------------------------------------------------------------------


def start(deps: OptimizeDeps, request: OptimizeRequest) -> Job:
    """Validate everything that can be checked now (a bad request is a 422, not a failed job) and queue
    the job; the optimisation's id is in its parameters."""
    prepared = deps.prepare(request)
    check(request, prepared)
    candles = _candles(deps.market, request)
    _check_windows(request, len(candles))
    if prepared.version is not None:
        request = replace(request, strategy_version=prepared.version)
    optimization_id = uuid.uuid4().hex
    return deps.jobs.submit("optimize", {"optimization_id": optimization_id, **request.to_dict()})


def check(request: OptimizeRequest, prepared: Prepared) -> None:
    """422s naming the field: the objective, the trial cap, the sampler against the space."""
    if request.objective not in OBJECTIVES:
        raise _bad("objective", f"objective must be a backtest metric: one of {', '.join(OBJECTIVES)}")
    if not 1 <= request.n_trials <= S.MAX_TRIALS:
        raise _bad("n_trials", f"n_trials must be from 1 to {S.MAX_TRIALS}")
    if not prepared.space:
        raise _bad("space", "nothing to optimise: the strategy has no tunable parameter")
    if request.sampler == "grid":
        size = S.grid_size(prepared.space)
        if size is None:
            raise _bad("sampler", "a grid search needs a step (or choices) for every parameter")
        if size > MAX_GRID:
            raise _bad("space", f"the grid has {size} combinations; at most {MAX_GRID} are allowed")
        if request.n_trials < size:
            # A grid is tried in order: fewer trials would cover its first rows only, not a sample of it.
            raise _bad(
                "n_trials",
                f"the grid has {size} combinations and n_trials {request.n_trials} would try only the first "
                f"{request.n_trials}; set n_trials to at least {size} (a grid search runs each once)",
            )
    if request.constraints.min_trades < 0:
        raise _bad("constraints.min_trades", "min_trades must be >= 0")
    limit = request.constraints.max_drawdown
    if limit is not None and not 0 < limit <= 1:
        raise _bad("constraints.max_drawdown", "max_drawdown must be a fraction in (0, 1]")


def _check_windows(request: OptimizeRequest, n_bars: int) -> None:
    wf = request.walk_forward
    if wf is None:
        return
    if not 1 <= wf.windows <= MAX_WINDOWS:
        raise _bad("walk_forward.windows", f"windows must be from 1 to {MAX_WINDOWS}")
    try:
        windows = walk_forward_windows(
            n_bars,
            wf.windows,
            mode=wf.mode,
            in_sample=wf.in_sample,
            out_of_sample=wf.out_of_sample,
            gap=wf.gap,
        )
    except ValueError as exc:
        # A message about one length names it; one about the lengths together names them all.
        named = next((n for n in ("in_sample", "out_of_sample", "gap") if str(exc).startswith(n)), None)
        field = "walk_forward" if named is None else f"walk_forward.{named}"
        raise _bad(field, f"walk_forward: {exc}") from None
    shortest = min(w.is_bars for w in windows)
    if shortest < MIN_BARS:
        raise _bad(
            "walk_forward.in_sample",
            f"walk_forward: an in-sample window of {shortest} bars is too short to optimise on; each needs "
            f"at least {MIN_BARS} (as a whole optimisation does)",
        )


def _bad(path: str, message: str) -> InvalidInput:
    return InvalidInput(message, details={"field": path})


def _candles(market: MarketData, request: OptimizeRequest) -> Candles:
    answer = market.history(
        request.symbol, request.interval, start_ms=request.start_ms, end_ms=request.end_ms
    )
    if len(answer.candles) < MIN_BARS:
        raise InvalidInput(
            f"Not enough candles to optimise: at least {MIN_BARS} {request.interval} candles are needed, the "
            f"range has {len(answer.candles)}.",
            code="not_enough_candles",
            details={"needed": MIN_BARS, "available": len(answer.candles)},
        )
    # Where they came from (binance, cache, file, sample) travels with them into the result.
    return replace(answer.candles, source=answer.source)


# --- running --------------------------------------------------------------------------------------


def optimize_job(deps: OptimizeDeps) -> JobHandler:
    """The ``optimize`` job handler: everything is rebuilt from the job's parameters."""

    def handle(params: dict[str, Any], report: Report) -> dict[str, Any]:
        optimization_id = str(params["optimization_id"])
        request = OptimizeRequest.from_dict(params)
        try:
            result = run(deps, optimization_id, request, report)
        except (JobCancelled, ComputeCancelled):
            if report.interrupted():  # a shutdown: the study stays, the next process resumes it
                raise JobCancelled() from None
            _delete_studies(deps.storage_url, optimization_id)  # a cancelled optimisation leaves nothing
            raise JobCancelled() from None
        save(deps.sessions, optimization_id, report.job_id, request, deps.prepare(request), result)
        winner = result.get("winner")
        return {
            "optimization_id": optimization_id,
            "trials": result["n_trials"],
            "winner": None if winner is None else winner["values"],
            "objective": None if winner is None else winner["objective"],
            "verdict": result["verdict"]["level"],
        }

    return handle


def run(deps: OptimizeDeps, optimization_id: str, request: OptimizeRequest, report: Report) -> dict[str, Any]:
    """The whole optimisation, as the stored result's JSON."""
    prepared = deps.prepare(request)
    check(request, prepared)
    report(0.0, "loading candles")
    candles = _candles(deps.market, request)
    shared = S.Shared(candles, prepared.recipe, request.config, request.objective)
    storage = _storage(deps.storage_url)
    n_trials = request.n_trials
    if request.sampler == "grid":
        n_trials = min(n_trials, S.grid_size(prepared.space) or n_trials)
    common = {
        "n_trials": n_trials,
        "sampler": request.sampler,
        "direction": request.direction,
        "constraints": request.constraints,
        "storage": storage,
        "seed": request.seed,
        "trials_per_round": request.trials_per_round,
        "should_stop": report.cancelled,
    }
    if request.walk_forward is None:
        return _single(deps.mapper, shared, prepared, request, optimization_id, common, report)
    return _walk_forward(deps.mapper, shared, prepared, request, optimization_id, common, report)


def _single(
    mapper: S.Mapper,
    shared: S.Shared,
    prepared: Prepared,
    request: OptimizeRequest,
    optimization_id: str,
    common: dict[str, Any],
    report: Report,
) -> dict[str, Any]:
    n = len(shared.candles)
    result = S.search(
        mapper,
        shared,
        prepared.space,
        start=0,
        end=n,
        study_name=optimization_id,
        progress=lambda done, total: report(0.05 + 0.85 * done / total, f"trial {done} of {total}"),
        **common,
    )
    report(0.92, "scoring the winner and its neighbours")
    winner_curve, winner_returns, neighbours = None, None, []
    if result.winner is not None:
        scored = S.evaluate_keeping_equity(shared, S.TrialInput(result.winner.values, 0, n))
        if scored.equity is not None:
            winner_curve = scored.equity
            winner_returns = S.simple_returns(scored.equity, shared.config.initial_capital)
        axes = list(prepared.space)[:2]
        asked = S.neighbour_values(result.winner.values, prepared.space, axes)
        known = {tuple(sorted(t.values.items())) for t in result.trials}
        fresh = [v for v in asked if tuple(sorted(v.items())) not in known]
        neighbours = mapper.map(
            S.evaluate_trial, [S.TrialInput(v, 0, n) for v in fresh], shared, should_stop=report.cancelled
        )
    summary = S.search_stats(result, winner_returns, neighbours, prepared.space, direction=request.direction)
    curve = None
    if winner_curve is not None:
        points = downsample(shared.candles.open_time, winner_curve, shared.config.initial_capital)
        curve = [{"time": t, "equity": e, "drawdown": d} for t, e, d in points]
    return {
        "kind": "search",
        "n_trials": len(result.trials),
        "n_bars": n,
        "start_time": int(shared.candles.open_time[0]),
        "end_time": int(shared.candles.open_time[-1]),
        "data_source": shared.candles.source,
        "direction": request.direction,
        "winner": _trial(result.winner),
        "trials": [_trial(t) for t in result.trials],
        "statistics": _stats(summary),
        "verdict": _verdict(summary.verdict),
        "equity_curve": curve,
        "walk_forward": None,
    }


def _walk_forward(
    mapper: S.Mapper,
    shared: S.Shared,
    prepared: Prepared,
    request: OptimizeRequest,
    optimization_id: str,
    common: dict[str, Any],
    report: Report,
) -> dict[str, Any]:
    wf = request.walk_forward
    assert wf is not None
    windows = walk_forward_windows(
        len(shared.candles),
        wf.windows,
        mode=wf.mode,
        in_sample=wf.in_sample,
        out_of_sample=wf.out_of_sample,
        gap=wf.gap,
    )
    results = W.run_windows(
        mapper,
        shared,
        prepared.recipe,
        prepared.space,
        windows,
        study_prefix=optimization_id,
        progress=lambda done, total: report(
            0.05 + 0.9 * done / total, f"trial {done} of {total} across {len(windows)} windows"
        ),
        **common,
    )
    equity, times, oos_metrics = W.stitch(shared, results)
    oos_sharpe = None
    if len(equity) >= 2:
        oos_sharpe = stats.sharpe_stats(S.simple_returns(equity, shared.config.initial_capital)).sharpe
    dsrs = [w.stats.dsr.dsr for w in results if w.stats.dsr is not None and w.stats.dsr.dsr is not None]
    pbos = [w.stats.pbo.pbo for w in results if w.stats.pbo is not None]
    # Each window's DSR is deflated for that window's trials: the verdict speaks of a window's number.
    per_window = max(1, round(float(np.median([len(w.search.trials) for w in results])))) if results else 1
    verdict = stats.verdict(
        dsr=float(np.median(dsrs)) if dsrs else None,
        pbo=float(np.median(pbos)) if pbos else None,
        n_trials=per_window,
        oos_sharpe=oos_sharpe,
        windows=len(results),
    )
    curve = None
    if len(equity):
        points = downsample(times, equity, shared.config.initial_capital)
        curve = [{"time": t, "equity": e, "drawdown": d} for t, e, d in points]
    stable = W.stability(results, prepared.space)
    return {
        "kind": "walk_forward",
        "n_trials": sum(len(w.search.trials) for w in results),
        "n_bars": len(shared.candles),
        "start_time": int(shared.candles.open_time[0]),
        "end_time": int(shared.candles.open_time[-1]),
        "data_source": shared.candles.source,
        "direction": request.direction,
        # The last window's search: its winner is the one to trade from here on.
        "winner": _trial(results[-1].search.winner) if results else None,
        "trials": [_trial(t) for t in results[-1].search.trials] if results else [],
        "statistics": _stats(results[-1].stats) if results else None,
        "verdict": _verdict(verdict),
        "equity_curve": curve,
        "walk_forward": {
            "mode": wf.mode,
            "windows": [_window(shared, w) for w in results],
            "oos_metrics": oos_metrics,
            "oos_sharpe_per_bar": oos_sharpe,
            "stability": stable,
        },
    }


def _window(shared: S.Shared, result: W.WindowResult) -> dict[str, Any]:
    w = result.window
    times = shared.candles.open_time
    return {
        "index": w.index,
        "in_sample": {
            "start_time": int(times[w.is_start]),
            "end_time": int(times[w.is_end - 1]),
            "bars": w.is_bars,
        },
        "out_of_sample": {
            "start_time": int(times[w.oos_start]),
            "end_time": int(times[w.oos_end - 1]),
            "bars": w.oos_bars,
        },
        "trials": len(result.search.trials),
        "winner": _trial(result.search.winner),
        "oos_metrics": None if result.oos is None else result.oos.metrics,
        "statistics": _stats(result.stats),
        "verdict": _verdict(result.stats.verdict),
    }


def _trial(trial: S.Trial | None) -> dict[str, Any] | None:
    if trial is None:
        return None
    metrics = trial.metrics or {}
    return {
        "number": trial.number,
        "values": trial.values,
        "objective": trial.objective,
        "feasible": trial.feasible,
        "n_trades": metrics.get("n_trades"),
        "metrics": metrics or None,
        "error": trial.error,
    }


def _stats(summary: S.SearchStats) -> dict[str, Any]:
    spread = summary.spread
    dsr = summary.dsr
    pbo = summary.pbo
    hood = summary.neighbourhood
    return cast(
        dict[str, Any],
        json_safe(
            {
                "spread": asdict(spread),
                "deflated_sharpe": None
                if dsr is None
                else {
                    "dsr": dsr.dsr,
                    "psr": dsr.psr,
                    "sharpe_per_bar": dsr.sharpe,
                    "expected_max_sharpe": dsr.expected_max_sharpe,
                    "n_trials": dsr.n_trials,
                    "n_obs": dsr.n_obs,
                    "skewness": dsr.skewness,
                    "kurtosis": dsr.kurtosis,
                    "reason": dsr.reason,
                },
                "pbo": None
                if pbo is None
                else {
                    "pbo": pbo.pbo,
                    "n_combinations": pbo.n_combinations,
                    "n_blocks": pbo.n_blocks,
                    "prob_oos_loss": pbo.prob_oos_loss,
                    "degradation_slope": pbo.degradation_slope,
                },
                "pbo_unavailable": summary.pbo_error,
                "neighbourhood": None
                if hood is None
                else {
                    "x_param": hood.x_param,
                    "y_param": hood.y_param,
                    "x_values": list(hood.x_values),
                    "y_values": list(hood.y_values),
                    "z": [list(row) for row in hood.z],
                    "winner_metric": hood.winner_metric,
                    "mean_ratio": hood.mean_ratio,
                    "min_ratio": hood.min_ratio,
                    "shape": hood.shape,
                },
            }
        ),
    )


def _verdict(verdict: stats.Verdict) -> dict[str, Any]:
    return {"level": verdict.level, "reasons": list(verdict.reasons)}


def _storage(url: str) -> Any:
    import optuna

    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 30}}
    # Optuna's tables live beside ours. Both use Alembic's default `alembic_version` table: Optuna finds
    # ours there and so never stamps it, and its schema check (which would compare our revision with its
    # own) is off. Never run `optuna storage upgrade` against the application's database.
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, skip_compatibility_check=True)


def _delete_studies(url: str, optimization_id: str) -> None:
    import optuna

    storage = _storage(url)
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if summary.study_name == optimization_id or summary.study_name.startswith(f"{optimization_id}-w"):
            optuna.delete_study(study_name=summary.study_name, storage=storage)


# --- storing and reading --------------------------------------------------------------------------


def save(
    sessions: sessionmaker[Session],
    optimization_id: str,
    job_id: str,
    request: OptimizeRequest,
    prepared: Prepared,
    result: Mapping[str, Any],
) -> None:
    with transaction(sessions) as session:
        session.add(
            OptimizationRun(
                id=optimization_id,
                job_id=job_id,
                symbol=request.symbol,
                interval=request.interval,
                strategy=prepared.name[:100],
                strategy_kind=prepared.kind,
                strategy_id=prepared.id,
                strategy_version=prepared.version,
                request=request.to_dict(),
                result=cast(dict[str, Any], json_safe(dict(result))),
            )
        )


def get(sessions: sessionmaker[Session], optimization_id: str) -> OptimizationRun:
    with sessions() as session:
        row = session.get(OptimizationRun, optimization_id)
    if row is None:
        raise NotFound(f"No optimisation with id {optimization_id!r}.", code="optimization_not_found")
    return row


def list_runs(
    sessions: sessionmaker[Session], limit: int, offset: int, *, symbol: str | None = None
) -> tuple[Sequence[OptimizationRun], int]:
    conditions = [] if symbol is None else [OptimizationRun.symbol == symbol]
    with sessions() as session:
        rows = session.scalars(
            select(OptimizationRun)
            .where(*conditions)
            .order_by(OptimizationRun.created_at.desc(), OptimizationRun.id.desc())
            .limit(limit)
            .offset(offset)
        ).all()
        total = session.scalar(select(func.count()).select_from(OptimizationRun).where(*conditions)) or 0
    return rows, total


def space_from(raw: Mapping[str, Any] | None, known: Sequence[str]) -> dict[str, S.AnyTunable]:
    """A built-in's search space from the request (the spec's tunable format); 422 naming the field."""
    from pydantic import TypeAdapter, ValidationError

    if not raw:
        raise _bad("space", "space is required for a built-in strategy: name -> {type, low, high, step}")
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise _bad(f"space.{unknown[0]}", f"unknown parameter {unknown[0]!r}; parameters: {', '.join(known)}")
    try:
        space = TypeAdapter(dict[str, Tunable]).validate_python(dict(raw))
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(
            str(part) for part in ("space", *first["loc"]) if part not in ("int", "float", "choice")
        )
        raise _bad(path, f"{path}: {first['msg']}") from None
    for name, tunable in space.items():
        problem = tunable_problem(tunable)
        if problem is not None:
            raise _bad(f"space.{name}.{problem[0]}", f"space.{name}.{problem[0]}: {problem[1]}")
    return space
