"""Migration 0008: backtests stored before it (trades a JSON list of dicts, the curve zlib over raw arrays)
are converted to columns, read back as they were stored (bodies byte for byte), and convert back."""

from __future__ import annotations

import dataclasses
import json
import uuid
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient

import strategy_registry
from backtester import service
from backtester.runner import BacktestConfig, run_backtest
from db import storage
from db.models import BacktestRun, UTCDateTime
from main import create_app
from routes.backtest import BacktestResponse, _summary
from tests.support.candles import sample_candles
from tests.support.http import AUTH, ctx_of
from tests.support.json_bodies import assert_same_json
from tests.support.settings import make_settings

LEGACY = sa.table(
    "backtests",
    *(sa.column(name, sa.String()) for name in ("id", "symbol", "interval", "strategy", "strategy_kind")),
    *(sa.column(name, sa.String()) for name in ("data_source",)),
    *(sa.column(name, sa.Integer()) for name in ("strategy_id", "strategy_version", "n_bars")),
    *(sa.column(name, sa.BigInteger()) for name in ("start_time", "end_time")),
    *(sa.column(name, sa.JSON()) for name in ("params", "config", "metrics", "trades", "open_trade")),
    sa.column("created_at", UTCDateTime()),
    sa.column("equity_blob", sa.LargeBinary()),
)
# Values JSON keeps exactly (shortest round-trip reprs) that a binary column could get wrong.
EDGE_TRADE = {
    "entry_time": 2**62,
    "entry_price": 5e-324,
    "exit_time": 2**62 + 60_000,
    "exit_price": 1.7976931348623157e308,
    "quantity": 0.1 + 0.2,
    "fees": -0.0,
    "pnl": -1e-300,
    "trade_return": 1e22,
    "entry_bar": 0,
    "exit_bar": 2**40,
    "exit_reason": "trailing_stop",
}


def alembic_to(engine: sa.Engine, revision: str, *, down: bool = False) -> None:
    config = Config()
    config.set_main_option("script_location", str(storage.MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)


def legacy_row(trades: list[dict[str, Any]], open_trade: dict[str, Any] | None, bars: int) -> dict[str, Any]:
    """A row as run_and_store wrote it before 0008, from a real engine run on the sample series."""
    candles = sample_candles("BTCUSDT", bars)
    strategy = strategy_registry.resolve("sma_crossover", {"fast": 10, "slow": 30})
    config = BacktestConfig(stop_loss=0.02, take_profit=0.04)
    result = run_backtest(candles, *strategy.signals(candles), config)
    curve = zlib.compress(candles.open_time.tobytes() + result.equity.tobytes(), level=1)
    return {
        "id": uuid.uuid4().hex,
        "created_at": datetime(2026, 11, 30, 12, 0, 0, 123000, tzinfo=UTC),
        "symbol": "BTCUSDT",
        "interval": "1h",
        "strategy": "sma_crossover",
        "strategy_kind": "builtin",
        "strategy_id": None,
        "strategy_version": None,
        "params": {"fast": 10, "slow": 30},
        "config": dataclasses.asdict(config),
        "data_source": "sample",
        "start_time": int(candles.open_time[0]),
        "end_time": int(candles.open_time[-1]),
        "n_bars": len(candles),
        "metrics": service.metrics_dict(result),
        "trades": [dataclasses.asdict(t) for t in result.trades] + trades,
        "open_trade": open_trade,
        "equity_blob": curve,
    }


def legacy_body(row: dict[str, Any], full: bool) -> bytes:
    """The body the route built before 0008: every field validated by BacktestResponse, then dumped."""
    raw = zlib.decompress(row["equity_blob"])
    times = np.frombuffer(raw[: len(raw) // 2], dtype=np.int64)
    equity = np.frombuffer(raw[len(raw) // 2 :], dtype=np.float64)
    limit = len(times) if full else service.MAX_CURVE_POINTS
    curve = service.downsample(times, equity, row["config"]["initial_capital"], limit)
    summary = _summary(BacktestRun(**{**row, "trades": b""}))
    body = {
        **dict(summary),
        "trades": row["trades"],
        "open_trade": row["open_trade"],
        "equity_points": len(times),
        "equity_curve": [{"time": t, "equity": e, "drawdown": d} for t, e, d in curve],
    }
    return BacktestResponse.model_validate(body).model_dump_json().encode()


def test_rows_stored_before_0008_read_back_as_they_were_and_convert_back(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    engine = storage.make_engine(settings.database_url)
    alembic_to(engine, "0007")
    open_trade = {**EDGE_TRADE, "exit_time": None, "exit_price": None, "exit_bar": None, "exit_reason": "end"}
    rows = [legacy_row([EDGE_TRADE], open_trade, 3000), legacy_row([], None, 40)]
    rows[1]["trades"] = []  # a backtest without a single trade
    with engine.begin() as connection:
        connection.execute(LEGACY.insert(), rows)
    before = {(row["id"], full): legacy_body(row, full) for row in rows for full in (False, True)}
    assert len(rows[0]["trades"]) > 20

    with TestClient(create_app(settings)) as client:  # the app upgrades to head on start
        for (backtest_id, full), body in before.items():
            response = client.get(f"/api/backtest/{backtest_id}", params={"full": full}, headers=AUTH)
            assert response.status_code == 200, response.text
            assert_same_json(response.content, body)  # the numbers, however spelled
        stored = service.get_stored(ctx_of(client).sessions, rows[0]["id"])
        assert [dataclasses.asdict(t) for t in stored.trades.trades()][-1] == EDGE_TRADE
        assert json.dumps(stored.trades.lists()["fees"][-1]) == "-0.0"
        listing = client.get("/api/backtest", headers=AUTH).json()
        assert {b["id"] for b in listing["backtests"]} == {row["id"] for row in rows}
    with engine.connect() as connection:
        kinds = {c["name"]: type(c["type"]) for c in sa.inspect(connection).get_columns("backtests")}
    assert kinds["trades"] is sa.BLOB and "trades_columns" not in kinds

    alembic_to(engine, "0007", down=True)
    with engine.connect() as connection:
        restored = {r.id: r for r in connection.execute(sa.select(LEGACY))}
    for row in rows:
        back = restored[row["id"]]
        assert json.dumps(back.trades) == json.dumps(row["trades"]), "repr-exact: -0.0 stays -0.0"
        assert back.open_trade == row["open_trade"]
        assert zlib.decompress(back.equity_blob) == zlib.decompress(row["equity_blob"])
    alembic_to(engine, "head")  # and forward again
    with TestClient(create_app(settings)) as client:
        again = client.get(f"/api/backtest/{rows[0]['id']}", headers=AUTH)
        assert_same_json(again.content, before[(rows[0]["id"], False)])
