"""mother_ai/trade_log.py: JSON-lines events with rotation and no secrets; CSV export of orders."""

from __future__ import annotations

import csv
import json
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db import storage
from db.models import TradeOrder, utcnow
from mother_ai.trade_log import CSV_COLUMNS, TradeLog, export_trades_csv
from tests.support.settings import make_settings
from utils.errors import InvalidInput


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = storage.make_engine(f"sqlite:///{tmp_path / 'trading.db'}")
    storage.upgrade_to_head(engine)
    yield storage.make_session_factory(engine)
    engine.dispose()


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_events_are_json_lines_per_kind(tmp_path: Path) -> None:
    log = TradeLog(tmp_path / "logs")
    log.append_event("decision", {"symbol": "BTCUSDT", "confidence": Decimal("0.61"), "votes": [1, 2]})
    log.append_trade({"client_order_id": "abc", "price": Decimal("30000.01000000")})
    log.append_event("decision", {"symbol": "ETHUSDT", "action": "hold", "note": "line\nbreak"})
    decisions = read_lines(tmp_path / "logs" / "decisions.jsonl")
    assert [d["data"]["symbol"] for d in decisions] == ["BTCUSDT", "ETHUSDT"]
    assert decisions[0]["kind"] == "decision" and decisions[0]["data"]["confidence"] == "0.61"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", str(decisions[0]["ts"]))
    (trade,) = read_lines(tmp_path / "logs" / "trades.jsonl")
    assert trade["data"] == {"client_order_id": "abc", "price": "30000.01000000"}, "decimals stay exact"


def test_a_line_is_stamped_by_the_logs_clock(tmp_path: Path) -> None:
    readings = iter([1_000_000_000_123, 1_000_000_060_000])  # 2001-09-09: not the machine's time
    log = TradeLog(tmp_path, clock=lambda: next(readings))
    log.append_event("decision", {"n": 1})
    log.append_event("decision", {"n": 2})
    assert [line["ts"] for line in read_lines(tmp_path / "decisions.jsonl")] == [
        "2001-09-09T01:46:40.123+00:00",
        "2001-09-09T01:47:40.000+00:00",
    ]


@pytest.mark.parametrize("kind", ["", "Trade", "../etc", "a" * 40, "trade.x"])
def test_a_kind_is_a_plain_name_never_a_path(tmp_path: Path, kind: str) -> None:
    with pytest.raises(InvalidInput):
        TradeLog(tmp_path).append_event(kind, {})


def test_logs_rotate_by_size_keeping_the_newest_lines(tmp_path: Path) -> None:
    log = TradeLog(tmp_path, max_bytes=400, backups=2)
    for i in range(40):
        log.append_event("trade", {"n": i, "pad": "x" * 40})
    files = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))  # not its lock file
    assert files == ["trades.jsonl", "trades.jsonl.1", "trades.jsonl.2"], "the oldest backup is dropped"
    kept: list[int] = []
    for name in ("trades.jsonl.2", "trades.jsonl.1", "trades.jsonl"):
        path = tmp_path / name
        assert path.stat().st_size <= 400
        kept += [int(line["data"]["n"]) for line in read_lines(path)]
    assert kept == list(range(kept[0], 40)) and kept[0] > 0, "contiguous, newest last, oldest gone"


def test_concurrent_appends_never_split_a_line(tmp_path: Path) -> None:
    log = TradeLog(tmp_path, max_bytes=5000, backups=50)
    barrier = threading.Barrier(8)

    def write(worker: int) -> None:
        barrier.wait()
        for i in range(50):
            log.append_event("decision", {"worker": worker, "i": i, "pad": "y" * 30})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(8)))
    lines = [line for path in tmp_path.glob("decisions.jsonl*") for line in read_lines(path)]
    assert len(lines) == 400
    assert {(line["data"]["worker"], line["data"]["i"]) for line in lines} == {
        (w, i) for w in range(8) for i in range(50)
    }


def test_no_secret_reaches_a_log_line(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        trade_log_dir=tmp_path / "logs",
        binance_api_key="KEY-abcdef123456",
        binance_api_secret="SECRET-987654zyx",
    )
    log = TradeLog.from_settings(settings.storage, settings.secret_values())
    log.append_event(
        "decision",
        {
            "api_key": "plain-key-value",
            "nested": [{"signature": "deadbeefcafe", "ok": 1}],
            "live_trading_confirm": "I understand real money is at risk",
            "note": "used SECRET-987654zyx and KEY-abcdef123456 by mistake",
            "url": "https://api.binance.com/api/v3/order?symbol=BTCUSDT&signature=0123456789abcdef",
        },
    )
    text = (tmp_path / "logs" / "decisions.jsonl").read_text()
    for secret in (
        "plain-key-value",
        "deadbeefcafe",
        "SECRET-987654zyx",
        "KEY-abcdef123456",
        "0123456789abcdef",
    ):
        assert secret not in text
    assert "real money" not in text
    data = read_lines(tmp_path / "logs" / "decisions.jsonl")[0]["data"]
    assert data["nested"] == [{"signature": "***", "ok": 1}]


def add_order(session: Session, mode: str, client_order_id: str, **fields: object) -> None:
    now = utcnow()
    values: dict[str, object] = {
        "mode": mode,
        "client_order_id": client_order_id,
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "MARKET",
        "status": "FILLED",
        "requested_quantity": Decimal("0.00123"),
        "executed_quantity": Decimal("0.00123"),
        "quote_quantity": Decimal("36.90000000"),
        "price": Decimal("30000.00000000"),
        "fee": Decimal("0.03690000"),
        "fee_asset": "USDT",
        "realised_pnl": Decimal("-1.25"),
        "epoch": 1,
        "created_at": now,
        "updated_at": now,
    }
    values.update(fields)
    session.add(TradeOrder(**values))


def test_csv_export_writes_one_modes_orders_into_the_export_folder(
    tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    with sessions() as session, session.begin():
        add_order(session, "paper", "p-1", decision_id='=HYPERLINK("x")')
        add_order(
            session,
            "paper",
            "p-2",
            status="REJECTED",
            executed_quantity=Decimal(0),
            quote_quantity=Decimal(0),
            price=None,
            fee=Decimal(0),
            reject_code=-1013,
            reject_reason="Filter failure: NOTIONAL",
        )
        add_order(session, "live", "l-1", exchange_order_id="42")
    export_dir = tmp_path / "storage" / "trade_logs"
    path = export_trades_csv(sessions, "paper", export_dir)
    assert path.parent == export_dir
    assert re.fullmatch(r"trades-paper-\d{8}T\d{12}Z-[0-9a-f]{8}\.csv", path.name)
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(r["client_order_id"], r["mode"], r["status"]) for r in rows] == [
        ("p-1", "paper", "FILLED"),
        ("p-2", "paper", "REJECTED"),
    ]
    assert (rows[0]["executed_quantity"], rows[0]["fee"], rows[0]["realised_pnl"]) == (
        "0.00123",
        "0.03690000",
        "-1.25",
    )
    assert rows[0]["decision_id"] == '\'=HYPERLINK("x")', "a spreadsheet must not run text as a formula"
    assert (rows[1]["price"], rows[1]["reject_code"], rows[1]["reject_reason"]) == (
        "",
        "-1013",
        "Filter failure: NOTIONAL",
    )
    live_path = export_trades_csv(sessions, "live", export_dir)
    assert live_path != path
    with live_path.open(newline="") as handle:
        assert [r["client_order_id"] for r in csv.DictReader(handle)] == ["l-1"]
    assert not list(export_dir.glob(".*partial")), "no temporary file is left behind"
    with pytest.raises(InvalidInput):
        export_trades_csv(sessions, "demo", export_dir)


_WRITER = """
import sys
from pathlib import Path
from mother_ai.trade_log import TradeLog

log = TradeLog(Path(sys.argv[1]), max_bytes=2048, backups=500)
for i in range(int(sys.argv[3])):
    log.append_event("decision", {"writer": sys.argv[2], "i": i, "pad": "x" * 40})
"""


def test_several_processes_logging_to_one_folder_lose_and_tear_no_line(tmp_path: Path) -> None:
    """Server processes of one host share TRADE_LOG_DIR: they rotate the same file many times over
    while appending, and every line of every process is kept once, whole (without the lock beside
    the log, two rotations at once overwrite a backup or fail on a file the other just moved)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    writers, lines = 4, 300
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(tmp_path), f"w{n}", str(lines)],
            cwd=root,
            env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
            stderr=subprocess.PIPE,
        )
        for n in range(writers)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    files = sorted(tmp_path.glob("decisions.jsonl*"))
    assert len(files) > 20, "the test must rotate many times to mean anything"
    seen = [
        (record["data"]["writer"], record["data"]["i"])
        for path in files
        for record in map(json.loads, path.read_text().splitlines())
    ]
    expected = [(f"w{n}", i) for n in range(writers) for i in range(lines)]
    assert sorted(seen) == sorted(expected)
