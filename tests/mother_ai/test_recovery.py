"""mother_ai/recovery.py on a real database and log folder: the logs that show orders and decisions are
brought back into agreement with the rows (torn last line cut, missing lines appended, nothing twice)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from mother_ai.recovery import reconcile_logs
from mother_ai.trade_executer import OrderRequest
from tests.support.world import build_world


def logged(path: Path) -> list[tuple[int, str]]:
    return [
        (line["data"]["id"], line["data"]["status"])
        for line in map(json.loads, path.read_text().splitlines())
    ]


def test_a_torn_line_is_cut_and_the_orders_missing_from_the_log_are_appended(tmp_path: Path) -> None:
    world = build_world(tmp_path)
    first = world.executor.submit(OrderRequest("BTCUSDT", "BUY", quote_amount=Decimal(100)))
    trades = world.trade_log.path_for("trade")
    whole = trades.read_bytes()
    assert logged(trades) == [(first.id, "FILLED")]
    second = world.executor.submit(OrderRequest("BTCUSDT", "BUY", quote_amount=Decimal(50)))
    # As if the second line's write was cut off by a kill: half of it on disk, no newline.
    appended = trades.read_bytes()[len(whole) :]
    trades.write_bytes(whole + appended[: len(appended) // 2])

    repairs = reconcile_logs(world.sessions, world.trade_log)

    assert [str(r) for r in repairs] == [
        "log_line trades.jsonl: cut: the last line was cut off mid-write",
        "log_line trades.jsonl: appended 1 trade(s) missing from the log",
    ]
    assert logged(trades) == [(first.id, "FILLED"), (second.id, "FILLED")]
    assert reconcile_logs(world.sessions, world.trade_log) == [], "a second pass finds nothing to do"


def test_orders_older_than_the_rotated_logs_are_not_written_again(tmp_path: Path) -> None:
    world = build_world(tmp_path)
    orders = [
        world.executor.submit(OrderRequest("BTCUSDT", "BUY", quote_amount=Decimal(10))) for _ in range(3)
    ]
    trades = world.trade_log.path_for("trade")
    lines = trades.read_text().splitlines(keepends=True)
    trades.write_text("".join(lines[1:]))  # the oldest line went with a rotation that was dropped
    assert reconcile_logs(world.sessions, world.trade_log) == []
    assert logged(trades) == [(o.id, "FILLED") for o in orders[1:]]
