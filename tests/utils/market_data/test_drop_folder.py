"""The CSV drop folder (DATA_DIR) end to end: the real app, real files and the real watchfiles thread.

Files are imported at start-up and when the folder changes, never on a read; a rejected file is
parsed, logged and listed in /api/health once per content, and tried again when it changes."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from main import create_app
from tests.support.http import AUTH, ctx_of
from tests.support.settings import make_settings
from utils.market_data.drop_folder import DropFolder

GOOD = (  # MYCOINUSDT 1h, 2024-01-01 00:00 to 02:00 (the last open time in microseconds)
    "1704067200000,42283.58,42554.57,42261.02,42475.23,1271.68,1704070799999,53957248.97,47134,682.57,28957416.82,0\n"
    "1704070800000,42475.23,42775.00,42431.65,42613.56,1196.37,1704074399999,51027751.57,44827,580.87,24779954.58,0\n"
    "1704074400000000,42613.57,42813.00,42500.00,42600.00,900.00,1704077999999999,38400000.00,40000,450.00,19000000.00,0\n"
)
GOOD_TIMES = [1704067200000, 1704070800000, 1704074400000]
# The second row's high (42400) is below its close (42613.56).
BAD_HIGH = GOOD.replace("42475.23,42775.00,", "42475.23,42400.00,")
BAD_HIGH_REASON = "Line 2: high is below open or close."
BAD_SHAPE = "1704067200000,1,2,3\n"
BAD_SHAPE_REASON = "Line 1: expected 12 comma-separated fields, found 4."
REQUESTS = 10


def folder_of(client: TestClient) -> DropFolder:
    return ctx_of(client).market.drop_folder


def wait_until(folder: DropFolder, condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait (on the folder's scan notifications, no polling) until `condition` holds; fail after `timeout`."""
    if not folder.wait_for(condition, timeout):
        pytest.fail(f"not within {timeout} s: {condition.__doc__ or condition}")


def drop(folder: Path, name: str, text: str) -> Path:
    """Put a file into the folder in one step (written beside it under a name the folder ignores)."""
    staging = folder / f".{name}.part"
    staging.write_text(text)
    os.replace(staging, folder / name)
    return folder / name


def health_files(client: TestClient) -> dict[str, Any]:
    response = client.get("/api/health")
    assert response.status_code == 200, response.text
    return response.json()["data_files"]


def candles(client: TestClient, symbol: str, **params: object) -> Any:
    return client.get(
        "/api/binance/candles", params={"symbol": symbol, "interval": "1h", **params}, headers=AUTH
    )


def skipped(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"skipped {name}:")]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def app_client(tmp_path: Path, data_dir: Path) -> Iterator[Callable[..., TestClient]]:
    """Start the real app (offline, sample data) on `data_dir`; every client is closed afterwards."""
    opened: list[TestClient] = []

    def start(**overrides: Any) -> TestClient:
        client = TestClient(create_app(make_settings(tmp_path, **overrides)))
        client.__enter__()
        opened.append(client)
        return client

    yield start
    for client in opened:
        client.__exit__(None, None, None)


def test_a_rejected_file_is_reported_once_and_reads_never_parse_it(
    app_client: Callable[..., TestClient], data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="utils.market_data.drop_folder")
    bad = drop(data_dir, "BTCUSDT-1h-bad.csv", BAD_HIGH)
    drop(data_dir, "MYCOINUSDT-1h-2024-01.csv", GOOD)
    client = app_client()
    folder = folder_of(client)
    assert folder.parses == 2, "start-up parses each file once"
    expected = {
        "accepted": 1,
        "rejected": [{"name": bad.name, "reason": BAD_HIGH_REASON, "size_bytes": bad.stat().st_size}],
    }
    assert health_files(client) == expected
    assert skipped(caplog, bad.name) == [f"skipped {bad.name}: {BAD_HIGH_REASON}"]
    scans = folder.scans

    for _ in range(REQUESTS):
        served = candles(client, "BTCUSDT", limit=50)  # the rejected file's series: served from sample
        assert served.status_code == 200, served.text
        assert served.json()["source"] == "sample"
        from_file = candles(client, "MYCOINUSDT", start="2024-01-01")
        assert [c["open_time"] for c in from_file.json()["candles"]] == GOOD_TIMES
        price = client.get("/api/binance/price", params={"symbol": "BTCUSDT"}, headers=AUTH)
        assert price.status_code == 200, price.text
    backtest = client.post(
        "/api/backtest",
        json={
            "symbol": "BTCUSDT",
            "interval": "1h",
            "strategy": "sma_crossover",
            "params": {"fast": 10, "slow": 30},
        },
        headers=AUTH,
    )
    assert backtest.status_code == 201, backtest.text
    assert backtest.json()["source"] == "sample"

    assert folder.parses == 2, "a read must never parse a drop-folder file"
    assert folder.scans == scans, "a read must never list the drop folder"
    assert skipped(caplog, bad.name) == [f"skipped {bad.name}: {BAD_HIGH_REASON}"], "logged once"
    assert health_files(client) == expected


def test_health_names_the_file_only_inside_data_dir(
    app_client: Callable[..., TestClient], data_dir: Path
) -> None:
    drop(data_dir, "BTCUSDT-1h-shape.csv", BAD_SHAPE)
    body = app_client().get("/api/health").json()
    assert body["data_files"] == {
        "accepted": 0,
        "rejected": [
            {"name": "BTCUSDT-1h-shape.csv", "reason": BAD_SHAPE_REASON, "size_bytes": len(BAD_SHAPE)}
        ],
    }
    assert str(data_dir) not in str(body) and os.sep not in str(body["data_files"]), "no path is published"


def test_a_file_dropped_in_after_start_up_is_read_through_the_watcher(
    app_client: Callable[..., TestClient], data_dir: Path
) -> None:
    client = app_client()
    folder = folder_of(client)
    assert folder.watcher.running
    assert candles(client, "MYCOINUSDT").status_code == 404
    drop(data_dir, "MYCOINUSDT-1h-2024-01.csv", GOOD)

    def imported() -> bool:
        """the watcher imports the new file"""
        return folder.status().accepted == 1

    wait_until(folder, imported)
    body = candles(client, "MYCOINUSDT", start="2024-01-01").json()
    assert body["source"] == "file"
    assert [c["open_time"] for c in body["candles"]] == GOOD_TIMES
    assert health_files(client) == {"accepted": 1, "rejected": []}


def test_without_the_watcher_reads_never_look_at_the_folder(
    app_client: Callable[..., TestClient], data_dir: Path
) -> None:
    drop(data_dir, "ETHUSDT-1h-2024-01.csv", GOOD.replace("MYCOIN", "ETH"))
    client = app_client(data_dir_watch=False)
    folder = folder_of(client)
    assert not folder.watcher.running
    assert folder.status().accepted == 1, "start-up still imports the folder"
    scans, parses = folder.scans, folder.parses
    drop(data_dir, "MYCOINUSDT-1h-2024-01.csv", GOOD)
    for _ in range(REQUESTS):
        assert candles(client, "MYCOINUSDT").status_code == 404, "a read must not import a new file"
    assert (folder.scans, folder.parses) == (scans, parses)


def test_a_rejected_file_is_tried_again_when_it_changes_and_fixed_in_place_is_picked_up(
    app_client: Callable[..., TestClient], data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="utils.market_data.drop_folder")
    path = data_dir / "MYCOINUSDT-1h-2024-01.csv"
    path.write_text(BAD_SHAPE)
    client = app_client()
    folder = folder_of(client)
    assert candles(client, "MYCOINUSDT").status_code == 404
    assert [f.reason for f in folder.status().rejected] == [BAD_SHAPE_REASON]

    path.write_text(BAD_HIGH)  # edited in place, still wrong: tried again once, reported anew

    def reason_updated() -> bool:
        """the watcher tries the changed file and reports the new reason"""
        return [f.reason for f in folder.status().rejected] == [BAD_HIGH_REASON]

    wait_until(folder, reason_updated)
    assert folder.parses == 2
    assert health_files(client)["rejected"] == [
        {"name": path.name, "reason": BAD_HIGH_REASON, "size_bytes": len(BAD_HIGH)}
    ]
    assert skipped(caplog, path.name) == [
        f"skipped {path.name}: {BAD_SHAPE_REASON}",
        f"skipped {path.name}: {BAD_HIGH_REASON}",
    ]

    path.write_text(GOOD)  # fixed in place

    def fixed() -> bool:
        """the watcher imports the fixed file"""
        status = folder.status()
        return status.accepted == 1 and not status.rejected

    wait_until(folder, fixed)
    assert folder.parses == 3
    body = candles(client, "MYCOINUSDT", start="2024-01-01").json()
    assert (body["source"], [c["open_time"] for c in body["candles"]]) == ("file", GOOD_TIMES)
    assert health_files(client) == {"accepted": 1, "rejected": []}
    for _ in range(REQUESTS):
        assert candles(client, "MYCOINUSDT").status_code == 200
    assert folder.parses == 3


def test_a_file_removed_from_the_folder_is_no_longer_reported(
    app_client: Callable[..., TestClient], data_dir: Path
) -> None:
    bad = drop(data_dir, "BTCUSDT-1h-bad.csv", BAD_SHAPE)
    client = app_client()
    assert len(health_files(client)["rejected"]) == 1
    bad.unlink()
    folder = folder_of(client)

    def forgotten() -> bool:
        """the watcher notices the file is gone"""
        return not folder.status().rejected

    wait_until(folder, forgotten)
    assert health_files(client) == {"accepted": 0, "rejected": []}


def test_start_up_imports_once_and_a_restart_parses_only_what_was_rejected(
    tmp_path: Path, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="utils.market_data.drop_folder")
    drop(data_dir, "MYCOINUSDT-1h-2024-01.csv", GOOD)
    drop(data_dir, "MYCOINUSDT-1h-broken.csv", BAD_SHAPE)
    (data_dir / "notes.csv").write_text("ignored: not named SYMBOL-interval*.csv")
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings)) as client:
        body = candles(client, "MYCOINUSDT", start="2024-01-01").json()
        assert (body["source"], [c["open_time"] for c in body["candles"]]) == ("file", GOOD_TIMES)
        assert folder_of(client).parses == 2
        watcher = folder_of(client).watcher
        assert watcher.running
    assert not watcher.running, "shutdown stops the watcher thread (within a second)"

    with TestClient(create_app(settings)) as client:
        assert folder_of(client).parses == 1, (
            "the accepted file is remembered by the store; only the rejected one"
        )
        assert health_files(client) == {
            "accepted": 1,
            "rejected": [
                {"name": "MYCOINUSDT-1h-broken.csv", "reason": BAD_SHAPE_REASON, "size_bytes": len(BAD_SHAPE)}
            ],
        }
        assert [
            c["open_time"] for c in candles(client, "MYCOINUSDT", start="2024-01-01").json()["candles"]
        ] == (GOOD_TIMES)
    imported = [
        r
        for r in caplog.records
        if r.getMessage() == "imported MYCOINUSDT-1h-2024-01.csv into the file store"
    ]
    assert len(imported) == 1


def test_the_watcher_stops_when_asked(app_client: Callable[..., TestClient]) -> None:
    watcher = folder_of(app_client()).watcher
    assert watcher.running
    # stop() is True only when the thread has ended within its STOP_SECONDS join (watchfiles' stop_event).
    assert watcher.stop() is True
    assert not watcher.running
