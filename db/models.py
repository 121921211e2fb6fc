"""SQLAlchemy 2.0 typed models: every table the backend owns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_at(ms: int) -> datetime:
    """The aware UTC datetime of `ms` milliseconds since the epoch (an injectable clock's reading),
    exact: no float on the way."""
    return _EPOCH + timedelta(milliseconds=ms)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSON}


class Lease(Base):
    """A role held by one process at a time until `expires_at` (epoch ms), renewed while it lives;
    a process that dies stops renewing, and another takes the role once the lease expired."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[int] = mapped_column(BigInteger)


class Job(Base):
    """A unit of background work (sync, training, sweep) and its observable progress."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)  # queued, running, done, failed
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The job runner's clock, as are started_at, finished_at and the epoch-ms columns below: no default
    # from the machine's time, so a writer that forgets it fails rather than mixing the two clocks.
    created_at: Mapped[datetime] = mapped_column(index=True)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # Claimed from the database by any process (utils/jobs.py): who runs it and when it last said so
    # (epoch ms), whether someone asked it to stop, how many runs it took, and who last changed it.
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    heartbeat_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # One queued or running job per key across every process (one training per symbol).
    exclusive_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    updated_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    updated_by: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (
        Index(
            "uq_jobs_exclusive_live",
            "exclusive_key",
            unique=True,
            sqlite_where=text("status IN ('queued', 'running')"),
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
    )


class SymbolInfo(Base):
    """A tradable symbol and its Binance filters, cached so they are known offline."""

    __tablename__ = "symbols"

    symbol: Mapped[str] = mapped_column(String(20), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    base_asset: Mapped[str] = mapped_column(String(16))
    quote_asset: Mapped[str] = mapped_column(String(16))
    # Filters are decimal strings as Binance sends them: floats would misround step checks.
    tick_size: Mapped[str] = mapped_column(String(32))
    step_size: Mapped[str] = mapped_column(String(32))
    min_qty: Mapped[str] = mapped_column(String(32))
    max_qty: Mapped[str] = mapped_column(String(32))
    min_notional: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16))  # binance or sample
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class BacktestRun(Base):
    """One stored backtest: its inputs, metrics, trades and the full equity curve."""

    __tablename__ = "backtests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    symbol: Mapped[str] = mapped_column(String(20), index=True)
    interval: Mapped[str] = mapped_column(String(4))
    strategy: Mapped[str] = mapped_column(String(100), index=True)
    strategy_kind: Mapped[str | None] = mapped_column(String(8), nullable=True)  # builtin, saved, inline
    strategy_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)  # saved ones
    strategy_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # JSON strategies (saved or inline): the spec that ran, whatever happens to the saved one later.
    spec: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True, default=None)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    data_source: Mapped[str] = mapped_column(String(16))
    start_time: Mapped[int] = mapped_column(BigInteger)
    end_time: Mapped[int] = mapped_column(BigInteger)
    n_bars: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The closed trades and the curve (open time, equity per bar) are columns, each a Parquet file in
    # memory (backtester/columnar.py): as JSON rows, storing and reading 5,500 trades cost more than
    # running the backtest, and a 1M-bar curve would be tens of megabytes.
    trades: Mapped[bytes] = mapped_column(LargeBinary)
    open_trade: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    equity_blob: Mapped[bytes] = mapped_column(LargeBinary)


class StrategyRecord(Base):
    """A saved JSON strategy; its versions live in `strategy_versions` and its latest in a JSON file."""

    __tablename__ = "strategies"
    __table_args__ = (UniqueConstraint("symbol", "slug", name="uq_strategies_symbol_slug"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    slug: Mapped[str] = mapped_column(String(80))
    symbol: Mapped[str] = mapped_column(String(20), index=True)
    interval: Mapped[str] = mapped_column(String(4))
    version: Mapped[int] = mapped_column(Integer)  # latest version number
    health_score: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class StrategyVersion(Base):
    """One immutable version of a saved strategy: the spec and its health report when saved."""

    __tablename__ = "strategy_versions"

    strategy_id: Mapped[int] = mapped_column(
        ForeignKey("strategies.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    health: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AgentRecord(Base):
    """A symbol agent's configuration; agents for new symbols are rows, not code."""

    __tablename__ = "agents"

    symbol: Mapped[str] = mapped_column(String(20), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # btc, eth or generic: which defaults it started from
    interval: Mapped[str] = mapped_column(String(4))
    horizon: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)  # thresholds, feature set, max model age...
    active_version: Mapped[str | None] = mapped_column(String(40), nullable=True)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelVersion(Base):
    """A trained model artifact registered by checksum; only registered files are ever loaded."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("symbol", "version", name="uq_model_versions_symbol_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    symbol: Mapped[str] = mapped_column(String(20), index=True)
    version: Mapped[str] = mapped_column(String(40))
    path: Mapped[str] = mapped_column(String(300))  # relative to the models root
    sha256: Mapped[str] = mapped_column(String(64))
    interval: Mapped[str] = mapped_column(String(4))
    horizon: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    trained_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- trading (paper and live) ---------------------------------------------------------------------
# Owned by mother_ai/trade_executer.py. Every table carries `mode` ("paper" or "live") in its key
# and a CHECK on it, and every query filters by it, so a paper record can never pass for a live one.

TRADING_MODES = ("paper", "live")
_MODE_CHECK = "mode IN ('paper', 'live')"


class ExactDecimal(TypeDecorator[Decimal]):
    """A Decimal stored as its exact decimal string: money never goes through a float.

    Numeric is exact on PostgreSQL but SQLite keeps it as a float, and balances must not drift;
    nothing sums these columns in SQL, so a string is portable and exact everywhere."""

    impl = String(48)
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if not isinstance(value, Decimal | int) or isinstance(value, bool):
            # A float here means float arithmetic leaked into money: fail loudly, never round silently.
            raise TypeError(f"ExactDecimal needs a Decimal, got {type(value).__name__}")
        decimal = Decimal(value)
        if not decimal.is_finite():
            raise ValueError("ExactDecimal cannot store NaN or infinity")
        return format(decimal, "f")

    def process_result_value(self, value: str | None, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


class TradingAccount(Base):
    """One account per mode: the paper account's quote asset, initial balance and reset epoch."""

    __tablename__ = "trading_accounts"
    __table_args__ = (CheckConstraint(_MODE_CHECK, name="ck_trading_accounts_mode"),)

    mode: Mapped[str] = mapped_column(String(8), primary_key=True)
    quote_asset: Mapped[str] = mapped_column(String(16))
    initial_balance: Mapped[Decimal] = mapped_column(ExactDecimal)
    # Bumped by a paper reset; orders keep the epoch they were placed in, so history survives.
    epoch: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column()
    reset_at: Mapped[datetime | None] = mapped_column(nullable=True)


class TradingBalance(Base):
    """Amount held of one asset in one mode (live: free + locked in the last Binance account snapshot)."""

    __tablename__ = "trading_balances"
    __table_args__ = (CheckConstraint(_MODE_CHECK, name="ck_trading_balances_mode"),)

    mode: Mapped[str] = mapped_column(String(8), primary_key=True)
    asset: Mapped[str] = mapped_column(String(16), primary_key=True)
    amount: Mapped[Decimal] = mapped_column(ExactDecimal)
    updated_at: Mapped[datetime] = mapped_column()


class TradingPosition(Base):
    """A long spot position opened by this backend, per mode and symbol, with its realised pnl."""

    __tablename__ = "trading_positions"
    __table_args__ = (CheckConstraint(_MODE_CHECK, name="ck_trading_positions_mode"),)

    mode: Mapped[str] = mapped_column(String(8), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(20), primary_key=True)
    base_asset: Mapped[str] = mapped_column(String(16))
    quote_asset: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[Decimal] = mapped_column(ExactDecimal)
    # Cost of the open quantity in the quote asset, fees included; the average entry is derived
    # from it, and keeping the total (not the average) keeps pnl exact across partial sells.
    cost_basis: Mapped[Decimal] = mapped_column(ExactDecimal)
    avg_entry_price: Mapped[Decimal] = mapped_column(ExactDecimal)
    realised_pnl: Mapped[Decimal] = mapped_column(ExactDecimal)
    updated_at: Mapped[datetime] = mapped_column()


class TradeOrder(Base):
    """One submitted order, filled or rejected; (mode, client_order_id) is the idempotency key."""

    __tablename__ = "trade_orders"
    __table_args__ = (
        UniqueConstraint("mode", "client_order_id", name="uq_trade_orders_mode_client_order_id"),
        CheckConstraint(_MODE_CHECK, name="ck_trade_orders_mode"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    mode: Mapped[str] = mapped_column(String(8))  # the UNIQUE (mode, client_order_id) indexes it
    client_order_id: Mapped[str] = mapped_column(String(36))
    symbol: Mapped[str] = mapped_column(String(20), index=True)
    side: Mapped[str] = mapped_column(String(4))  # BUY or SELL
    type: Mapped[str] = mapped_column(String(16))  # MARKET
    # PENDING (live, sent), FILLED, PARTIALLY_FILLED, NEW, EXPIRED, REJECTED, UNKNOWN (no answer)
    status: Mapped[str] = mapped_column(String(16), index=True)
    requested_quantity: Mapped[Decimal | None] = mapped_column(ExactDecimal, nullable=True)
    requested_quote_amount: Mapped[Decimal | None] = mapped_column(ExactDecimal, nullable=True)
    executed_quantity: Mapped[Decimal] = mapped_column(ExactDecimal)
    quote_quantity: Mapped[Decimal] = mapped_column(ExactDecimal)  # fill notional
    price: Mapped[Decimal | None] = mapped_column(ExactDecimal, nullable=True)  # average fill price
    # The market price before slippage (paper) or the estimate the live checks used.
    reference_price: Mapped[Decimal | None] = mapped_column(ExactDecimal, nullable=True)
    price_source: Mapped[str | None] = mapped_column(String(16), nullable=True)
    fee: Mapped[Decimal] = mapped_column(ExactDecimal)
    fee_asset: Mapped[str | None] = mapped_column(String(16), nullable=True)
    realised_pnl: Mapped[Decimal] = mapped_column(ExactDecimal)  # realised by this order (sells)
    reject_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reject_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    exchange_order_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    decision_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    # Open time of the last closed candle the decision saw (chart markers); None for other orders.
    candle_open_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    epoch: Mapped[int] = mapped_column(Integer, default=1)
    # No defaults here or on the account, balance and position times: the executors stamp them with the
    # app's clock (mother_ai/accounts.py), and a writer that forgot would fail rather than use the machine's.
    created_at: Mapped[datetime] = mapped_column(index=True)
    updated_at: Mapped[datetime] = mapped_column()


class TradingControl(Base):
    """The kill switch: a single row (id 1); while `halted`, no executor accepts a new order."""

    __tablename__ = "trading_controls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    halted: Mapped[bool] = mapped_column(default=False)
    reason: Mapped[str] = mapped_column(Text, default="")
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- Mother AI: predictions, decisions, equity -----------------------------------------------------
# Owned by mother_ai/mother_ai.py and mother_ai/performance_tracker.py.


class PredictionRecord(Base):
    """One agent's prediction, as recorded (usually as a vote of a decision), and how it resolved.

    The same prediction (agent, model_version, as_of) is recorded once per decision it voted in;
    skill statistics count it once (see mother_ai/performance_tracker.py)."""

    __tablename__ = "predictions"
    __table_args__ = (Index("ix_predictions_agent_as_of", "agent", "as_of"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agent: Mapped[str] = mapped_column(String(40))  # the agent's symbol today; room for other voters
    symbol: Mapped[str] = mapped_column(String(20))
    interval: Mapped[str] = mapped_column(String(4))
    horizon: Mapped[int] = mapped_column(Integer)  # bars
    model_version: Mapped[str] = mapped_column(String(40))
    as_of: Mapped[int] = mapped_column(BigInteger)  # open time (ms) of the last closed candle used
    prob_up: Mapped[float] = mapped_column(Float)
    action: Mapped[str] = mapped_column(String(4))  # buy, sell or hold
    confidence: Mapped[float] = mapped_column(Float)
    expected_return: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    decision_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    resolved: Mapped[bool] = mapped_column(default=False, index=True)
    resolved_at: Mapped[datetime | None] = mapped_column(nullable=True)
    realised_return: Mapped[float | None] = mapped_column(Float, nullable=True)
    hit: Mapped[bool | None] = mapped_column(nullable=True)  # None when prob_up is exactly 0.5
    brier: Mapped[float | None] = mapped_column(Float, nullable=True)
    follow_pnl: Mapped[float | None] = mapped_column(Float, nullable=True)  # a return, fees included


class DecisionRecord(Base):
    """One Mother AI decision with its full provenance (`payload`) and the order it placed, if any.

    (mode, client_order_id) is UNIQUE: retrying a decide with the same client order id returns the
    first decision instead of deciding (and trading) again."""

    __tablename__ = "decisions"
    __table_args__ = (
        UniqueConstraint("mode", "client_order_id", name="uq_decisions_mode_client_order_id"),
        CheckConstraint(_MODE_CHECK, name="ck_decisions_mode"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # uuid4 hex
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    mode: Mapped[str] = mapped_column(String(8))
    symbols: Mapped[list[str]] = mapped_column(JSON)  # the symbols it was asked about
    action: Mapped[str] = mapped_column(String(4))  # buy, sell or hold
    symbol: Mapped[str | None] = mapped_column(String(20), nullable=True)
    size_quote: Mapped[Decimal | None] = mapped_column(ExactDecimal, nullable=True)
    size_fraction: Mapped[float | None] = mapped_column(Float, nullable=True)  # of equity
    executed: Mapped[bool] = mapped_column(default=False)
    client_order_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    order_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    order_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)


class EquitySnapshot(Base):
    """The portfolio's equity at one moment; the equity curve and drawdown are built from these."""

    __tablename__ = "equity_snapshots"
    __table_args__ = (
        Index("ix_equity_snapshots_mode_time", "mode", "time"),
        CheckConstraint(_MODE_CHECK, name="ck_equity_snapshots_mode"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    mode: Mapped[str] = mapped_column(String(8))
    epoch: Mapped[int] = mapped_column(Integer, default=1)  # a paper reset starts a new curve
    time: Mapped[datetime] = mapped_column()
    equity: Mapped[Decimal] = mapped_column(ExactDecimal)
    realised: Mapped[Decimal] = mapped_column(ExactDecimal)
    unrealised: Mapped[Decimal] = mapped_column(ExactDecimal)


class RiskDay(Base):
    """Daily-loss state per mode and UTC day: the start-of-day equity, a breach, a manual resume.

    `baseline_equity` is what today's loss is measured from: the start-of-day equity, or the
    equity at the last manual resume (so a resume re-arms the limit instead of disabling it)."""

    __tablename__ = "risk_days"
    __table_args__ = (CheckConstraint(_MODE_CHECK, name="ck_risk_days_mode"),)

    mode: Mapped[str] = mapped_column(String(8), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD, UTC
    epoch: Mapped[int] = mapped_column(Integer, default=1)
    start_equity: Mapped[Decimal] = mapped_column(ExactDecimal)
    baseline_equity: Mapped[Decimal] = mapped_column(ExactDecimal)
    breached_at: Mapped[datetime | None] = mapped_column(nullable=True)
    resumed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReplayRun(Base):
    """One Mother AI replay: its request, summary (metrics, comparisons, retrains) and compressed series.

    A replay never writes the trading tables; its results live here alone. `series` is zlib-compressed
    JSON (equity, fills, per-voter predictions and weights); the decision payloads of its steps are in
    `replay_chunks`, a few hundred steps per compressed row, so one page can be read without the rest."""

    __tablename__ = "replays"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    symbols: Mapped[list[str]] = mapped_column(JSON)
    interval: Mapped[str] = mapped_column(String(4))
    start_time: Mapped[int] = mapped_column(BigInteger)
    end_time: Mapped[int] = mapped_column(BigInteger)
    n_steps: Mapped[int] = mapped_column(Integer)
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    series: Mapped[bytes] = mapped_column(LargeBinary)


class ReplayChunk(Base):
    """A compressed block of consecutive decision payloads of one replay."""

    __tablename__ = "replay_chunks"

    replay_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("replays.id", ondelete="CASCADE"), primary_key=True
    )
    chunk: Mapped[int] = mapped_column(Integer, primary_key=True)
    first_step: Mapped[int] = mapped_column(Integer)
    n_steps: Mapped[int] = mapped_column(Integer)
    payload: Mapped[bytes] = mapped_column(LargeBinary)


__all__ = [
    "TRADING_MODES",
    "AgentRecord",
    "BacktestRun",
    "Base",
    "DecisionRecord",
    "EquitySnapshot",
    "ExactDecimal",
    "Job",
    "ModelVersion",
    "PredictionRecord",
    "ReplayChunk",
    "ReplayRun",
    "RiskDay",
    "StrategyRecord",
    "StrategyVersion",
    "SymbolInfo",
    "TradeOrder",
    "TradingAccount",
    "TradingBalance",
    "TradingControl",
    "TradingPosition",
    "UTCDateTime",
    "utc_at",
    "utcnow",
]


class OptimizationRun(Base):
    """One strategy optimisation (backtester/optimize): its request, and when done its result (winner,
    trials, statistics, verdict; walk-forward windows and the stitched out-of-sample curve). The Optuna
    study behind it lives in Optuna's own tables under the same id."""

    __tablename__ = "optimizations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    symbol: Mapped[str] = mapped_column(String(20), index=True)
    interval: Mapped[str] = mapped_column(String(4))
    strategy: Mapped[str] = mapped_column(String(100))
    strategy_kind: Mapped[str] = mapped_column(String(8))  # builtin, saved or inline
    strategy_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    strategy_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
