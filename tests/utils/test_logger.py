"""utils/logger.py: no secret in any log line, a request id on every request's lines."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from main import create_app
from tests.support.http import AUTH
from tests.support.settings import API_KEY, make_settings
from utils.logger import ACCESS_LOGGER, redact, setup_logging


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("GET /api/v3/order?symbol=BTCUSDT&timestamp=1&signature=9f86d081884c7d659a2feaa0c55ad015", "9f86d0"),
        (
            "headers={'X-MBX-APIKEY': 'vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A'}",
            "vmPUZE",
        ),
        ("Authorization: Bearer abc.def-ghi_jkl", "abc.def"),
        ('{"api_key": "k-123456", "password": "hunter22"}', "k-123456"),
        ("api_secret=s3cr3tvalue&x=1", "s3cr3t"),
    ],
)
def test_secret_patterns_are_redacted(line: str, secret: str) -> None:
    cleaned = redact(line)
    assert secret not in cleaned
    assert "***" in cleaned


def test_configured_secrets_never_reach_the_log(capfd: pytest.CaptureFixture[str]) -> None:
    setup_logging("DEBUG", ["binance-secret-value", "binance-key-value"])
    log = logging.getLogger("test")
    log.info("using key %s with secret %s", "binance-key-value", "binance-secret-value")
    try:
        raise RuntimeError("failed with binance-secret-value in the message")
    except RuntimeError:
        log.exception("request failed")
    err = capfd.readouterr().err
    assert "binance-secret-value" not in err
    assert "binance-key-value" not in err
    assert "RuntimeError" in err, "tracebacks are kept, only scrubbed"
    assert err.count("***") >= 3


def test_request_lines_carry_a_request_id_and_no_api_key(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(
        tmp_path, binance_api_key="live-key-abcdef", binance_api_secret="live-secret-abcdef"
    )
    with TestClient(create_app(settings)) as client:
        capfd.readouterr()
        response = client.get("/api/binance/candles?symbol=BTCUSDT&interval=1h&limit=2", headers=AUTH)
        logging.getLogger("test").warning("echo %s %s", API_KEY, "live-secret-abcdef")
    err = capfd.readouterr().err
    request_id = response.headers["x-request-id"]
    request_lines = [line for line in err.splitlines() if "app.access: GET /api/binance/candles" in line]
    assert request_lines and all(f"[{request_id}]" in line for line in request_lines)
    assert API_KEY not in err
    assert "live-secret-abcdef" not in err


def test_user_text_cannot_forge_log_lines(capfd: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO")
    logging.getLogger("test").warning("halted: %s", "maintenance\n2026-01-01 INFO [-] app: all good")
    lines = [line for line in capfd.readouterr().err.splitlines() if line]
    assert len(lines) == 1
    assert "maintenance\\n2026-01-01" in lines[0]


def test_the_access_line_follows_uvicorns_access_log_switch() -> None:
    """`uvicorn --no-access-log` leaves uvicorn.access with no handler and not propagating; then the
    app's own access line is off too. Otherwise the app writes one line per request and uvicorn's own
    access logger stays silent (it would be a second line)."""
    access, ours = logging.getLogger("uvicorn.access"), logging.getLogger(ACCESS_LOGGER)
    saved = (list(access.handlers), access.propagate, access.disabled, ours.disabled)
    try:
        cases: list[tuple[list[logging.Handler], bool, bool]] = [
            ([], False, True),  # --no-access-log
            ([logging.StreamHandler()], False, False),  # uvicorn's default: its own handler
            ([], True, False),  # no uvicorn logging config at all (TestClient)
        ]
        for handlers, propagate, ours_disabled in cases:
            access.handlers, access.propagate = handlers, propagate
            for _ in range(2):  # a second app in the process reads the same signs
                setup_logging("INFO")
                assert (ours.disabled, access.disabled) == (ours_disabled, True)
    finally:
        access.handlers, access.propagate, access.disabled, ours.disabled = saved
