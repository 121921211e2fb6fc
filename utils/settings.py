"""Typed application settings, read from the environment and `.env`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

from utils.intervals import INTERVALS, is_interval
from utils.symbols import is_symbol

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BINANCE_API_URL = "https://api.binance.com/api"
BINANCE_TESTNET_API_URL = "https://testnet.binance.vision/api"


class _Group(BaseModel):
    """A frozen view of one group of settings; validated already, as the flat fields they come from."""

    model_config = ConfigDict(frozen=True)


class ExchangeSettings(_Group):
    """BINANCE_* and OFFLINE: the client to Binance (utils.binance_api)."""

    offline: bool
    api_url: str  # the effective URL: the testnet's when BINANCE_TESTNET and no custom BINANCE_API_URL
    api_key: SecretStr | None
    api_secret: SecretStr | None
    timeout_seconds: float
    max_retries: int
    weight_limit: int


class StorageSettings(_Group):
    """Where data lives: the database, DATA_DIR, saved strategies, trade logs and exports."""

    database_url: str = Field(repr=False)
    data_dir: Path
    data_dir_watch: bool
    sample_data: bool
    sync_inline_max_candles: int
    upload_max_bytes: int
    strategies_dir: Path
    trade_log_dir: Path
    trade_log_max_bytes: int
    trade_log_backups: int
    trade_export_dir: Path


class AgentSettings(_Group):
    """The ML agents: where models live, how stale one may get, how many train at once."""

    models_dir: Path
    max_model_age_hours: float
    train_max_parallel: int


class TradingSettings(_Group):
    """TRADING_MODE and the LIVE_* settings: what live trading needs and what it costs."""

    mode: Literal["paper", "live"]
    live_trading_confirm: SecretStr | None
    max_order_notional: float
    fee_rate: float
    slippage_bps: float
    quote_asset: str
    include_strategies: tuple[int, ...] | Literal["all"]


class PaperSettings(_Group):
    """PAPER_*: the simulated account's start balance, quote asset and costs."""

    initial_balance: float
    quote_asset: str
    slippage_bps: float
    fee_rate: float


class RiskSettings(_Group):
    """RISK_*: the Mother AI's limits (names as in mother_ai.policy.RiskLimits)."""

    max_position_fraction: float
    max_total_exposure: float
    max_open_positions: int
    min_confidence: float
    daily_loss_limit: float


class SchedulerSettings(_Group):
    """SCHEDULER_*: decisions (and retraining) after each closed candle."""

    enabled: bool
    symbols: tuple[str, ...]
    interval: str
    execute: bool
    retrain_every: int


class JobSettings(_Group):
    """JOB_*: background jobs claimed from the database by any process (utils/jobs.py)."""

    poll_interval_seconds: float
    heartbeat_seconds: float
    stale_seconds: float
    max_attempts: int


class ComputeSettings(_Group):
    """COMPUTE_*: where sweeps, optimisation trials and walk-forward windows run (utils/compute/)."""

    scheduler: str | None  # a Dask scheduler's address (tcp://host:8786); None: a local process pool
    local_workers: int
    direct_to_workers: bool  # the app sends data to and fetches results from Dask workers itself


class Settings(BaseSettings):
    """Every knob of the backend, under the environment variable names documented in `.env.example`.

    The flat fields are what the environment says; domain objects take one group (`exchange`,
    `storage`, `agents`, `trading`, `paper`, `risk`, `scheduler`), never the whole settings.
    pydantic-settings' own nested models would rename the variables (`EXCHANGE__API_KEY`), so the
    groups are frozen views built from the validated fields instead: plain properties, not cached,
    so a `model_copy(update=...)` never carries a stale group."""

    model_config = SettingsConfigDict(
        env_file=PROJECT_ROOT / ".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        case_sensitive=False,
        env_ignore_empty=True,  # `KEY=` in .env means "use the default"
    )

    database_url: str = Field(
        default=f"sqlite:///{PROJECT_ROOT / 'storage' / 'trading.db'}",
        description="SQLAlchemy URL; SQLite by default, postgresql+psycopg://... works unchanged.",
        repr=False,  # it may hold a password
    )
    api_key: SecretStr | None = Field(
        default=None, description="Bearer token for every endpoint but /api/health; generated if unset."
    )
    binance_api_key: SecretStr | None = None
    binance_api_secret: SecretStr | None = None
    binance_api_url: str = Field(default=DEFAULT_BINANCE_API_URL, description="Binance REST base URL.")
    binance_testnet: bool = False
    offline: bool = Field(default=False, description="Never call Binance; serve local data only.")
    trading_mode: Literal["paper", "live"] = "paper"
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [
            "http://localhost:3000",
            "http://127.0.0.1:3000",
            "http://localhost:5173",  # Vite's dev server
            "http://127.0.0.1:5173",
        ]
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    stream_token_ttl_seconds: int = Field(
        default=300,
        ge=10,
        le=86_400,
        description="How long a token from POST /api/stream/token opens GET /api/stream (an open stream "
        "stays open; a browser reconnecting after this asks for a new token).",
    )
    data_dir: Path = Field(default=PROJECT_ROOT / "backtester" / "data")
    data_dir_watch: bool = Field(
        default=True,
        description="Import CSV files dropped into DATA_DIR while running (a watcher thread); "
        "off: only at start-up.",
    )

    # Tuning knobs with safe defaults; documented in .env.example too.
    env_file_path: Path = Field(
        default=PROJECT_ROOT / ".env", description="Where a generated API_KEY is written on first start."
    )
    binance_timeout_seconds: float = Field(default=10.0, gt=0)
    binance_max_retries: int = Field(default=5, ge=0, le=10)
    binance_weight_limit: int = Field(default=6000, gt=0, description="Binance's REQUEST_WEIGHT per minute.")
    sync_inline_max_candles: int = Field(
        default=5000, gt=0, description="Larger syncs run as a background job (202)."
    )
    upload_max_bytes: int = Field(default=100 * 1024 * 1024, gt=0)
    sample_data: bool = Field(default=True, description="Generate the offline sample candles on start.")

    # --- saved JSON strategies ---
    strategies_dir: Path = Field(
        default=PROJECT_ROOT / "storage" / "strategies",
        description="Saved strategies as JSON, one folder per symbol.",
    )

    # --- ML agents ---
    models_dir: Path = Field(
        default=PROJECT_ROOT / "agents" / "models", description="Registered model artifacts (joblib + JSON)."
    )
    agent_max_model_age_hours: float = Field(
        default=24 * 7, gt=0, description="Default age after which an agent's model is stale."
    )
    train_max_parallel: int = Field(default=2, ge=1, le=16, description="Agents training at the same time.")

    # --- trading (paper and live): mother_ai/trade_executer.py, mother_ai/trade_log.py ---
    live_trading_confirm: SecretStr | None = Field(
        default=None,
        description="Must equal the phrase in mother_ai.trade_executer.LIVE_TRADING_CONFIRM_PHRASE "
        "(with TRADING_MODE=live and Binance keys) before a real order is placed.",
    )
    live_max_order_notional: float = Field(
        default=100.0, gt=0, description="Largest estimated notional (quote asset) of one live order."
    )
    live_fee_rate: float = Field(
        default=0.001,
        ge=0,
        lt=0.1,
        description="Your Binance taker fee (fraction of the notional): the cost live edges are judged by.",
    )
    live_slippage_bps: float = Field(
        default=5.0, ge=0, le=1000, description="Slippage live edges allow for, in basis points per side."
    )
    live_quote_asset: str = Field(
        default="USDT", pattern=r"^[A-Z0-9]{2,10}$", description="The asset live equity is reported in."
    )
    paper_initial_balance: float = Field(
        default=10_000.0, gt=0, description="Paper account's starting (and reset) quote balance."
    )
    paper_quote_asset: str = Field(
        default="USDT", pattern=r"^[A-Z0-9]{2,10}$", description="The paper account's quote asset."
    )
    paper_slippage_bps: float = Field(
        default=5.0, ge=0, le=1000, description="Paper fills move this many basis points against you."
    )
    paper_fee_rate: float = Field(
        default=0.001, ge=0, lt=0.1, description="Paper fee as a fraction of the fill notional."
    )
    trade_log_dir: Path = Field(
        default=PROJECT_ROOT / "mother_ai" / "logs", description="JSON-lines trade and decision logs."
    )
    trade_log_max_bytes: int = Field(
        default=10 * 1024 * 1024, gt=0, description="A JSON-lines log rotates when it would exceed this."
    )
    trade_log_backups: int = Field(default=5, ge=1, le=100, description="Rotated log files kept per log.")
    trade_export_dir: Path = Field(
        default=PROJECT_ROOT / "storage" / "trade_logs", description="Where trade CSV exports are written."
    )

    # --- Mother AI risk limits and scheduler: mother_ai/mother_ai.py, mother_ai/scheduler.py ---
    risk_max_position_fraction: float = Field(
        default=0.25, gt=0, le=1, description="Largest value of one position, as a fraction of equity."
    )
    risk_max_total_exposure: float = Field(
        default=0.75, gt=0, le=1, description="Largest value of all open positions, as a fraction of equity."
    )
    risk_max_open_positions: int = Field(default=3, ge=1, le=100, description="Most symbols held at once.")
    risk_min_confidence: float = Field(
        default=0.1, ge=0, le=1, description="Smallest combined confidence |2p-1| that may open or add."
    )
    risk_daily_loss_limit: float = Field(
        default=0.03,
        gt=0,
        le=1,
        description="Loss since the UTC day's start (fraction of start-of-day equity) that halts new "
        "entries until the next UTC day or a manual resume; exits stay allowed.",
    )
    mother_ai_include_strategies: Annotated[tuple[int, ...] | Literal["all"], NoDecode] = Field(
        default=(),
        description="Saved strategies that vote with the agents: comma-separated ids, 'all' (every one whose "
        "health allows activation), or empty/false for none.",
    )
    scheduler_retrain_every: int = Field(
        default=0,
        ge=0,
        le=100_000,
        description="Retrain each scheduled agent every N closed candles of its interval (0: off).",
    )
    scheduler_enabled: bool = Field(
        default=False, description="Run a decision after each SCHEDULER_INTERVAL candle closes."
    )
    scheduler_symbols: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["BTCUSDT", "ETHUSDT"], description="Comma-separated symbols to decide on."
    )
    scheduler_interval: str = Field(default="1h", description="Candle interval whose closes trigger a run.")
    scheduler_execute: bool = Field(
        default=False, description="Scheduled decisions place orders (paper or live per TRADING_MODE)."
    )
    live_reconcile_interval_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Live mode: how often orders left PENDING or UNKNOWN are looked up on Binance.",
    )
    job_poll_interval_seconds: float = Field(
        default=1.0, gt=0, le=60, description="How often a process looks for jobs other processes queued."
    )
    job_heartbeat_seconds: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="How often a process tells the database its jobs still run (and sees cancels).",
    )
    job_stale_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="A running job whose process has been silent this long is queued again for another.",
    )
    job_max_attempts: int = Field(
        default=3, ge=1, le=20, description="Runs a job may lose to dead processes before it is failed."
    )
    compute_scheduler: str | None = Field(
        default=None,
        description="A Dask distributed scheduler's address (tcp://host:8786) research work fans out to; "
        "unset: a local process pool.",
    )
    compute_local_workers: int = Field(
        default=2, ge=1, le=256, description="Processes of the local pool (when no COMPUTE_SCHEDULER is set)."
    )
    compute_direct_to_workers: bool = Field(
        default=True,
        description="The app sends a job's data to the Dask workers and fetches results from them itself; "
        "false when it reaches the scheduler but not the workers (a gateway or proxy between), so both go "
        "through the scheduler (slower: a sweep's candles cross it twice).",
    )
    crash_point: str | None = Field(
        default=None,
        description="Tests only: the process exits at this named point (utils/crash.py). Never set it.",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("mother_ai_include_strategies", mode="before")
    @classmethod
    def _split_strategies(cls, value: object) -> object:
        if isinstance(value, bool):
            return "all" if value else ()
        if isinstance(value, str):
            text = value.strip().lower()
            if text in ("", "false", "none", "0", "no"):
                return ()
            if text in ("all", "true", "yes"):
                return "all"
            items = [item.strip() for item in text.split(",") if item.strip()]
            if not all(item.isdigit() for item in items):
                raise ValueError("expected comma-separated strategy ids, 'all' or empty")
            return tuple(int(item) for item in items)
        return value

    @field_validator("scheduler_symbols", mode="before")
    @classmethod
    def _split_symbols(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip().upper() for item in value.split(",") if item.strip()]
        return value

    @field_validator("scheduler_symbols", mode="after")
    @classmethod
    def _valid_symbols(cls, value: list[str]) -> list[str]:
        for symbol in value:
            if not is_symbol(symbol):
                raise ValueError(f"{symbol!r} is not a symbol (5-20 capital letters or digits)")
        return list(dict.fromkeys(value))

    @field_validator("scheduler_interval", mode="after")
    @classmethod
    def _valid_interval(cls, value: str) -> str:
        if not is_interval(value):
            raise ValueError(f"{value!r} is not one of Binance's intervals: {', '.join(INTERVALS)}")
        return value

    @field_validator("compute_scheduler", mode="after")
    @classmethod
    def _strip_scheduler(cls, value: str | None) -> str | None:
        # Spaces only (env_ignore_empty already maps `COMPUTE_SCHEDULER=` to the default) mean unset too.
        return value.strip() or None if value is not None else None

    @field_validator("crash_point", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator(
        "data_dir",
        "env_file_path",
        "trade_log_dir",
        "trade_export_dir",
        "models_dir",
        "strategies_dir",
        mode="after",
    )
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value if value.is_absolute() else (PROJECT_ROOT / value)

    @property
    def effective_binance_url(self) -> str:
        """The REST base actually used: the testnet's when BINANCE_TESTNET and no custom URL."""
        if self.binance_testnet and self.binance_api_url == DEFAULT_BINANCE_API_URL:
            return BINANCE_TESTNET_API_URL
        return self.binance_api_url.rstrip("/")

    @property
    def exchange(self) -> ExchangeSettings:
        return ExchangeSettings(
            offline=self.offline,
            api_url=self.effective_binance_url,
            api_key=self.binance_api_key,
            api_secret=self.binance_api_secret,
            timeout_seconds=self.binance_timeout_seconds,
            max_retries=self.binance_max_retries,
            weight_limit=self.binance_weight_limit,
        )

    @property
    def storage(self) -> StorageSettings:
        return StorageSettings(
            database_url=self.database_url,
            data_dir=self.data_dir,
            data_dir_watch=self.data_dir_watch,
            sample_data=self.sample_data,
            sync_inline_max_candles=self.sync_inline_max_candles,
            upload_max_bytes=self.upload_max_bytes,
            strategies_dir=self.strategies_dir,
            trade_log_dir=self.trade_log_dir,
            trade_log_max_bytes=self.trade_log_max_bytes,
            trade_log_backups=self.trade_log_backups,
            trade_export_dir=self.trade_export_dir,
        )

    @property
    def agents(self) -> AgentSettings:
        return AgentSettings(
            models_dir=self.models_dir,
            max_model_age_hours=self.agent_max_model_age_hours,
            train_max_parallel=self.train_max_parallel,
        )

    @property
    def trading(self) -> TradingSettings:
        return TradingSettings(
            mode=self.trading_mode,
            live_trading_confirm=self.live_trading_confirm,
            max_order_notional=self.live_max_order_notional,
            fee_rate=self.live_fee_rate,
            slippage_bps=self.live_slippage_bps,
            quote_asset=self.live_quote_asset,
            include_strategies=self.mother_ai_include_strategies,
        )

    @property
    def paper(self) -> PaperSettings:
        return PaperSettings(
            initial_balance=self.paper_initial_balance,
            quote_asset=self.paper_quote_asset,
            slippage_bps=self.paper_slippage_bps,
            fee_rate=self.paper_fee_rate,
        )

    @property
    def risk(self) -> RiskSettings:
        return RiskSettings(
            max_position_fraction=self.risk_max_position_fraction,
            max_total_exposure=self.risk_max_total_exposure,
            max_open_positions=self.risk_max_open_positions,
            min_confidence=self.risk_min_confidence,
            daily_loss_limit=self.risk_daily_loss_limit,
        )

    @property
    def scheduler(self) -> SchedulerSettings:
        return SchedulerSettings(
            enabled=self.scheduler_enabled,
            symbols=tuple(self.scheduler_symbols),
            interval=self.scheduler_interval,
            execute=self.scheduler_execute,
            retrain_every=self.scheduler_retrain_every,
        )

    @property
    def jobs(self) -> JobSettings:
        return JobSettings(
            poll_interval_seconds=self.job_poll_interval_seconds,
            heartbeat_seconds=self.job_heartbeat_seconds,
            stale_seconds=self.job_stale_seconds,
            max_attempts=self.job_max_attempts,
        )

    @property
    def compute(self) -> ComputeSettings:
        return ComputeSettings(
            scheduler=self.compute_scheduler,
            local_workers=self.compute_local_workers,
            direct_to_workers=self.compute_direct_to_workers,
        )

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def secret_values(self) -> list[str]:
        """Every configured secret, so the log filter can scrub them (the database password too)."""
        secrets = [self.api_key, self.binance_api_key, self.binance_api_secret, self.live_trading_confirm]
        values = [s.get_secret_value() for s in secrets if s is not None and s.get_secret_value()]
        password = make_url(self.database_url).password if "://" in self.database_url else None
        return values + ([str(password)] if password else [])
