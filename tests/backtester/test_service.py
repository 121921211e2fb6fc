"""backtester/service.py `run_store_and_render`: the body is made while the row is written, and nothing is
answered before the row is committed."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

import strategy_registry
from backtester import service
from backtester.runner import BacktestConfig
from db import storage
from tests.support.http import ctx_of

REQUEST = service.BacktestRequest("BTCUSDT", "1h", None, None, BacktestConfig(fee_rate=0.001))


def strategy(client: TestClient) -> strategy_registry.ResolvedStrategy:
    return strategy_registry.resolve("sma_crossover", {"fast": 10, "slow": 30}, ctx_of(client).strategies)


def test_the_rendered_body_comes_back_with_the_row_committed(client: TestClient) -> None:
    ctx = ctx_of(client)
    seen: list[service.StoredBacktest] = []

    def render(stored: service.StoredBacktest) -> str:
        seen.append(stored)
        return stored.run.id

    backtest_id = service.run_store_and_render(ctx.market, ctx.sessions, strategy(client), REQUEST, render)
    assert [s.run.id for s in seen] == [backtest_id]
    read = service.get_stored(ctx.sessions, backtest_id)  # committed by the time the call returned
    assert read.trades.trades() == seen[0].trades.trades() and len(read.trades) > 10
    assert read.run.created_at == seen[0].run.created_at  # what the body showed is what is stored


def test_a_failed_write_raises_instead_of_answering(client: TestClient, tmp_path: Path) -> None:
    ctx = ctx_of(client)
    # A database without the schema: the INSERT fails in the writing thread.
    empty = storage.make_session_factory(storage.make_engine(f"sqlite:///{tmp_path / 'empty.db'}"))
    rendered: list[str] = []
    with pytest.raises(OperationalError, match="no such table"):
        service.run_store_and_render(
            ctx.market, empty, strategy(client), REQUEST, lambda stored: rendered.append(stored.run.id)
        )
    assert len(rendered) == 1  # the body was made, and dropped
    assert not any(t.name == "backtest-save" for t in threading.enumerate())


def test_a_failed_render_still_waits_for_the_write(client: TestClient) -> None:
    ctx = ctx_of(client)
    ids: list[str] = []

    def render(stored: service.StoredBacktest) -> None:
        ids.append(stored.run.id)
        raise ValueError("render failed")

    with pytest.raises(ValueError, match="render failed"):
        service.run_store_and_render(ctx.market, ctx.sessions, strategy(client), REQUEST, render)
    assert not any(t.name == "backtest-save" for t in threading.enumerate())
    assert service.get_stored(ctx.sessions, ids[0]).run.id == ids[0]  # the row is whole
