"""Health and background-job endpoints (/api/health, /api/jobs)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from db import storage
from routes.common import AppContext, Ctx, Limit, Offset, Sort, error_responses, require_api_key
from routes.schemas.jobs import JobKind, JobOut, JobStatus, job_out
from routes.schemas.values import EpochMs
from utils.errors import Conflict, NotFound
from utils.exchange_probe import ProbeStatus
from utils.intervals import Interval, as_interval
from utils.market_data.drop_folder import DropFolderStatus

VERSION = "0.1.0"

public = APIRouter(prefix="/api", tags=["system"])
router = APIRouter(prefix="/api", tags=["jobs"], dependencies=[Depends(require_api_key)])


JobId = Annotated[str, Path(max_length=64, examples=["3f2b9c0d4e5f60718293a4b5c6d7e8f9"])]


class RejectedFileOut(BaseModel):
    name: str = Field(description="The file's name in DATA_DIR.", examples=["BTCUSDT-1h-2024-01.csv"])
    reason: str = Field(
        description="Why it was not imported: the first bad line.",
        examples=["Line 12: high is below open or close."],
    )
    size_bytes: int = Field(ge=0, description="Its size when it was tried; a changed file is tried again.")


class DataFilesOut(BaseModel):
    accepted: int = Field(ge=0, description="CSV files in DATA_DIR whose candles are in the file store.")
    rejected: list[RejectedFileOut] = Field(description="CSV files in DATA_DIR that were not imported.")


class BinanceOut(BaseModel):
    status: ProbeStatus = Field(
        description="offline: OFFLINE is set, nothing is asked; unknown: the first ping is under way; "
        "reachable or unreachable: the answer to the latest ping (at most one a minute)."
    )
    checked_at: EpochMs | None
    latency_ms: float | None
    error: str | None = Field(description="Why the latest ping failed.")


class KillSwitchStateOut(BaseModel):
    halted: bool
    changed_at: EpochMs | None


class SchedulerRunOut(BaseModel):
    status: Literal["ran", "failed", "skipped"]
    close_time: EpochMs = Field(description="The candle close the run was for.")
    message: str


class SchedulerOut(BaseModel):
    enabled: bool
    running: bool = Field(description="Whether its thread is alive.")
    leader: bool = Field(
        description="Whether this process holds the scheduler's lease: with several API processes on one "
        "database only the leader runs the scheduled decisions."
    )
    interval: Interval | None
    symbols: list[str]
    execute: bool
    next_run_at: EpochMs | None
    last_run: SchedulerRunOut | None


class AgentDataOut(BaseModel):
    symbol: str = Field(examples=["BTCUSDT"])
    interval: Interval = Field(examples=["1h"])
    model_version: str
    model_stale: bool = Field(description="The model is older than the agent's max_model_age_hours.")
    source: Literal["binance", "file", "sample"] | None = Field(
        description="The stored series its predictions read (null: none stored)."
    )
    last_candle_time: EpochMs | None = Field(description="Open time of the newest stored candle.")
    behind: int | None = Field(description="Closed candles since then that are not stored yet.")
    fresh: bool = Field(description="Stored up to the latest closed candle.")


class ComputeOut(BaseModel):
    """Where sweeps, optimisations and multi-agent training run (COMPUTE_SCHEDULER)."""

    backend: Literal["local", "dask"] = Field(description="local: this machine's processes; dask: a cluster.")
    address: str | None = Field(description="The Dask scheduler's address (null for local).")
    connected: bool = Field(
        description="dask: this process has a connection to the scheduler now (an attempt starts in the "
        "background when it has not); local: always true."
    )
    workers: int | None = Field(description="Worker processes (dask: as last reported by the scheduler).")
    threads: int | None = Field(description="Tasks that run at once.")
    error: str | None = Field(description="Why the last connection to the scheduler failed.")


class HealthResponse(BaseModel):
    status: Literal["ok", "degraded"] = Field(description="degraded when the database does not answer.")
    version: str = Field(examples=[VERSION])
    trading_mode: Literal["paper", "live"]
    offline: bool
    database: bool = Field(description="Whether the database answered a trivial query.")
    data_files: DataFilesOut = Field(
        description="The CSV drop folder (DATA_DIR): files are imported at start-up and when they change."
    )
    binance: BinanceOut
    kill_switch: KillSwitchStateOut | None = Field(description="null when the database does not answer.")
    scheduler: SchedulerOut
    compute: ComputeOut
    agents: list[AgentDataOut] = Field(
        description="Each agent with an active model and the freshness of its data (empty when the "
        "database does not answer)."
    )


class JobList(BaseModel):
    total: int
    limit: int
    offset: int
    jobs: list[JobOut]


@public.get(
    "/health", name="health", response_model=HealthResponse, summary="Liveness and basic state (no auth)"
)
def health(ctx: Ctx) -> HealthResponse:
    db_ok = storage.database_answers(ctx.engine)
    probe = ctx.probe.state()
    return HealthResponse(
        status="ok" if db_ok else "degraded",
        version=VERSION,
        trading_mode=ctx.settings.trading_mode,
        offline=ctx.settings.offline,
        database=db_ok,
        data_files=_data_files(ctx.market.drop_folder.status()),
        binance=BinanceOut(
            status=probe.status, checked_at=probe.checked_at, latency_ms=probe.latency_ms, error=probe.error
        ),
        kill_switch=_kill_switch(ctx) if db_ok else None,
        scheduler=_scheduler(ctx),
        compute=ComputeOut.model_validate(ctx.compute.status(), from_attributes=True),
        agents=_agents(ctx) if db_ok else [],
    )


def _kill_switch(ctx: AppContext) -> KillSwitchStateOut:
    # The reason is the user's own text: the public health check says only whether and since when.
    state = ctx.kill_switch.state()
    return KillSwitchStateOut.model_validate({"halted": state.halted, "changed_at": state.changed_at})


def _scheduler(ctx: AppContext) -> SchedulerOut:
    settings, scheduler = ctx.settings.scheduler, ctx.scheduler
    last = scheduler.last if scheduler is not None else None
    return SchedulerOut(
        enabled=settings.enabled,
        running=scheduler is not None and scheduler.running,
        leader=scheduler is not None and scheduler.running and scheduler.leader,
        interval=as_interval(settings.interval) if settings.enabled else None,
        symbols=list(settings.symbols) if settings.enabled else [],
        execute=settings.enabled and settings.execute,
        next_run_at=scheduler.next_due_ms() if scheduler is not None else None,
        last_run=None
        if last is None or last.status == "not_due" or last.status == "standby"
        else SchedulerRunOut(status=last.status, close_time=last.close_ms, message=last.message),
    )


def _agents(ctx: AppContext) -> list[AgentDataOut]:
    out = []
    for view in ctx.agents.views():
        if view.active_version is None:
            continue
        config = view.config
        data = ctx.market.freshness(config.symbol, config.interval)
        out.append(
            AgentDataOut(
                symbol=config.symbol,
                interval=as_interval(config.interval),
                model_version=view.active_version,
                model_stale=view.stale,
                source=data.source,
                last_candle_time=data.last_open_time,
                behind=data.behind,
                fresh=data.behind == 0,
            )
        )
    return out


def _data_files(status: DropFolderStatus) -> DataFilesOut:
    return DataFilesOut(
        accepted=status.accepted,
        rejected=[
            RejectedFileOut(name=f.name, reason=f.reason, size_bytes=f.size_bytes) for f in status.rejected
        ],
    )


@router.get(
    "/jobs",
    name="list",
    response_model=JobList,
    summary="Recent background jobs, newest first",
    responses=error_responses(401, 422),
)
def list_jobs(
    ctx: Ctx,
    limit: Limit = 50,
    offset: Offset = 0,
    kind: JobKind | None = None,
    status: JobStatus | None = None,
    sort: Sort = "newest",
) -> JobList:
    rows, total = storage.list_jobs(
        ctx.sessions, limit, offset, kind=kind, status=status, newest_first=sort == "newest"
    )
    return JobList(total=total, limit=limit, offset=offset, jobs=[job_out(j) for j in rows])


@router.get(
    "/jobs/{job_id}",
    name="get",
    response_model=JobOut,
    summary="One job's status, progress and result",
    responses=error_responses(401, 404, 422),
)
def get_job(ctx: Ctx, job_id: JobId) -> JobOut:
    job = storage.get_job(ctx.sessions, job_id)
    if job is None:
        raise NotFound(f"No job with id {job_id!r}.", code="job_not_found")
    return job_out(job)


@router.post(
    "/jobs/{job_id}/cancel",
    name="cancel",
    response_model=JobOut,
    summary="Cancel a queued or running job",
    description="Works from any server process on the database, whichever one runs the job: a queued job "
    "ends `cancelled` at once; a running one stops at its next checkpoint (within a few seconds when another "
    "process runs it) and ends `cancelled`, leaving nothing half-written. A job that already ended is a 409.",
    responses=error_responses(401, 404, 409, 422),
)
def cancel_job(ctx: Ctx, job_id: JobId) -> JobOut:
    job = storage.get_job(ctx.sessions, job_id)
    if job is None:
        raise NotFound(f"No job with id {job_id!r}.", code="job_not_found")
    if job.status not in ("queued", "running"):
        raise Conflict(f"Job {job_id} has already ended ({job.status}).", code="job_finished")
    cancelled = ctx.jobs.cancel(job_id)
    if cancelled is None:  # it ended between the read above and the cancel
        raise Conflict(f"Job {job_id} has already ended.", code="job_finished")
    return job_out(cancelled)
