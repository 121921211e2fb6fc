"""Shared fixtures: settings on a temp SQLite file, the real app, and a fake Binance on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from main import create_app
from tests.fakes.fake_binance import FakeBinance
from utils.settings import Settings

API_KEY = "test-api-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


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
    # _env_file=None: tests never read a developer's .env.
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


class RecordedSleeps(list[float]):
    """An injectable sleep: remembers how long the code under test wanted to wait, waits for nothing."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The real app, offline, on a fresh SQLite file with the sample data."""
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def fake_binance() -> Iterator[FakeBinance]:
    with FakeBinance() as fake:
        yield fake


@pytest.fixture
def sleeps() -> RecordedSleeps:
    return RecordedSleeps()


@pytest.fixture
def online_app(tmp_path: Path, fake_binance: FakeBinance, sleeps: RecordedSleeps) -> Callable[..., FastAPI]:
    """A factory for the real app talking to the fake Binance, with the fake's clock."""

    def build(**overrides: Any) -> FastAPI:
        values: dict[str, Any] = {"offline": False, "binance_api_url": fake_binance.url}
        values.update(overrides)
        return create_app(make_settings(tmp_path, **values), clock=lambda: fake_binance.now_ms, sleep=sleeps)

    return build


@pytest.fixture
def online_client(online_app: Callable[..., FastAPI]) -> Iterator[TestClient]:
    with TestClient(online_app(), raise_server_exceptions=False) as test_client:
        yield test_client
