"""Database engine, sessions, migrations to head, and the small repository functions."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, func, select, text, update
from sqlalchemy.orm import Session, defer, sessionmaker

from db.locks import database_lock
from db.models import BacktestRun, Job, SymbolInfo, utc_at, utcnow

log = logging.getLogger(__name__)
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def make_engine(database_url: str) -> Engine:
    """An engine for `database_url`; SQLite gets WAL, a busy timeout and foreign keys."""
    if database_url.startswith("sqlite"):
        path = database_url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(database_url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            # FULL, not WAL's usual NORMAL: with NORMAL a power loss can drop the last commits, and an
            # acknowledged fill or decision must survive one. It costs one fsync of the WAL per commit.
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.close()

        @event.listens_for(engine, "checkin")
        def _durable_again(dbapi_conn: Any, record: Any) -> None:
            # A `transaction(durable=False)` relaxed this connection; the next user gets FULL again.
            if record is not None and record.info.pop(_RELAXED, False):
                cursor = dbapi_conn.cursor()
                cursor.execute("PRAGMA synchronous=FULL")
                cursor.close()

        return engine
    return create_engine(database_url, pool_pre_ping=True)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


_RELAXED = "synchronous_relaxed"  # a pooled SQLite connection's info: FULL is to be restored at check-in


@contextmanager
def transaction(factory: sessionmaker[Session], *, durable: bool = True) -> Iterator[Session]:
    """One write transaction: committed on success, rolled back on any error.

    On SQLite it takes the write lock up front (BEGIN IMMEDIATE): a deferred transaction that
    reads and then writes fails at once with "database is locked" when another connection
    committed in between, while an immediate one waits (busy timeout) instead.

    `durable=False` is for derived data that can be computed again (a stored backtest): its commit
    does not wait for the disk (SQLite's synchronous=NORMAL for this transaction, PostgreSQL's
    synchronous_commit=off). It is still atomic and survives the process being killed; only a power
    loss or an OS crash can drop the last such commits, never half of one, and never a durable commit.
    """
    with factory() as session, session.begin():
        dialect = session.get_bind().dialect.name
        if dialect == "sqlite":
            if not durable:
                connection = session.connection()
                connection.info[_RELAXED] = True
                connection.exec_driver_sql("PRAGMA synchronous=NORMAL")
            session.execute(text("BEGIN IMMEDIATE"))
        elif not durable and dialect == "postgresql":
            session.execute(text("SET LOCAL synchronous_commit = off"))  # this transaction only
        yield session


@dataclass(frozen=True)
class WriteLocks:
    """This process's locks on one database: writers that must not interleave queue here instead of
    racing for SQLite's single write lock. create_app builds one and hands it to every writer;
    other processes do not share it, and BEGIN IMMEDIATE (or FOR UPDATE) and UNIQUE constraints
    keep them correct without it."""

    orders: threading.Lock = field(default_factory=threading.Lock)  # orders, balances, the kill switch
    decide: threading.Lock = field(default_factory=threading.Lock)  # executed decisions
    # The database the cross-process half of `deciding` locks (None: this process only, as in unit tests).
    engine: Engine | None = None

    @contextmanager
    def deciding(self) -> Iterator[None]:
        """The decide-and-execute critical section: this process's threads queue on `decide`, then the
        database lock serialises every process on the database, so risk limits hold across all of them."""
        with self.decide:
            if self.engine is None:
                yield
                return
            with database_lock(self.engine, "decide"):
                yield


def upgrade_to_head(engine: Engine) -> None:
    """Apply every Alembic migration not yet applied, once however many processes start together: each
    takes the migration lock first, so the first migrates and the others find the schema at head."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with database_lock(engine, "migrations"), engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def database_answers(engine: Engine) -> bool:
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception:  # any driver error means "no"; health must never raise
        log.warning("database health check failed", exc_info=True)
        return False


# --- jobs -----------------------------------------------------------------------------------------


def create_job(
    factory: sessionmaker[Session],
    job_id: str,
    kind: str,
    params: dict[str, Any],
    *,
    exclusive_key: str | None = None,
    updated: tuple[int, str] | None = None,
    running_as: str | None = None,
    now_ms: int,
) -> Job:
    """Insert a job, queued (or already running as `running_as`, for work run in the caller's thread),
    created at `now_ms` (the job runner's clock). IntegrityError when a queued or running job holds
    `exclusive_key`."""
    with transaction(factory) as session:
        job = Job(
            id=job_id,
            kind=kind,
            status="queued" if running_as is None else "running",
            progress=0.0,
            message="queued" if running_as is None else "running",
            params=params,
            exclusive_key=exclusive_key,
            cancel_requested=False,
            attempts=0 if running_as is None else 1,
            owner=running_as,
            heartbeat_at=now_ms if running_as is not None else None,
            created_at=utc_at(now_ms),
            started_at=utc_at(now_ms) if running_as is not None else None,
            updated_at=updated[0] if updated else None,
            updated_by=updated[1] if updated else None,
        )
        session.add(job)
    return job


def get_job(factory: sessionmaker[Session], job_id: str) -> Job | None:
    with factory() as session:
        return session.get(Job, job_id)


def list_jobs(
    factory: sessionmaker[Session],
    limit: int,
    offset: int,
    *,
    kind: str | None = None,
    status: str | None = None,
    newest_first: bool = True,
) -> tuple[Sequence[Job], int]:
    """Jobs (optionally of one kind and status), newest first unless told otherwise, and the count."""
    conditions = []
    if kind is not None:
        conditions.append(Job.kind == kind)
    if status is not None:
        conditions.append(Job.status == status)
    created = (Job.created_at.desc(), Job.id.desc()) if newest_first else (Job.created_at.asc(), Job.id.asc())
    with factory() as session:
        rows = session.scalars(
            select(Job).where(*conditions).order_by(*created).limit(limit).offset(offset)
        ).all()
        total = session.scalar(select(func.count()).select_from(Job).where(*conditions)) or 0
        return rows, total


def update_job(factory: sessionmaker[Session], job_id: str, **fields: Any) -> None:
    with transaction(factory) as session:
        session.execute(update(Job).where(Job.id == job_id).values(**fields))


def mark_job_done(session: Session, job_id: str, result: dict[str, Any], *, finished_at: datetime) -> None:
    """Record a job's success inside `session`'s transaction."""
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(status="done", progress=1.0, message="done", result=result, finished_at=finished_at)
    )


# --- symbols --------------------------------------------------------------------------------------


def upsert_symbols(
    factory: sessionmaker[Session], symbols: Sequence[dict[str, Any]], *, updated_at: datetime | None = None
) -> None:
    """Insert or replace symbol rows (portable: merge by primary key, no dialect-specific upsert).

    `updated_at` records when the rows were fetched (default: now by the wall clock); callers with
    an injected clock pass its time so freshness checks use the same clock.
    """
    stamp = updated_at or utcnow()
    with transaction(factory) as session:
        for row in symbols:
            session.merge(SymbolInfo(**row, updated_at=stamp))


def list_symbols(factory: sessionmaker[Session]) -> Sequence[SymbolInfo]:
    with factory() as session:
        return session.scalars(select(SymbolInfo).order_by(SymbolInfo.symbol)).all()


def get_symbol(factory: sessionmaker[Session], symbol: str) -> SymbolInfo | None:
    with factory() as session:
        return session.get(SymbolInfo, symbol)


# --- backtests ------------------------------------------------------------------------------------


def save_backtest(factory: sessionmaker[Session], run: BacktestRun) -> None:
    # Derived data (the same request computes it again) holding megabytes of blobs: the fsync a
    # trading row's commit waits for cost a sixth of a 200,000-bar POST /api/backtest.
    with transaction(factory, durable=False) as session:
        session.add(run)


def get_backtest(factory: sessionmaker[Session], backtest_id: str) -> BacktestRun | None:
    with factory() as session:
        return session.get(BacktestRun, backtest_id)


def list_backtests(
    factory: sessionmaker[Session],
    limit: int,
    offset: int,
    *,
    symbol: str | None = None,
    interval: str | None = None,
    strategy: str | None = None,
    strategy_id: int | None = None,
    newest_first: bool = True,
) -> tuple[Sequence[BacktestRun], int]:
    """Newest first unless told otherwise, without loading the (large) equity blobs and trade lists;
    `strategy` matches the display name (a built-in's name), `strategy_id` a saved strategy."""
    conditions = []
    for column, value in (
        (BacktestRun.symbol, symbol),
        (BacktestRun.interval, interval),
        (BacktestRun.strategy, strategy),
        (BacktestRun.strategy_id, strategy_id),
    ):
        if value is not None:
            conditions.append(column == value)
    created = (
        (BacktestRun.created_at.desc(), BacktestRun.id.desc())
        if newest_first
        else (BacktestRun.created_at.asc(), BacktestRun.id.asc())
    )
    with factory() as session:
        rows = session.scalars(
            select(BacktestRun)
            .where(*conditions)
            .options(defer(BacktestRun.equity_blob), defer(BacktestRun.trades))
            .order_by(*created)
            .limit(limit)
            .offset(offset)
        ).all()
        total = session.scalar(select(func.count()).select_from(BacktestRun).where(*conditions)) or 0
        return rows, total
