"""Replays as a service: validate a request (422 naming the field), load its candles, voters and filters,
run it as a background job, and store and read its results (``replays`` and ``replay_chunks``).

Isolation: a replay reads candles, agent configurations, saved strategies and symbol filters; it never
writes balances, positions, orders, decisions, predictions, the kill switch, the daily-loss days or the
agents' models. Its results live in its own tables alone, written in one transaction when it finishes.

Limits (422 beyond them): at most MAX_SYMBOLS symbols and MAX_STEPS decision steps; ``retrain_every`` of
at least MIN_RETRAIN_EVERY bars; a warm-up long enough for the agents' walk-forward training
(``min_warmup``); a range holding at least warm-up + one retrain window of closed candles.
"""

from __future__ import annotations

import json
import math
import struct
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from agents.generic_agent import AgentConfig
from backtester.metrics import drawdown_series
from db.models import Job, ReplayChunk, ReplayRun
from db.storage import transaction
from ml_engine.feature_extractor import warmup as feature_warmup
from mother_ai.fills import CostModel
from mother_ai.orders import jsonable
from mother_ai.policy import RiskLimits, kill_switch_check
from mother_ai.replay import (
    ReplayCancelled,
    ReplayInputs,
    ReplayParams,
    ReplayResult,
    StrategyInput,
    run_replay,
)
from mother_ai.replay_voters import VoterSeries
from mother_ai.weighting import weighting_summary
from strategy_engine.spec import validate_spec
from strategy_engine.store import StrategyStore
from utils.errors import AppError, InvalidInput, NotFound
from utils.intervals import interval_ms, is_closed
from utils.jobs import JobCancelled, JobHandler, JobRunner, Report
from utils.jsonsafe import json_safe
from utils.market_data.candles import Candles
from utils.market_data.market import MarketData
from utils.settings import PaperSettings, RiskSettings

_ZSTD = pa.Codec("zstd", compression_level=9)
MAX_SYMBOLS = 10
MAX_STEPS = 200_000
MIN_RETRAIN_EVERY = 24
CHUNK_STEPS = 500
RISK_FIELDS = (
    "max_position_fraction",
    "max_total_exposure",
    "max_open_positions",
    "min_confidence",
    "daily_loss_limit",
)


class AgentConfigs(Protocol):
    """What the replay needs from ``agents.service.AgentService``: an agent's stored configuration."""

    def agent_config(self, symbol: str) -> AgentConfig | None: ...


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    symbols: tuple[str, ...]
    interval: str
    start_ms: int
    end_ms: int
    initial_balance: Decimal
    retrain_every: int
    warmup: int
    include_strategies: tuple[int, ...] = ()
    fee_rate: float | None = None
    slippage_bps: float | None = None
    risk: dict[str, float | int] | None = None
    retrain_mode: str = "refit"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReplayRequest:
        """The request as ``to_dict`` stored it in its job's parameters."""
        risk = data.get("risk")
        return cls(
            symbols=tuple(data["symbols"]),
            interval=str(data["interval"]),
            start_ms=int(data["start"]),
            end_ms=int(data["end"]),
            initial_balance=Decimal(str(data["initial_balance"])),
            retrain_every=int(data["retrain_every"]),
            warmup=int(data["warmup"]),
            include_strategies=tuple(int(s) for s in data.get("include_strategies") or ()),
            fee_rate=data.get("fee_rate"),
            slippage_bps=data.get("slippage_bps"),
            risk=dict(risk) if risk else None,
            retrain_mode=str(data.get("retrain_mode", "refit")),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbols": list(self.symbols),
            "interval": self.interval,
            "start": self.start_ms,
            "end": self.end_ms,
            "initial_balance": format(self.initial_balance.normalize(), "f"),
            "retrain_every": self.retrain_every,
            "warmup": self.warmup,
            "include_strategies": list(self.include_strategies),
            "fee_rate": self.fee_rate,
            "slippage_bps": self.slippage_bps,
            "risk": self.risk,
            "retrain_mode": self.retrain_mode,
        }


@dataclass(frozen=True, slots=True)
class ReplayDeps:
    paper: PaperSettings  # a replay trades like the paper account
    risk: RiskSettings
    sessions: sessionmaker[Session]
    market: MarketData
    agents: AgentConfigs
    strategies: StrategyStore
    jobs: JobRunner
    clock: Callable[[], int]


def min_warmup(config: AgentConfig) -> int:
    """Fewest bars before the first decision that could hold the agent's walk-forward folds: every fold's
    inner training window needs ``min_train_rows`` labelled rows (the trainer refuses fewer).

    Necessary, not sufficient: rows whose move stays inside the fee dead zone are dropped from the
    labels, so a real series needs more. A training that still fails is listed in the result's
    retrains, and that agent does not vote until a later retrain point succeeds."""
    cfg = config.train_config()
    rows = (cfg.n_folds + 1) * cfg.min_train_rows / (1.0 - cfg.inner_fraction)
    return math.ceil(rows) + feature_warmup(config.features) + cfg.horizon


def start_replay(deps: ReplayDeps, request: ReplayRequest) -> Job:
    """Validate `request` (a bad one is a 422 now, not a failed job later) and queue the replay job; its
    result id is in the job's parameters. Whichever process claims it loads its inputs again."""
    prepare(deps, request)
    replay_id = uuid.uuid4().hex
    return deps.jobs.submit("replay", {"replay_id": replay_id, **request.to_dict()})


def replay_job(deps: ReplayDeps) -> JobHandler:
    """The ``replay`` job handler: the request is rebuilt from the job's parameters."""

    def handle(stored: dict[str, Any], report: Report) -> dict[str, Any]:
        replay_id = str(stored["replay_id"])
        request = ReplayRequest.from_dict(stored)
        params, inputs, notes = prepare(deps, request)
        try:
            result = run_replay(params, inputs, progress=report, should_stop=report.cancelled)
        except ReplayCancelled:
            raise JobCancelled() from None
        report(1.0, "storing the result")
        save_result(deps.sessions, replay_id, report.job_id, request, result, notes)
        return {"replay_id": replay_id, **summary_counts(result)}

    return handle


def prepare(deps: ReplayDeps, request: ReplayRequest) -> tuple[ReplayParams, ReplayInputs, list[str]]:
    """The replay's parameters and inputs, or InvalidInput naming the first bad field."""
    _check_request(request)
    notes: list[str] = []
    strategies = [_strategy(deps.strategies, sid, request) for sid in request.include_strategies]
    agents: dict[str, AgentConfig] = {}
    for symbol in request.symbols:
        config = deps.agents.agent_config(symbol) or AgentConfig(symbol=symbol, interval=request.interval)
        if config.interval != request.interval:
            notes.append(f"{symbol}'s agent uses {config.interval} candles; replayed on {request.interval}.")
            config = replace(config, interval=request.interval)
        agents[symbol] = config
        cycle_hours = request.retrain_every * interval_ms(request.interval) / 3_600_000
        if cycle_hours > config.max_model_age_hours:
            notes.append(
                f"{symbol}: retrain_every ({request.retrain_every} bars, {cycle_hours:.0f} h) is longer than "
                f"its agent's max_model_age_hours ({config.max_model_age_hours:.0f} h): between retrains its "
                "model goes stale and it does not vote, as it would live."
            )
        needed = min_warmup(config)
        if request.warmup < needed:
            raise _invalid(
                "warmup",
                f"warmup must be at least {needed} bars for {symbol}'s agent: its {config.n_folds}-fold "
                "walk-forward training needs that many candles before the first decision.",
            )
    candles = {s: _candles(deps, s, request) for s in request.symbols}
    longest = max(len(c) for c in candles.values())
    if longest < request.warmup + request.retrain_every:
        raise _invalid(
            "start",
            f"The range holds {longest} closed {request.interval} candles, fewer than warmup + retrain_every "
            f"({request.warmup} + {request.retrain_every}); widen the range or shorten the warm-up.",
        )
    if longest - request.warmup > MAX_STEPS:
        raise _invalid("end", f"At most {MAX_STEPS} decision steps per replay; shorten the range.")
    quote = deps.paper.quote_asset
    filters = {}
    for symbol in request.symbols:
        rules = deps.market.symbol_filters(symbol)
        if rules is not None and rules.quote_asset != quote:
            raise _invalid("symbols", f"{symbol} is quoted in {rules.quote_asset}; replays trade in {quote}.")
        filters[symbol] = rules
    limits = _limits(deps.risk, request.risk)
    costs = CostModel(
        deps.paper.fee_rate if request.fee_rate is None else request.fee_rate,
        deps.paper.slippage_bps if request.slippage_bps is None else request.slippage_bps,
    )
    params = ReplayParams(
        symbols=tuple(sorted(request.symbols)),
        interval=request.interval,
        warmup=request.warmup,
        retrain_every=request.retrain_every,
        initial_balance=request.initial_balance,
        quote_asset=quote,
        costs=costs,
        limits=limits,
        retrain_mode="full" if request.retrain_mode == "full" else "refit",
    )
    return params, ReplayInputs(candles, agents, strategies, filters), notes


def _check_request(request: ReplayRequest) -> None:
    if not 1 <= len(request.symbols) <= MAX_SYMBOLS or len(set(request.symbols)) != len(request.symbols):
        raise _invalid("symbols", f"Give 1 to {MAX_SYMBOLS} different symbols.")
    if request.interval == "1M":
        raise _invalid("interval", "Replays need candles of a fixed length; 1M (calendar months) is not one.")
    if request.end_ms <= request.start_ms:
        raise _invalid("end", "end must be after start.")
    if request.retrain_every < MIN_RETRAIN_EVERY:
        raise _invalid("retrain_every", f"retrain_every must be at least {MIN_RETRAIN_EVERY} bars.")
    if request.warmup < 1:
        raise _invalid("warmup", "warmup must be at least 1 bar.")
    if not request.initial_balance.is_finite() or request.initial_balance <= 0:
        raise _invalid("initial_balance", "initial_balance must be a positive amount.")
    if request.retrain_mode not in ("refit", "full"):
        raise _invalid("retrain_mode", "retrain_mode must be 'refit' or 'full'.")


def _candles(deps: ReplayDeps, symbol: str, request: ReplayRequest) -> Candles:
    try:
        answer = deps.market.history(
            symbol, request.interval, start_ms=request.start_ms, end_ms=request.end_ms
        )
    except InvalidInput:
        raise
    except AppError as exc:
        raise _invalid(
            "symbols", f"No {request.interval} candles for {symbol} in the range: {exc.message}"
        ) from None
    candles = answer.candles
    now = deps.clock()
    keep = len(candles)
    while keep and not is_closed(int(candles.open_time[keep - 1]), request.interval, now):
        keep -= 1  # a still-forming candle never enters a replay
    if keep == 0:
        raise _invalid("symbols", f"No closed {request.interval} candles for {symbol} in the range.")
    return candles.slice(0, keep)


def _strategy(store: StrategyStore, strategy_id: int, request: ReplayRequest) -> StrategyInput:
    try:
        saved = store.get(strategy_id)
    except NotFound:
        raise _invalid("include_strategies", f"No saved strategy with id {strategy_id}.") from None
    health = saved.health or {}
    if not health.get("can_activate", False):
        raise _invalid(
            "include_strategies",
            f"Strategy {strategy_id} ({saved.name}) cannot be activated: its health check found errors.",
        )
    if saved.symbol not in request.symbols or saved.interval != request.interval:
        raise _invalid(
            "include_strategies",
            f"Strategy {strategy_id} trades {saved.symbol} on {saved.interval}; this replay covers "
            f"{', '.join(request.symbols)} on {request.interval}.",
        )
    return StrategyInput(saved.id, saved.version, saved.name, validate_spec(saved.spec))


def _limits(risk: RiskSettings, overrides: dict[str, float | int] | None) -> RiskLimits:
    values: dict[str, Any] = risk.model_dump()
    for name, value in (overrides or {}).items():
        if name not in RISK_FIELDS:
            raise _invalid(f"risk.{name}", f"Unknown risk limit {name!r}; known: {', '.join(RISK_FIELDS)}.")
        values[name] = value
    return RiskLimits(**values)


def _invalid(field: str, message: str) -> InvalidInput:
    return InvalidInput(message, details={"field": field})


# --- storage --------------------------------------------------------------------------------------


def summary_counts(result: ReplayResult) -> dict[str, Any]:
    actions = [d["action"] for d in result.main.decisions]
    return {
        "steps": len(actions),
        "buys": actions.count("buy"),
        "sells": actions.count("sell"),
        "fills": len(result.main.fills),
        "final_equity": result.main.final_equity,
    }


def save_result(
    sessions: sessionmaker[Session],
    replay_id: str,
    job_id: str,
    request: ReplayRequest,
    result: ReplayResult,
    notes: Sequence[str],
) -> None:
    """The replay's row and its decision chunks, in one transaction: all of it or nothing."""
    initial = float(result.params.initial_balance)
    equity = result.main.equity
    drawdown = drawdown_series(equity, initial)
    voters = [_voter_summary(series) for series in result.voters]
    summary = {
        "metrics": result.metrics,
        "comparisons": {k: v for k, v in result.comparisons.items() if k != "curves"},
        "retrains": result.retrains,
        "retrain_mode": result.params.retrain_mode,
        "costs": result.params.costs.to_dict(),
        "limits": result.params.limits.to_dict(),
        "timings": result.timings,
        "data_sources": result.data_sources,
        "sample_data": any(source == "sample" for source in result.data_sources.values()),
        "voters": voters,
        "counts": summary_counts(result),
        "notes": list(notes),
    }
    curves = {
        "step_times": [int(t) for t in result.step_times],
        "equity": _floats(equity),
        "drawdown": _floats(drawdown),
        "fills": result.main.fills,
        "comparison_equity": {k: _floats(v) for k, v in result.comparisons.get("curves", {}).items()},
        "voters": {
            s.voter: {
                "as_of": [int(t) for t in s.as_of],
                "prob_up": _floats(s.prob_up),
                "realised": _floats(s.realised) if s.realised is not None else [],
                "weight": [round(w.value, 6) for w in s.weights],
            }
            for s in result.voters
        },
    }
    decisions = result.main.decisions
    with transaction(sessions) as session:
        session.add(
            ReplayRun(
                id=replay_id,
                job_id=job_id,
                symbols=list(result.params.symbols),
                interval=result.params.interval,
                start_time=request.start_ms,
                end_time=request.end_ms,
                n_steps=len(decisions),
                request=request.to_dict(),
                summary=json_safe(summary),  # a JSON column must not hold NaN
                series=_pack(curves),
            )
        )
        session.flush()
        for k, lo in enumerate(range(0, len(decisions), CHUNK_STEPS)):
            block = decisions[lo : lo + CHUNK_STEPS]
            session.add(
                ReplayChunk(
                    replay_id=replay_id,
                    chunk=k,
                    first_step=lo,
                    n_steps=len(block),
                    payload=_pack([_stored_step(step) for step in block]),
                )
            )


def _voter_summary(series: VoterSeries) -> dict[str, Any]:
    """A voter's record over the replay: votes, resolutions, hit rate and its last weight."""
    realised = series.realised if series.realised is not None else np.full(series.prob_up.shape, np.nan)
    resolved = np.isfinite(realised)
    directional = resolved & (series.prob_up != 0.5)
    hits = (series.prob_up > 0.5) == (np.nan_to_num(realised) > 0)
    return {
        "voter": series.voter,
        "kind": series.kind,
        "symbol": series.symbol,
        "horizon": series.horizon,
        "votes": int(np.isfinite(series.prob_up).sum()),
        "resolved": int(resolved.sum()),
        "hit_rate": float(hits[directional].mean()) if directional.any() else None,
        "final_weight": series.weights[-1].value if series.weights else None,
    }


def list_replays(sessions: sessionmaker[Session], limit: int, offset: int) -> tuple[list[ReplayRun], int]:
    with sessions() as session:
        rows = session.scalars(
            select(ReplayRun).order_by(ReplayRun.created_at.desc(), ReplayRun.id).limit(limit).offset(offset)
        ).all()
        total = session.scalar(select(func.count()).select_from(ReplayRun)) or 0
    return list(rows), int(total)


def get_replay(sessions: sessionmaker[Session], replay_id: str) -> ReplayRun:
    with sessions() as session:
        row = session.get(ReplayRun, replay_id)
    if row is None:
        raise NotFound(f"No replay {replay_id!r}.", code="replay_not_found")
    return row


def replay_series(row: ReplayRun) -> dict[str, Any]:
    series = _unpack(row.series)
    if not isinstance(series, dict):
        raise TypeError(f"replay {row.id}: stored series is not an object")
    return series


def replay_steps(
    sessions: sessionmaker[Session], replay_id: str, offset: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """Decision payloads [offset, offset + limit) of a replay, in step order, and how many there are."""
    row = get_replay(sessions, replay_id)
    first, last = offset // CHUNK_STEPS, (offset + limit - 1) // CHUNK_STEPS
    with sessions() as session:
        chunks = session.scalars(
            select(ReplayChunk)
            .where(ReplayChunk.replay_id == replay_id, ReplayChunk.chunk >= first, ReplayChunk.chunk <= last)
            .order_by(ReplayChunk.chunk)
        ).all()
    steps: list[dict[str, Any]] = []
    for chunk in chunks:
        steps.extend(_read_step(step, row.summary) for step in _unpack(chunk.payload))
    start = offset - first * CHUNK_STEPS
    return steps[start : start + limit], row.n_steps


def _floats(values: np.ndarray) -> list[float | None]:
    return [
        None if not math.isfinite(v) else round(float(v), 8) for v in np.asarray(values, dtype=np.float64)
    ]


# Stored steps leave out what is the same at every step (costs, weighting: in the summary) or follows
# from the rest (risk_checks: the chosen candidate's checks, else the first refused one's, then the kill
# switch, which a replay never has); _read_step puts them back, so a page reads as the live payload.
_DERIVED = ("costs", "weighting", "risk_checks")


def _stored_step(step: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in step.items() if k not in _DERIVED}


def _read_step(step: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    candidates = step["candidates"]
    shown = next((c for c in candidates if c["passed"]), candidates[0] if candidates else None)
    checks = list(shown["checks"]) if shown is not None else []
    kill = jsonable(kill_switch_check(False))
    return {
        **step,
        "costs": summary["costs"],
        "weighting": weighting_summary(),
        "risk_checks": [*checks, kill],
    }


def _pack(value: Any) -> bytes:
    """JSON, zstd-compressed (through pyarrow, already the candle store's engine; level 9: about a sixth
    smaller than zlib on decision JSON and as fast), after an 8-byte little-endian raw length, which
    zstd's decoder in pyarrow needs to be told."""
    raw = json.dumps(json_safe(value), separators=(",", ":")).encode()
    return struct.pack("<Q", len(raw)) + bytes(_ZSTD.compress(raw, asbytes=True))


def _unpack(blob: bytes) -> Any:
    (size,) = struct.unpack("<Q", blob[:8])
    return json.loads(bytes(_ZSTD.decompress(blob[8:], decompressed_size=size, asbytes=True)))
