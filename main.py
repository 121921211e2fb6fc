"""The FastAPI application: `create_app(settings)` wires settings, storage, services and routers.

`uvicorn main:app` serves the module-level `app`, built from the environment and `.env`.
Building the app has no side effects; start-up (migrations, API-key generation, sample data,
failing interrupted jobs) happens in the lifespan, so tests and tools can import freely.
"""

from __future__ import annotations

import logging
import re
import secrets
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

import strategy_registry
from agents.service import AgentService
from backtester.optimize import service as optimize_service
from db import storage
from db.locks import Leadership, database_lock
from db.storage import WriteLocks
from ml_engine import model_registry
from mother_ai.mother_ai import make_mother_ai
from mother_ai.recovery import PeriodicReconciler, in_flight_cutoff, reconcile_trading
from mother_ai.replay_service import ReplayDeps, replay_job
from mother_ai.scheduler import DecisionScheduler
from mother_ai.trade_executer import KillSwitch
from mother_ai.trade_log import TradeLog
from routes import agent, backtest, binance, mother_ai, optimize, replay, strategy, stream, system
from routes.common import AppContext, error_message, http_status, require_api_key
from strategy_engine.store import StrategyStore
from utils import crash
from utils.binance_api import exchange_from_settings, wall_clock_ms
from utils.compute import make_compute
from utils.errors import AppError
from utils.events import EventLog
from utils.exchange import Clock, Sleep
from utils.exchange_probe import ExchangeProbe
from utils.files import write_atomic
from utils.jobs import JobRunner, JobTimings, process_name
from utils.logger import ACCESS_LOGGER, add_secrets, redact, request_id_var, setup_logging
from utils.market_data.candles import CandleStore
from utils.market_data.market import MarketData, sync_job
from utils.market_data.watcher import CandleWatcher
from utils.recovery import Repair, log_repairs, swept
from utils.settings import Settings

log = logging.getLogger("app")
access_log = logging.getLogger(ACCESS_LOGGER)  # one line per request; off with uvicorn --no-access-log

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_DEFAULT_BODY_LIMIT = 1024 * 1024
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

# Tag -> operation id prefix: operation ids read `<group>_<route name>` (agents_predict), stable for
# generated clients; the tags group the endpoints as the README does.
_GROUPS = {
    "system": "system",
    "jobs": "jobs",
    "market data": "market",
    "backtest": "backtests",
    "agents": "agents",
    "strategies": "strategies",
    "mother ai": "mother_ai",
    "mother ai replay": "replays",
    "optimisation": "optimizations",
    "trading": "trading",
    "stream": "stream",
}
OPENAPI_TAGS = [
    {"name": "system", "description": "Liveness and state (no auth)."},
    {"name": "jobs", "description": "Background jobs: training, syncs, replays."},
    {"name": "market data", "description": "Binance candles, prices, symbols; CSV import."},
    {"name": "backtest", "description": "Backtests and parameter sweeps."},
    {"name": "agents", "description": "ML agents per symbol: training, predictions, models."},
    {"name": "strategies", "description": "JSON strategies and dashboard blocks."},
    {"name": "mother ai", "description": "Decisions across agents, performance, kill switch."},
    {"name": "mother ai replay", "description": "The Mother AI replayed over history."},
    {
        "name": "optimisation",
        "description": "Strategy optimisation with the statistics that say whether to believe it.",
    },
    {"name": "trading", "description": "Orders and the portfolio (paper unless TRADING_MODE=live)."},
    {"name": "stream", "description": "Live events (Server-Sent Events) for a dashboard."},
]


def operation_id(route: APIRoute) -> str:
    return f"{_GROUPS[str(route.tags[0])]}_{route.name}" if route.tags else route.name


STRATEGY_BODY_LIMIT = 256 * 1024  # a strategy spec or block graph
_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


def create_app(
    settings: Settings | None = None, *, clock: Clock | None = None, sleep: Sleep | None = None
) -> FastAPI:
    settings = settings or Settings()
    clock = clock if clock is not None else wall_clock_ms
    setup_logging(settings.log_level, settings.secret_values())
    crash.arm(settings.crash_point)
    ctx = _build_context(settings, clock, sleep if sleep is not None else time.sleep)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _start(ctx)
        ctx.jobs.start()  # after start-up reconciliation: jobs of a dead process are queued again first
        # DATA_DIR's CSVs now, then watched
        ctx.market.drop_folder.start(watch=ctx.settings.storage.data_dir_watch)
        ctx.candle_watcher.start()
        if ctx.scheduler is not None:
            ctx.scheduler.start()
        if ctx.reconciler is not None:
            ctx.reconciler.start()
        yield
        if ctx.reconciler is not None:
            ctx.reconciler.stop()
        ctx.market.drop_folder.stop()
        ctx.candle_watcher.stop()
        if ctx.scheduler is not None:
            ctx.scheduler.stop()
        ctx.jobs.shutdown()
        ctx.compute.close()  # after the jobs: none of them still maps work onto it
        ctx.engine.dispose()

    app = FastAPIOffline(
        title="AI Trading Backend",
        version=system.VERSION,
        description="Self-hosted trading backend: Binance market data, backtests, JSON strategies, ML agents "
        "and a Mother AI. Paper trading by default. Click **Authorize** and paste your API_KEY.\n\n"
        "Conventions: times are integer epoch milliseconds (`*_time`, `*_at`, `as_of`); money and "
        "quantities are decimal strings; lists answer `{total, limit, offset, <items>}`, newest first.",
        lifespan=lifespan,
        openapi_tags=OPENAPI_TAGS,
        generate_unique_id_function=operation_id,
        # One schema per model: responses then read exactly like the bodies a client sends back.
        separate_input_output_schemas=False,
        # Swagger UI would ask validator.swagger.io about the spec: no outside host on an offline machine.
        swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
        static_url="/docs-static",
    )
    app.state.ctx = ctx
    authed = [Depends(require_api_key)]
    app.include_router(system.public)
    app.include_router(system.router)
    app.include_router(binance.router, dependencies=authed)
    app.include_router(binance.indicators, dependencies=authed)
    app.include_router(backtest.router, dependencies=authed)
    app.include_router(agent.router, dependencies=authed)
    app.include_router(strategy.router, dependencies=authed)
    app.include_router(mother_ai.router, dependencies=authed)
    app.include_router(replay.router, dependencies=authed)
    app.include_router(optimize.router, dependencies=authed)
    app.include_router(mother_ai.trading, dependencies=authed)
    app.include_router(stream.router)  # its own auth: a header, or a stream token in the URL
    _install_error_handlers(app)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "X-Request-ID", "Last-Event-ID"],
        expose_headers=["X-Request-ID"],
    )
    app.add_middleware(
        _BodyLimit,
        limits={"/api/binance/import": settings.upload_max_bytes, "/api/strategies": STRATEGY_BODY_LIMIT},
    )
    app.add_middleware(_RequestContext, frame_ancestors=settings.cors_origins)
    return app


def _build_context(settings: Settings, clock: Clock, sleep: Sleep) -> AppContext:
    engine = storage.make_engine(settings.storage.database_url)
    sessions = storage.make_session_factory(engine)
    exchange = None
    if not settings.exchange.offline:
        exchange = exchange_from_settings(settings.exchange, clock=clock, sleep=sleep)
    store = CandleStore(settings.storage.data_dir / "store")
    market = MarketData(store, exchange, sessions, clock, settings.storage.data_dir)
    events = EventLog(clock)  # what changed, for live streams (routes/stream.py)
    timings = JobTimings(
        poll_s=settings.jobs.poll_interval_seconds,
        heartbeat_s=settings.jobs.heartbeat_seconds,
        stale_s=settings.jobs.stale_seconds,
        max_attempts=settings.jobs.max_attempts,
    )
    jobs = JobRunner(
        sessions,
        owner=process_name(),
        clock=clock,
        max_workers=settings.agents.train_max_parallel + 1,
        events=events,
        timings=timings,
    )
    # Where sweeps, optimisation trials and multi-agent fits run: local processes or a Dask cluster.
    compute = make_compute(
        settings.compute.scheduler,
        settings.compute.local_workers,
        direct_to_workers=settings.compute.direct_to_workers,
    )
    agents = AgentService(sessions, market, jobs, settings.agents.models_dir, clock, compute)
    strategies = StrategyStore(sessions, settings.storage.strategies_dir)
    trade_log = TradeLog.from_settings(settings.storage, settings.secret_values(), clock=clock)
    locks = WriteLocks(engine=engine)  # write locks on the database, shared by every writer of this process
    kill_switch = KillSwitch(sessions, locks, events, clock=clock)
    api_key = ensure_api_key(settings)
    add_secrets([api_key])
    mother, mother_error = None, None
    try:
        mother = make_mother_ai(
            settings,
            sessions,
            market,
            agents,
            clock=clock,
            trade_log=trade_log,
            kill_switch=kill_switch,
            strategies=strategies,
            locks=locks,
            events=events,
        )
    except AppError as exc:  # live mode not fully enabled: trading endpoints answer 409 with the reason
        mother_error = exc
        log.error("trading is disabled: %s", exc.message)
    scheduler = None
    if settings.scheduler.enabled and mother is not None:
        # One process on the database runs it: the holder of the scheduler lease (db/locks.py).
        leadership = Leadership(sessions, "scheduler", jobs.owner, clock, SCHEDULER_LEASE_MS)
        scheduler = DecisionScheduler.for_mother_ai(
            mother, settings.scheduler, clock=clock, agents=agents, leadership=leadership
        )
    reconciler = None
    if mother is not None and mother.executor.mode == "live":
        live_executor = mother.executor

        def reconcile_live() -> list[Repair]:
            return reconcile_trading(
                sessions, live_executor, trade_log, settled_before=in_flight_cutoff(clock()), locks=locks
            )

        reconciler = PeriodicReconciler(reconcile_live, settings.live_reconcile_interval_seconds)
    # The work behind each job kind, so whichever process claims a job can run it (utils/jobs.py).
    jobs.register("train", agents.run_training_job)
    jobs.register("train_many", agents.run_training_many_job)
    jobs.register("sync", sync_job(market))
    replay_deps = ReplayDeps(settings.paper, settings.risk, sessions, market, agents, strategies, jobs, clock)
    jobs.register("replay", replay_job(replay_deps))

    def prepare(request: optimize_service.OptimizeRequest) -> optimize_service.Prepared:
        return strategy_registry.recipe_for(
            request.strategy, request.params, request.space, strategies, version=request.strategy_version
        )

    optimize = optimize_service.OptimizeDeps(
        sessions, market, compute, jobs, settings.storage.database_url, prepare
    )
    jobs.register("optimize", optimize_service.optimize_job(optimize))
    secrets_ = (api_key, *settings.secret_values())
    probe = ExchangeProbe(exchange.ping if exchange is not None else None, clock, secrets=secrets_)
    return AppContext(
        settings,
        engine,
        sessions,
        market,
        jobs,
        agents,
        strategies,
        kill_switch,
        trade_log,
        clock,
        events,
        CandleWatcher(market, events, clock),
        probe,
        compute,
        optimize,
        mother=mother,
        scheduler=scheduler,
        reconciler=reconciler,
        mother_error=mother_error,
        api_key=api_key,
    )


# The leader renews at least every MAX_WAIT_S (60 s); another process takes over 3 minutes after it died.
SCHEDULER_LEASE_MS = 180_000


def _start(ctx: AppContext) -> None:
    storage.upgrade_to_head(ctx.engine)
    # One process at a time: processes starting together would race to seed the same rows and files.
    with database_lock(ctx.engine, "startup"):
        requeued = ctx.jobs.recover()
        if requeued:
            log.warning("queued %d job(s) of a stopped server process to run again", len(requeued))
        _reconcile(ctx)
        if ctx.settings.storage.sample_data:
            ctx.market.ensure_samples()
        ctx.agents.ensure_defaults(ctx.settings.agents.max_model_age_hours)
    log.info(
        "ready: trading_mode=%s offline=%s database=%s",
        ctx.settings.trading_mode,
        ctx.settings.offline,
        redact(ctx.engine.url.render_as_string(hide_password=True)),
    )


def _reconcile(ctx: AppContext) -> list[Repair]:
    """Bring files and records back into agreement after a crash (the rule in utils/recovery.py),
    before any request is served. Binance is not asked here (the live reconciler does it right after
    start), so a slow or unreachable exchange never holds up start-up."""
    training = ctx.agents.training_symbols()
    repairs = [
        *ctx.market.store.reconcile(),
        *ctx.strategies.reconcile(),
        *swept(ctx.settings.trade_export_dir),  # a CSV export cut off mid-write
        *model_registry.reconcile_artifacts(
            ctx.sessions, ctx.settings.agents.models_dir, training.__contains__
        ),
        *reconcile_trading(
            ctx.sessions,
            ctx.mother.executor if ctx.mother else None,
            ctx.trade_log,
            with_exchange=False,
            locks=ctx.mother.locks if ctx.mother else WriteLocks(engine=ctx.engine),
        ),
    ]
    return log_repairs(repairs)


def ensure_api_key(settings: Settings) -> str:
    """The configured API key (settings, else ENV_FILE_PATH), or a new strong one written there and
    printed once. The file is replaced atomically, so a crash never loses the keys already in it."""
    if settings.api_key is not None and settings.api_key.get_secret_value():
        return settings.api_key.get_secret_value()
    path: Path = settings.env_file_path
    lines = path.read_text().splitlines() if path.exists() else []
    for line in lines:
        name, _, value = line.partition("=")
        if name.strip() == "API_KEY" and value.strip():
            return value.strip()
    key = secrets.token_urlsafe(32)
    lines = [line for line in lines if line.partition("=")[0].strip() != "API_KEY"]
    lines.append(f"API_KEY={key}")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, ("\n".join(lines) + "\n").encode())  # a new file, 0600: it holds secrets
    # Shown once, and only on a terminal: `make run > server.log 2>&1` must not put it in a file.
    if sys.stderr.isatty():
        shown = f"Generated API key (saved to {path}):\n\n    {key}\n\n"
    else:
        shown = f"Generated an API key and saved it to {path} as API_KEY (shown only on a terminal).\n"
    print(
        f"\n  {shown}  Use it as 'Authorization: Bearer <key>' or in Swagger UI's Authorize button.\n",
        file=sys.stderr,
        flush=True,
    )
    return key


def _error(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details}}
    return JSONResponse(status_code=status, content=body, headers=headers)


# pydantic's names for the member of a union a value was tried against (``int``, ``constrained-str``,
# ``function-after[...]``): part of its error location, not of the client's field.
_UNION_MEMBER = re.compile(r"(int|float|str|bool|none|constrained-[a-z]+|[a-z-]+\[.*\])")


def _field_of(loc: Sequence[Any]) -> str:
    return ".".join(
        str(part) for part in loc if not (isinstance(part, str) and _UNION_MEMBER.fullmatch(part))
    )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_request: Request, exc: AppError) -> JSONResponse:
        status = http_status(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return _error(status, exc.code, error_message(exc), exc.details, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems: list[dict[str, str]] = []
        for err in exc.errors():
            problem = {"field": _field_of(err.get("loc", ())), "message": str(err.get("msg", "invalid"))}
            if problem not in problems:  # one per field and reason, not one per member of a union
                problems.append(problem)
        first = problems[0] if problems else {"field": "request", "message": "invalid"}
        message = f"Invalid {first['field']}: {first['message']}."
        return _error(422, "validation_error", message, {"field": first["field"], "errors": problems})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # A status without its own code still answers one of the documented codes.
        code = _STATUS_CODES.get(
            exc.status_code, "bad_request" if exc.status_code < 500 else "internal_error"
        )
        message = exc.detail if isinstance(exc.detail, str) else "Request failed."
        if exc.status_code == 400 and message == "There was an error parsing the body":
            # Undecodable bodies are invalid input like any other: one status (422) for all of it.
            return _error(422, "invalid_body", "The request body could not be parsed (is it UTF-8 JSON?).")
        if exc.status_code == 404 and message == "Not Found":
            message = f"No endpoint at {request.url.path}; see /docs for the API."
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}."
        return _error(exc.status_code, code, message, headers=getattr(exc, "headers", None))


class _RequestContext:
    """Gives every request an id (echoed in X-Request-ID, present on every log line), logs it, adds
    the security headers, and turns any unexpected exception into the error body: no stack trace ever
    reaches a client."""

    def __init__(self, app: ASGIApp, frame_ancestors: list[str]) -> None:
        self.app = app
        # Pages (docs, reports) may be framed by this server and the dashboard's origins only.
        ancestors = " ".join(["'self'", *frame_ancestors])
        self.security_headers = [
            (b"x-content-type-options", b"nosniff"),
            (b"content-security-policy", f"frame-ancestors {ancestors}".encode()),
            (b"referrer-policy", b"no-referrer"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers", [])).get(b"x-request-id", b"").decode("latin-1")
        # A caller's id is kept when it is safe to log as is; anything else gets a fresh one.
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:12]
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500  # until a response starts
        responded = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers.append((b"x-request-id", request_id.encode()))
                headers += [h for h in self.security_headers if h[0] not in names]
                if scope["path"].startswith("/api/") and b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))  # answers carry account data
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error")
            if not responded:
                message = f"Internal error; the server log has the details (request id {request_id})."
                await _error(500, "internal_error", message)(scope, receive, send_with_id)
        finally:
            access_log.info(
                "%s %s -> %d (%.1f ms)",
                scope["method"],
                scope["path"],
                status,
                (time.perf_counter() - started) * 1000,
            )
            request_id_var.reset(token)


class _BodyTooLarge(StarletteHTTPException):
    """An HTTPException, so FastAPI's body parsing re-raises it instead of turning it into a 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body is larger than {limit} bytes.")


class _BodyLimit:
    """Rejects request bodies over a limit (per path prefix) with 413 before they are buffered."""

    def __init__(self, app: ASGIApp, limits: dict[str, int]) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        limit = next(
            (size for prefix, size in self.limits.items() if path == prefix or path.startswith(prefix + "/")),
            _DEFAULT_BODY_LIMIT,
        )
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _error(413, "payload_too_large", f"Request body is larger than {limit} bytes.")(
                scope, receive, send
            )
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _error(413, "payload_too_large", f"Request body is larger than {limit} bytes.")(
                    scope, receive, send
                )


def __getattr__(name: str) -> FastAPI:
    # `uvicorn main:app` looks the app up lazily, so importing `create_app` in tests or tools
    # never reads .env or builds a second app.
    if name == "app":
        globals()["app"] = built = create_app()
        return built
    raise AttributeError(name)
