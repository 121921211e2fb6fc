"""The app as a whole: auth on every route, the one error body, health, middleware, first start."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from main import create_app
from tests.support.http import AUTH, app_of, ctx_of
from tests.support.settings import API_KEY, make_settings
from utils.settings import Settings

PUBLIC_PATHS = {"/api/health"}


def _concrete(path: str) -> str:
    # Any value will do for path parameters: auth is checked before the handler runs.
    return re.sub(r"\{[^}]+\}", "x", path)


def _api_routes(client: TestClient) -> list[tuple[str, str]]:
    """(method, path) of every API endpoint in app.routes, through included routers (FastAPI includes
    them lazily, so the public `iter_route_contexts` walks them). The documentation pages (/docs,
    /redoc) are public and outside the schema, so they are not API endpoints."""
    routes: list[tuple[str, str]] = []
    for context in iter_route_contexts(app_of(client).routes):
        route = context.original_route
        if isinstance(route, APIRoute) and route.include_in_schema and context.path:
            routes.extend((method, context.path) for method in sorted(context.methods or ()))
    return routes


def test_every_route_lives_under_api(client: TestClient) -> None:
    routes = _api_routes(client)
    assert routes, "no routes registered"
    assert all(path.startswith("/api/") for _, path in routes)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": f"Basic {API_KEY}"},
        {"Authorization": API_KEY},
    ],
    ids=["missing", "wrong", "wrong-scheme", "no-scheme"],
)
def test_every_route_but_health_refuses_without_the_key(client: TestClient, headers: dict[str, str]) -> None:
    checked = 0
    for method, path in _api_routes(client):
        if path in PUBLIC_PATHS:
            continue
        response = client.request(method, _concrete(path), headers=headers)
        assert response.status_code == 401, f"{method} {path} answered {response.status_code}"
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
        checked += 1
    assert checked >= 5


def test_health_is_public_and_reports_state(client: TestClient) -> None:
    body = client.get("/api/health").json()
    assert body == {
        "status": "ok",
        "version": body["version"],
        "trading_mode": "paper",
        "offline": True,
        "database": True,
        "data_files": {"accepted": 0, "rejected": []},
        "binance": {"status": "offline", "checked_at": None, "latency_ms": None, "error": None},
        "kill_switch": {"halted": False, "changed_at": None},
        "scheduler": {
            "enabled": False,
            "running": False,
            "leader": False,
            "interval": None,
            "symbols": [],
            "execute": False,
            "next_run_at": None,
            "last_run": None,
        },
        "compute": {
            "backend": "local",
            "address": None,
            "connected": True,
            "workers": body["compute"]["workers"],
            "threads": body["compute"]["workers"],
            "error": None,
        },
        "agents": [],
    }
    assert body["compute"]["workers"] == ctx_of(client).settings.compute.local_workers
    assert re.fullmatch(r"\d+\.\d+\.\d+", body["version"])


def test_health_reports_a_database_that_does_not_answer(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings)) as client:
        ctx_of(client).engine.dispose()
        (tmp_path / "test.db").unlink()
        (tmp_path / "test.db").mkdir()  # a directory where the file was: sqlite cannot open it
        body = client.get("/api/health").json()
    assert body["database"] is False
    assert body["status"] == "degraded"
    assert body["kill_switch"] is None and body["agents"] == []


def test_unknown_path_and_method_use_the_error_body(client: TestClient) -> None:
    missing = client.get("/api/does-not-exist", headers=AUTH)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert "/api/does-not-exist" in missing.json()["error"]["message"]
    wrong_method = client.delete("/api/health")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"


def test_validation_errors_name_the_field(client: TestClient) -> None:
    response = client.get(
        "/api/binance/candles", params={"symbol": "BTCUSDT", "interval": "1h", "limit": 0}, headers=AUTH
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert "limit" in error["message"]
    assert error["details"]["field"] == "query.limit"
    assert [e["field"] for e in error["details"]["errors"]] == ["query.limit"]


def test_unexpected_errors_are_500_without_a_stack_trace(settings: Settings) -> None:
    app = create_app(settings)

    @app.get("/api/boom")
    def boom() -> None:
        raise RuntimeError("secret internals at /home/user/file.py line 3")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/api/boom")
    assert response.status_code == 500
    body = response.json()
    assert body["error"]["code"] == "internal_error"
    assert "secret internals" not in response.text
    assert "Traceback" not in response.text
    assert response.headers["x-request-id"] in body["error"]["message"]


def test_every_response_carries_a_request_id(client: TestClient) -> None:
    first = client.get("/api/health").headers["x-request-id"]
    second = client.get("/api/health").headers["x-request-id"]
    assert first and second and first != second


def test_cors_allows_only_the_configured_origins(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, cors_origins=["http://dash.local"]))
    with TestClient(app) as client:
        allowed = client.options(
            "/api/health", headers={"Origin": "http://dash.local", "Access-Control-Request-Method": "GET"}
        )
        refused = client.options(
            "/api/health", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"}
        )
    assert allowed.headers.get("access-control-allow-origin") == "http://dash.local"
    assert "access-control-allow-origin" not in refused.headers


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [True, False], ids=["on a terminal", "redirected"])
def test_first_start_generates_writes_and_shows_a_key_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, terminal: bool
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("LOG_LEVEL=INFO\nAPI_KEY=\n")
    settings = make_settings(tmp_path, api_key=None)
    screen = _Terminal()
    if terminal:
        monkeypatch.setattr(sys, "stderr", screen)
    with TestClient(create_app(settings)) as client:
        printed = screen.getvalue() if terminal else capsys.readouterr().err
        stored = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        key = stored["API_KEY"]
        assert len(key) >= 40
        assert str(env_file) in printed
        assert (key in printed) is terminal, "shown on a terminal only, never into a redirected output"
        assert stored["LOG_LEVEL"] == "INFO"
        assert env_file.stat().st_mode & 0o077 == 0, ".env with a key must not be world-readable"
        assert client.get("/api/jobs", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert client.get("/api/jobs", headers=AUTH).status_code == 401
    # The second start finds the key in ENV_FILE_PATH, keeps it and prints nothing.
    with TestClient(create_app(make_settings(tmp_path, api_key=None))) as client:
        assert key not in capsys.readouterr().err
        assert client.get("/api/jobs", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert dict(line.split("=", 1) for line in env_file.read_text().splitlines())["API_KEY"] == key


def test_openapi_documents_bearer_auth_and_error_bodies(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert any(s.get("scheme") == "bearer" for s in schemes.values())
    candles = spec["paths"]["/api/binance/candles"]["get"]
    assert candles["security"]
    assert candles["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert "security" not in spec["paths"]["/api/health"]["get"]


def test_an_undecodable_body_is_a_422(client: TestClient) -> None:
    response = client.post(
        "/api/mother-ai/halt",
        content=b"\xff\xfe\x00garbage",
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] in {"invalid_body", "validation_error"}


def test_every_answer_carries_the_security_headers(client: TestClient) -> None:
    origins = " ".join(ctx_of(client).settings.cors_origins)
    for path, headers in (("/api/health", {}), ("/api/jobs", AUTH), ("/api/nope", AUTH), ("/docs", {})):
        response = client.get(path, headers=headers)
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["content-security-policy"] == f"frame-ancestors 'self' {origins}", path
        assert response.headers["referrer-policy"] == "no-referrer", path
        if path.startswith("/api/"):
            assert response.headers["cache-control"] == "no-store", path
    assert "no-store" not in client.get("/docs").headers.get("cache-control", "")
