"""The live stream's events as a client reads them: one envelope per kind, told apart by `kind` (also
the SSE `event:` field), each carrying the same body the REST endpoint for that thing returns."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from routes.schemas.decisions import DecisionOut
from routes.schemas.jobs import AnyJob
from routes.schemas.trading import HaltOut, OrderOut, PortfolioOut
from routes.schemas.values import EpochMs
from utils.intervals import Interval


class StreamTokenOut(BaseModel):
    token: str = Field(description="Pass as `?token=` to GET /api/stream; opens a stream until `expires_at`.")
    expires_at: EpochMs


class _EventBase(BaseModel):
    id: str = Field(
        description="The SSE event id: resume after it with the Last-Event-ID header or `last_event_id`.",
        examples=["3f9c2a1b-42"],
    )
    time: EpochMs = Field(description="When the change happened, by the server's clock.")


class JobEvent(_EventBase):
    kind: Literal["job"]
    job: AnyJob = Field(description="The job as GET /api/jobs/{id} showed it at this change.")


class DecisionEvent(_EventBase):
    kind: Literal["decision"]
    decision: DecisionOut


class OrderEvent(_EventBase):
    kind: Literal["order"]
    order: OrderOut


class PortfolioEvent(_EventBase):
    kind: Literal["portfolio"]
    portfolio: PortfolioOut = Field(description="After a fill or a reset, as GET /api/portfolio shows it.")


class KillSwitchEvent(_EventBase):
    kind: Literal["kill_switch"]
    kill_switch: HaltOut


class CandleEventOut(BaseModel):
    symbol: str = Field(examples=["BTCUSDT"])
    interval: Interval = Field(examples=["1h"])
    open_time: EpochMs
    open: float
    high: float
    low: float
    close: float
    volume: float = Field(description="Volume in the base asset.")


class CandleEvent(_EventBase):
    kind: Literal["candle"]
    candle: CandleEventOut = Field(description="A candle of a watched symbol that has just closed.")


class ResyncOut(BaseModel):
    after: str | None = Field(description="The event id the client asked to resume after, if any.")
    reason: str


class ResyncEvent(_EventBase):
    """Events between the client's position and this one are not available (the server restarted, or
    the client fell too far behind): refetch the state you show through the REST endpoints."""

    kind: Literal["resync"]
    resync: ResyncOut


StreamEvent = Annotated[
    JobEvent | DecisionEvent | OrderEvent | PortfolioEvent | KillSwitchEvent | CandleEvent | ResyncEvent,
    Field(discriminator="kind"),
]
