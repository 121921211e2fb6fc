"""Health and background-job endpoints (/api/health, /api/jobs)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from db import storage
from routes.common import Ctx, Limit, Offset, Sort, error_responses, require_api_key
from routes.schemas.jobs import JobKind, JobOut, JobStatus, job_out
from utils.errors import Conflict, NotFound
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


class HealthResponse(BaseModel):
    status: Literal["ok", "degraded"] = Field(description="degraded when the database does not answer.")
    version: str = Field(examples=[VERSION])
    trading_mode: Literal["paper", "live"]
    offline: bool
    database: bool = Field(description="Whether the database answered a trivial query.")
    data_files: DataFilesOut = Field(
        description="The CSV drop folder (DATA_DIR): files are imported at start-up and when they change."
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
    return HealthResponse(
        status="ok" if db_ok else "degraded",
        version=VERSION,
        trading_mode=ctx.settings.trading_mode,
        offline=ctx.settings.offline,
        database=db_ok,
        data_files=_data_files(ctx.market.drop_folder.status()),
    )


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
    description="The job stops at its next checkpoint and ends as `cancelled`, leaving nothing half-written. "
    "A job that already finished is answered as it is (409).",
    responses=error_responses(401, 404, 409, 422),
)
def cancel_job(ctx: Ctx, job_id: JobId) -> JobOut:
    job = storage.get_job(ctx.sessions, job_id)
    if job is None:
        raise NotFound(f"No job with id {job_id!r}.", code="job_not_found")
    if job.status not in ("queued", "running"):
        raise Conflict(f"Job {job_id} has already ended ({job.status}).", code="job_finished")
    if not ctx.jobs.cancel(job_id):
        raise Conflict(
            f"Job {job_id} is not running in this server process, so it cannot be cancelled here.",
            code="job_not_here",
        )
    refreshed = storage.get_job(ctx.sessions, job_id)
    return job_out(refreshed or job)
