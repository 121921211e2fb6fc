"""Shared fixtures: settings on a temp SQLite file, the real app (fresh, or a copy of one trained
install shared by the whole run), a fake Binance on 127.0.0.1, and one teardown hook for the fuzzed app.

Fixtures only; the builders they use (and tests import) live in tests/support/."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from main import create_app
from tests.fakes.fake_binance import FakeBinance
from tests.support.clock import RecordedSleeps
from tests.support.dask_cluster import DaskCluster, distributed_missing
from tests.support.dask_cluster import dask_cluster as start_dask_cluster
from tests.support.http import cancel_unfinished_jobs
from tests.support.install import TrainedInstall, train_install
from tests.support.postgres import fresh_database, postgres_cluster, skip_or_fail
from tests.support.settings import make_settings
from utils.settings import Settings


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """The fuzzed app's unfinished background jobs are cancelled as soon as its test is over: before
    schemathesis ends the app's lifespan (its own teardown hook, which runs ahead of fixture teardown)
    and so before the app's shutdown would wait for every running training and replay to finish."""
    fuzzed = getattr(item, "funcargs", {}).get("fuzzed_app")
    if isinstance(fuzzed, TestClient):
        cancel_unfinished_jobs(fuzzed)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server for this test process (see tests/support/postgres.py); its admin URL."""
    with postgres_cluster() as url:
        yield url


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[DaskCluster]:
    """A real local Dask cluster (a scheduler and two single-threaded workers, separate processes on
    127.0.0.1; tests/support/dask_cluster.py) for this test process; skips without `distributed`, fails
    then with REQUIRE_SYSTEM_DEPS=1."""
    reason = distributed_missing()
    if reason is not None:
        skip_or_fail(reason)
    with start_dask_cluster(2) as cluster:
        yield cluster


@pytest.fixture
def pg_url(postgres_server: str) -> str:
    """The URL of a new, empty PostgreSQL database: a fresh install's."""
    return fresh_database(postgres_server)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty database of each kind the app runs on: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The real app, offline, on a fresh SQLite file with the sample data."""
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def trained_install(tmp_path_factory: pytest.TempPathFactory) -> TrainedInstall:
    """One offline install whose BTCUSDT and ETHUSDT agents are trained, built once per run for every
    test that only needs trained agents; never use it in place, copy it (`trained_install.copy_to`)."""
    return train_install(tmp_path_factory.mktemp("trained-install"))


@pytest.fixture
def trained_client(trained_install: TrainedInstall, tmp_path: Path) -> Iterator[TestClient]:
    """The real app, offline, on a copy of the trained install."""
    settings = make_settings(trained_install.copy_to(tmp_path))
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
