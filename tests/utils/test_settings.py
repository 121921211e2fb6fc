"""utils/settings.py: the documented names, defaults and parsing rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from utils.settings import BINANCE_TESTNET_API_URL, PROJECT_ROOT, Settings


def test_defaults_are_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
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
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
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
    assert Settings(_env_file=None).effective_binance_url == BINANCE_TESTNET_API_URL  # type: ignore[call-arg]


def test_empty_values_in_env_file_mean_default(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("DATABASE_URL=\nAPI_KEY=\nTRADING_MODE=\n")
    settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    assert settings.database_url.startswith("sqlite:///")
    assert settings.api_key is None
    assert settings.trading_mode == "paper"


def test_invalid_trading_mode_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADING_MODE", "yolo")
    with pytest.raises(ValidationError, match="trading_mode"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_env_example_documents_every_field() -> None:
    documented = {
        line.split("=", 1)[0].strip()
        for line in (PROJECT_ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }
    assert {name.upper() for name in Settings.model_fields} == documented


def test_the_database_password_is_a_secret() -> None:
    settings = Settings(_env_file=None, database_url="postgresql+psycopg://trader:hunter2@db/trading")  # type: ignore[call-arg]
    assert "hunter2" in settings.secret_values()
    assert "hunter2" not in repr(settings)
