"""utils/settings.py: the documented names, defaults and parsing rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.support.settings import load_settings
from utils.settings import BINANCE_TESTNET_API_URL, PROJECT_ROOT, Settings


def test_defaults_are_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.trading_mode == "paper"
    assert settings.database_url.startswith("sqlite:///")
    assert "storage" in settings.database_url
    assert settings.binance_api_url == "https://api.binance.com/api"
    assert settings.data_dir == PROJECT_ROOT / "backtester" / "data"
    assert settings.offline is False


def test_environment_names_are_the_documented_ones(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": "postgresql+psycopg://u:p@db/trading",
        "API_KEY": "k" * 32,
        "BINANCE_API_KEY": "bk",
        "BINANCE_API_SECRET": "bs",
        "BINANCE_API_URL": "http://127.0.0.1:9999/api",
        "BINANCE_TESTNET": "true",
        "OFFLINE": "1",
        "TRADING_MODE": "live",
        "CORS_ORIGINS": "http://a.example, http://b.example",
        "LOG_LEVEL": "debug",
        "DATA_DIR": "some/dir",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.database_url == env["DATABASE_URL"]
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "k" * 32
    assert settings.binance_testnet is True
    assert settings.offline is True
    assert settings.trading_mode == "live"
    assert settings.cors_origins == ["http://a.example", "http://b.example"]
    assert settings.log_level == "DEBUG"
    assert settings.data_dir == PROJECT_ROOT / "some" / "dir"
    # A custom URL wins over the testnet default, so tests can point the testnet at a fake.
    assert settings.effective_binance_url == "http://127.0.0.1:9999/api"
    assert "k" * 32 not in repr(settings), "secrets are masked in repr"


def test_testnet_uses_binance_testnet_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BINANCE_TESTNET", "true")
    assert load_settings().effective_binance_url == BINANCE_TESTNET_API_URL


def test_empty_values_in_env_file_mean_default(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("DATABASE_URL=\nAPI_KEY=\nTRADING_MODE=\n")
    settings = load_settings(env_file)
    assert settings.database_url.startswith("sqlite:///")
    assert settings.api_key is None
    assert settings.trading_mode == "paper"


def test_invalid_trading_mode_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADING_MODE", "yolo")
    with pytest.raises(ValidationError, match="trading_mode"):
        load_settings()


def test_env_example_documents_every_field() -> None:
    documented = {
        line.split("=", 1)[0].strip()
        for line in (PROJECT_ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }
    assert {name.upper() for name in Settings.model_fields} == documented


def test_the_database_password_is_a_secret() -> None:
    settings = load_settings(database_url="postgresql+psycopg://trader:hunter2@db/trading")
    assert "hunter2" in settings.secret_values()
    assert "hunter2" not in repr(settings)


# Each documented variable -> the group and field a domain object reads it from.
GROUPED = [
    ("OFFLINE", "true", "exchange", "offline", True),
    ("BINANCE_API_URL", "http://127.0.0.1:1/api/", "exchange", "api_url", "http://127.0.0.1:1/api"),
    ("BINANCE_TIMEOUT_SECONDS", "3.5", "exchange", "timeout_seconds", 3.5),
    ("BINANCE_MAX_RETRIES", "2", "exchange", "max_retries", 2),
    ("BINANCE_WEIGHT_LIMIT", "1200", "exchange", "weight_limit", 1200),
    ("DATABASE_URL", "sqlite:///x.db", "storage", "database_url", "sqlite:///x.db"),
    ("DATA_DIR", "/srv/data", "storage", "data_dir", Path("/srv/data")),
    ("DATA_DIR_WATCH", "false", "storage", "data_dir_watch", False),
    ("SAMPLE_DATA", "false", "storage", "sample_data", False),
    ("SYNC_INLINE_MAX_CANDLES", "77", "storage", "sync_inline_max_candles", 77),
    ("UPLOAD_MAX_BYTES", "1234", "storage", "upload_max_bytes", 1234),
    ("STRATEGIES_DIR", "/srv/s", "storage", "strategies_dir", Path("/srv/s")),
    ("TRADE_LOG_DIR", "/srv/logs", "storage", "trade_log_dir", Path("/srv/logs")),
    ("TRADE_LOG_MAX_BYTES", "4096", "storage", "trade_log_max_bytes", 4096),
    ("TRADE_LOG_BACKUPS", "9", "storage", "trade_log_backups", 9),
    ("TRADE_EXPORT_DIR", "/srv/x", "storage", "trade_export_dir", Path("/srv/x")),
    ("MODELS_DIR", "/srv/m", "agents", "models_dir", Path("/srv/m")),
    ("AGENT_MAX_MODEL_AGE_HOURS", "12", "agents", "max_model_age_hours", 12.0),
    ("TRAIN_MAX_PARALLEL", "3", "agents", "train_max_parallel", 3),
    ("TRADING_MODE", "live", "trading", "mode", "live"),
    ("LIVE_MAX_ORDER_NOTIONAL", "55", "trading", "max_order_notional", 55.0),
    ("LIVE_FEE_RATE", "0.0004", "trading", "fee_rate", 0.0004),
    ("LIVE_SLIPPAGE_BPS", "3", "trading", "slippage_bps", 3.0),
    ("LIVE_QUOTE_ASSET", "FDUSD", "trading", "quote_asset", "FDUSD"),
    ("MOTHER_AI_INCLUDE_STRATEGIES", "3,1", "trading", "include_strategies", (3, 1)),
    ("PAPER_INITIAL_BALANCE", "500", "paper", "initial_balance", 500.0),
    ("PAPER_QUOTE_ASSET", "BUSD", "paper", "quote_asset", "BUSD"),
    ("PAPER_SLIPPAGE_BPS", "1.5", "paper", "slippage_bps", 1.5),
    ("PAPER_FEE_RATE", "0.002", "paper", "fee_rate", 0.002),
    ("RISK_MAX_POSITION_FRACTION", "0.2", "risk", "max_position_fraction", 0.2),
    ("RISK_MAX_TOTAL_EXPOSURE", "0.6", "risk", "max_total_exposure", 0.6),
    ("RISK_MAX_OPEN_POSITIONS", "4", "risk", "max_open_positions", 4),
    ("RISK_MIN_CONFIDENCE", "0.3", "risk", "min_confidence", 0.3),
    ("RISK_DAILY_LOSS_LIMIT", "0.05", "risk", "daily_loss_limit", 0.05),
    ("SCHEDULER_ENABLED", "true", "scheduler", "enabled", True),
    ("SCHEDULER_SYMBOLS", "solusdt", "scheduler", "symbols", ("SOLUSDT",)),
    ("SCHEDULER_INTERVAL", "15m", "scheduler", "interval", "15m"),
    ("SCHEDULER_EXECUTE", "true", "scheduler", "execute", True),
    ("SCHEDULER_RETRAIN_EVERY", "24", "scheduler", "retrain_every", 24),
    ("JOB_POLL_INTERVAL_SECONDS", "0.5", "jobs", "poll_interval_seconds", 0.5),
    ("JOB_HEARTBEAT_SECONDS", "1.5", "jobs", "heartbeat_seconds", 1.5),
    ("JOB_STALE_SECONDS", "45", "jobs", "stale_seconds", 45.0),
    ("JOB_MAX_ATTEMPTS", "5", "jobs", "max_attempts", 5),
    ("COMPUTE_SCHEDULER", " tcp://10.0.0.5:8786 ", "compute", "scheduler", "tcp://10.0.0.5:8786"),
    ("COMPUTE_LOCAL_WORKERS", "3", "compute", "local_workers", 3),
    ("COMPUTE_DIRECT_TO_WORKERS", "false", "compute", "direct_to_workers", False),
]
# Read by the server itself (main.py, the logger, auth), not by a domain object.
SERVER_LEVEL = {
    "api_key",
    "cors_origins",
    "log_level",
    "env_file_path",
    "binance_testnet",
    "stream_token_ttl_seconds",
    "live_reconcile_interval_seconds",
    "crash_point",
}


@pytest.mark.parametrize(("variable", "text", "group", "name", "expected"), GROUPED)
def test_each_variable_reaches_its_group_under_its_documented_name(
    monkeypatch: pytest.MonkeyPatch, variable: str, text: str, group: str, name: str, expected: object
) -> None:
    monkeypatch.setenv(variable, text)
    assert getattr(getattr(load_settings(), group), name) == expected


def test_every_field_is_in_one_group_or_server_level() -> None:
    grouped = {variable.lower() for variable, *_ in GROUPED} | {"binance_api_key", "binance_api_secret"}
    grouped |= {"live_trading_confirm"}
    assert set(Settings.model_fields) == grouped | SERVER_LEVEL


def test_a_copy_with_changes_never_keeps_a_stale_group() -> None:
    settings = load_settings()
    assert settings.paper.fee_rate == 0.001
    changed = settings.model_copy(update={"paper_fee_rate": 0.0, "risk_max_open_positions": 9})
    assert (changed.paper.fee_rate, changed.risk.max_open_positions) == (0.0, 9)
    assert changed.paper.model_config.get("frozen") is True
