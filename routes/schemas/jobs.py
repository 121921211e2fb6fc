"""Background jobs as a client reads them: one body per job kind, told apart by `kind`, each with the
parameters it was started with and (when done) its own result."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter, field_validator

from db.models import Job
from routes.common import ErrorCode, ErrorContext
from routes.schemas.agents import ModelMetricsOut
from routes.schemas.values import DecimalStr, EpochMs, source_field
from utils.intervals import Interval
from utils.market_data.candles import DataSource

JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]
JobKind = Literal["train", "train_many", "sync", "replay", "optimize"]


class JobError(BaseModel):
    """Why a failed job failed: the same code and message an endpoint would have answered with."""

    code: ErrorCode = Field(examples=["no_data"])
    message: str
    details: ErrorContext | None = None


class _JobBase(BaseModel):
    id: str
    status: JobStatus
    progress: float = Field(ge=0, le=1)
    message: str
    error: JobError | None = Field(description="Set when the job failed.")
    attempts: int = Field(
        ge=0,
        description="Runs started so far: more than one when a server process stopped while running it and "
        "another (or the next start) took it up again.",
    )
    cancel_requested: bool = Field(
        description="A cancel was asked for; a running job stops at its next checkpoint."
    )
    created_at: EpochMs
    started_at: EpochMs | None
    finished_at: EpochMs | None


class TrainParams(BaseModel):
    symbol: str
    interval: Interval | None = None  # absent from jobs stored before it was recorded


class TrainResult(BaseModel):
    symbol: str
    version: str = Field(description="The model trained and activated.")
    source: DataSource = source_field()
    chosen: str = Field(description="The model family walk-forward selection chose.")
    metrics: ModelMetricsOut


class TrainJobOut(_JobBase):
    kind: Literal["train"]
    params: TrainParams
    result: TrainResult | None


class TrainManyParams(BaseModel):
    symbols: list[str]


class AgentTrained(BaseModel):
    symbol: str
    version: str | None = Field(description="The model trained and activated; null when it failed.")
    error: str | None = Field(description="Why this agent's training failed.")
    source: DataSource | None = source_field(optional=True)
    chosen: str | None = None
    metrics: ModelMetricsOut | None = None


class TrainManyResult(BaseModel):
    results: list[AgentTrained]


class TrainManyJobOut(_JobBase):
    kind: Literal["train_many"]
    params: TrainManyParams
    result: TrainManyResult | None


class SyncParams(BaseModel):
    symbol: str
    interval: Interval
    start: EpochMs
    end: EpochMs


class GapOut(BaseModel):
    after: EpochMs = Field(description="Open time of the last candle before the hole.")
    before: EpochMs = Field(description="Open time of the first candle after the hole.")
    missing: int = Field(description="How many candles are missing (reported, never invented).")


class SyncResult(BaseModel):
    symbol: str
    interval: Interval
    start: EpochMs
    end: EpochMs
    added: int
    requests: int
    stored: int
    gaps: list[GapOut]


class SyncJobOut(_JobBase):
    kind: Literal["sync"]
    params: SyncParams
    result: SyncResult | None


class ReplayParams(BaseModel):
    replay_id: str
    symbols: list[str]
    interval: Interval
    start: EpochMs
    end: EpochMs
    initial_balance: DecimalStr
    retrain_every: int
    warmup: int
    include_strategies: list[int] | Literal["all"]
    fee_rate: float | None
    slippage_bps: float | None
    risk: dict[str, float] | None = Field(description="Risk limits overridden for this replay.")
    retrain_mode: Literal["refit", "full"]


class ReplayResult(BaseModel):
    replay_id: str = Field(description="Read it with GET /api/mother-ai/replays/{replay_id}.")
    steps: int
    buys: int
    sells: int
    fills: int
    final_equity: float


class ReplayJobOut(_JobBase):
    kind: Literal["replay"]
    params: ReplayParams
    result: ReplayResult | None


class OptimizeParams(BaseModel):
    optimization_id: str = Field(description="Read it with GET /api/optimizations/{optimization_id}.")
    symbol: str
    interval: Interval
    strategy: str | int = Field(description='A built-in name or a saved id as given; "inline" for a spec.')
    strategy_version: int | None = Field(
        default=None, description="The saved strategy's version being optimised (fixed when queued)."
    )
    objective: str
    n_trials: int
    sampler: Literal["tpe", "grid"]
    seed: int
    trials_per_round: int = Field(default=8, description="Trials asked and run at once per round.")
    start: EpochMs | None
    end: EpochMs | None

    @field_validator("strategy", mode="before")
    @classmethod
    def _inline(cls, value: Any) -> Any:
        return "inline" if isinstance(value, dict) else value


class OptimizeResult(BaseModel):
    optimization_id: str
    trials: int
    winner: dict[str, int | float] | None = Field(description="The winning parameter values.")
    objective: float | None
    verdict: Literal["credible", "doubtful", "likely_overfit"]


class OptimizeJobOut(_JobBase):
    kind: Literal["optimize"]
    params: OptimizeParams
    result: OptimizeResult | None


AnyJob = TrainJobOut | TrainManyJobOut | SyncJobOut | ReplayJobOut | OptimizeJobOut
JobOut = Annotated[AnyJob, Field(discriminator="kind")]
_JOB: TypeAdapter[AnyJob] = TypeAdapter(JobOut)


def job_out(job: Job) -> AnyJob:
    stored = job.result or {}
    failed = "error" in stored  # utils.jobs stores a failure as {"error": {...}} in the result
    return _JOB.validate_python(
        {
            "id": job.id,
            "kind": job.kind,
            "status": job.status,
            "progress": job.progress,
            "message": job.message,
            "params": job.params,
            "result": None if failed or job.result is None else job.result,
            "error": stored["error"] if failed else None,
            "attempts": job.attempts or 0,
            "cancel_requested": bool(job.cancel_requested),
            "created_at": job.created_at,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
        }
    )
