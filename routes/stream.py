"""The live stream (/api/stream): Server-Sent Events of job progress, decisions, orders, portfolio and
kill-switch changes and newly closed candles, resumable by event id; and the short-lived token a
browser's EventSource opens it with (POST /api/stream/token)."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import RootModel

from db.models import Job
from mother_ai.decision import Decision
from mother_ai.orders import HaltState, OrderResult, Portfolio
from routes.common import AppContext, Ctx, error_responses, require_api_key
from routes.schemas.decisions import DecisionOut
from routes.schemas.events import (
    CandleEvent,
    CandleEventOut,
    DecisionEvent,
    JobEvent,
    KillSwitchEvent,
    OrderEvent,
    PortfolioEvent,
    ResyncEvent,
    ResyncOut,
    StreamEvent,
    StreamTokenOut,
)
from routes.schemas.jobs import job_out
from routes.schemas.trading import halt_out, order_out, portfolio_out
from utils import stream_tokens
from utils.errors import Unauthorized
from utils.events import EVENT_KINDS, Event, EventKind, Missed
from utils.intervals import Interval
from utils.market_data.watcher import ClosedCandle, watch_key
from utils.symbols import SYMBOL_PATTERN

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/stream", tags=["stream"])

IDLE_S = 15.0  # how often an idle stream wakes (FastAPI sends its keep-alive comment as often)
RETRY_MS = 3000  # the reconnect delay EventSource is told to use

_bearer = HTTPBearer(auto_error=False)


class StreamEventBody(RootModel[StreamEvent]):
    """One event's `data:` (JSON); its `kind` is also the SSE `event:` field."""


@router.post(
    "/token",
    name="token",
    response_model=StreamTokenOut,
    summary="A short-lived token that opens the live stream",
    description="For browsers: EventSource cannot send the API key as a header, and the key must never "
    "sit in a URL. The token opens GET /api/stream until it expires (STREAM_TOKEN_TTL_SECONDS); a "
    "stream already open stays open.",
    dependencies=[Depends(require_api_key)],
    responses=error_responses(401),
)
def token(ctx: Ctx) -> StreamTokenOut:
    issued = stream_tokens.issue(ctx.api_key, ctx.clock(), ctx.settings.stream_token_ttl_seconds * 1000)
    return StreamTokenOut(token=issued.token, expires_at=issued.expires_at)


def _authenticate(
    ctx: Ctx,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    token: Annotated[str | None, Query(max_length=200, description="From POST /api/stream/token.")] = None,
) -> None:
    """The API key header, or a stream token in the URL (a browser's EventSource sends no headers);
    checked before the stream starts, so a refusal is the usual 401 body."""
    if credentials is not None and credentials.scheme.lower() == "bearer":
        if hmac.compare_digest(credentials.credentials.encode(), ctx.api_key.encode()):
            return
        raise Unauthorized("Invalid API key.")
    if token is None:
        raise Unauthorized(
            "Missing credentials: pass ?token= from POST /api/stream/token, or the API key header."
        )
    if not stream_tokens.verify(ctx.api_key, token, ctx.clock()):
        raise Unauthorized("Invalid or expired stream token: ask POST /api/stream/token for a new one.")


@dataclass(frozen=True, slots=True)
class _Subscription:
    """What one stream reads, and its registration with the event log."""

    wanted: frozenset[EventKind]
    keys: frozenset[str]  # the watched candles' keys
    ready: asyncio.Event


async def _subscribe(
    ctx: Ctx,
    _auth: Annotated[None, Depends(_authenticate)],
    kinds: Annotated[
        list[EventKind] | None, Query(description="Only these kinds (repeat the parameter).")
    ] = None,
    symbols: Annotated[
        list[Annotated[str, Query(pattern=SYMBOL_PATTERN)]] | None,
        Query(max_length=20, description="Watch these symbols' candles (repeat the parameter)."),
    ] = None,
    interval: Interval = "1h",
) -> AsyncIterator[_Subscription]:
    """Registers the stream for the life of the request. A dependency, not the stream's own generator,
    owns this: FastAPI cancels the generator's producer task wherever it waits when the client goes,
    and a generator cancelled outside itself runs its `finally` only once garbage collected, so a
    vanished client would stay registered (and its candles watched) for an unbounded time."""
    wanted = frozenset(kinds or EVENT_KINDS)
    pairs: list[tuple[str, str]] = (
        [(s, interval) for s in dict.fromkeys(symbols or [])] if "candle" in wanted else []
    )
    ctx.candle_watcher.watch(pairs)
    try:
        with ctx.events.subscribe() as ready:
            yield _Subscription(wanted, frozenset(watch_key(s, i) for s, i in pairs), ready)
    finally:
        ctx.candle_watcher.unwatch(pairs)


async def events(
    ctx: Ctx,
    subscription: Annotated[_Subscription, Depends(_subscribe)],
    last_event_id: Annotated[str | None, Query(max_length=64)] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID", max_length=64)] = None,
) -> AsyncIterator[ServerSentEvent]:
    async for event in _stream(ctx, subscription, last_event_id_header or last_event_id):
        yield event


# FastAPI documents an SSE route's item from its return annotation, and leaves ServerSentEvent frames
# (what this route yields: they carry the ids) undocumented, so the route is registered with the item
# each frame's data holds as its annotation.
events.__annotations__["return"] = AsyncIterator[StreamEventBody]
router.add_api_route(
    "",
    events,
    methods=["GET"],
    name="events",
    response_class=EventSourceResponse,
    summary="Live events (Server-Sent Events)",
    description="`text/event-stream`: each event has an `id:`, an `event:` (its kind) and a JSON `data:` "
    "(the schema below). Authenticate with `?token=` from POST /api/stream/token, or the usual "
    "Authorization header. Resume with the Last-Event-ID header (EventSource sends it when it "
    "reconnects) or `last_event_id`; when the events after it are gone (a restart, or too far "
    "behind) the stream starts with a `resync` event: refetch the state you show. Without "
    "`kinds`, every kind; candles only for the `symbols` named, at `interval`, as each closes.",
    responses={
        200: {"description": "The event stream; `itemSchema` is one event, its `data:` a StreamEventBody."},
        **error_responses(401, 422, stream=True),
    },
)


async def _stream(
    ctx: AppContext, subscription: _Subscription, resume_after: str | None
) -> AsyncIterator[ServerSentEvent]:
    log_ = ctx.events
    start = log_.position(resume_after)
    yield ServerSentEvent(retry=RETRY_MS, comment="stream open")
    if isinstance(start, Missed):
        yield _resync(ctx, start, "unknown event id: the server restarted, or it is too old")
        start = start.resume_seq
    wanted, keys = subscription.wanted, subscription.keys
    async for batch in log_.follow(start, idle_s=IDLE_S, subscription=subscription.ready):
        if batch is None:
            continue  # idle: FastAPI's keep-alive comment holds the connection
        if isinstance(batch, Missed):
            yield _resync(ctx, batch, "this client fell behind the events the server keeps")
            continue
        for event in batch:
            if event.kind in wanted and (event.kind != "candle" or event.key in keys):
                sse = _render(event)
                if sse is not None:
                    yield sse


def _resync(ctx: AppContext, missed: Missed, reason: str) -> ServerSentEvent:
    body = ResyncEvent(
        id=f"{ctx.events.log_id}-{missed.resume_seq}",
        time=ctx.clock(),
        kind="resync",
        resync=ResyncOut(after=missed.after, reason=reason),
    )
    return ServerSentEvent(raw_data=body.model_dump_json(), id=body.id, event="resync")


def _render(event: Event) -> ServerSentEvent | None:
    """The event as its kind's envelope; None (logged) for a payload of an unexpected type, so one bad
    event never ends a stream."""
    try:
        body = _body(event)
    except Exception:
        log.exception("stream: could not render %s event %s", event.kind, event.id)
        return None
    return ServerSentEvent(raw_data=body.model_dump_json(), id=event.id, event=event.kind)


def _body(event: Event) -> StreamEvent:
    common: dict[str, Any] = {"id": event.id, "time": event.time}
    payload = event.payload
    if event.kind == "job" and isinstance(payload, Job):
        return JobEvent(**common, kind="job", job=job_out(payload))
    if event.kind == "decision" and isinstance(payload, Decision):
        decision = DecisionOut.model_validate(payload.to_dict())
        return DecisionEvent(**common, kind="decision", decision=decision)
    if event.kind == "order" and isinstance(payload, OrderResult):
        return OrderEvent(**common, kind="order", order=order_out(payload))
    if event.kind == "portfolio" and isinstance(payload, Portfolio):
        return PortfolioEvent(**common, kind="portfolio", portfolio=portfolio_out(payload))
    if event.kind == "kill_switch" and isinstance(payload, HaltState):
        return KillSwitchEvent(**common, kind="kill_switch", kill_switch=halt_out(payload))
    if event.kind == "candle" and isinstance(payload, ClosedCandle):
        candle = CandleEventOut.model_validate(payload, from_attributes=True)
        return CandleEvent(**common, kind="candle", candle=candle)
    raise TypeError(f"a {event.kind} event carries a {type(payload).__name__}")
