"""Settings for a test app: a temp SQLite file and temp folders, offline, never a developer's .env; and
Settings read from a chosen .env file or none (`load_settings`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from utils.settings import Settings

API_KEY = "test-api-key-0123456789abcdef"


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'test.db'}",
        "api_key": API_KEY,
        "data_dir": tmp_path / "data",
        "env_file_path": tmp_path / ".env",
        "models_dir": tmp_path / "models",
        "strategies_dir": tmp_path / "strategies",
        "trade_log_dir": tmp_path / "logs",
        "trade_export_dir": tmp_path / "exports",
        "offline": True,
        "binance_timeout_seconds": 2.0,
        "log_level": "INFO",
    }
    values.update(overrides)
    return load_settings(**values)


def load_settings(env_file: Path | None = None, **values: Any) -> Settings:
    """Settings from `values` and the environment, reading `env_file` if given; by default no .env file at
    all, so a test never reads a developer's .env."""
    return Settings(_env_file=env_file, **values)  # type: ignore[call-arg]  # a BaseSettings argument, not a field
