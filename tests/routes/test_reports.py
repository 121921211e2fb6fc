"""The three HTML reports through the real app behind a real uvicorn, opened in headless Chromium.

From an install whose agents were trained through the API (the shared trained install), a backtest and a
replay are made through the API, then each report is fetched with the API key and opened in the browser:
every expected chart is drawn with data in it, the page asks no other host for anything and logs no error,
and a screenshot is saved under tests/.output/ for a person to look at. Also: unknown ids are the usual 404
body, the key is required, the pages can be framed only as documented, and /openapi.json shows the pages
as text/html.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser

from main import create_app
from routes.common import AppContext
from tests.support import browser as chromium
from tests.support.install import TrainedInstall
from tests.support.server import serve
from tests.support.settings import API_KEY, make_settings
from utils.reports.downsample import bucket_size

AUTH = {"Authorization": f"Bearer {API_KEY}"}
H = 3_600_000
SAMPLE_START = 1_672_531_200_000  # the sample series' first candle
WARMUP, STEPS = 6000, 300
REPLAY = {
    "symbols": ["BTCUSDT", "ETHUSDT"],
    "interval": "1h",
    "start": SAMPLE_START,
    "end": SAMPLE_START + (WARMUP + STEPS) * H,
    "warmup": WARMUP,
    "retrain_every": 168,
    "fee_rate": 0.0,
    "slippage_bps": 0.0,
    "risk": {"min_confidence": 0.0},  # costs and floor off: the sample's small edges trade
}
BACKTEST = {"symbol": "BTCUSDT", "strategy": "sma_crossover", "stop_loss": 0.02, "take_profit": 0.04}
OPTIMIZE = {
    "symbol": "BTCUSDT",
    "strategy": "sma_crossover",
    "space": {
        "fast": {"type": "int", "low": 5, "high": 40, "step": 5},
        "slow": {"type": "int", "low": 60, "high": 160, "step": 20},
    },
    "n_trials": 12,
    "start": SAMPLE_START,
    "end": SAMPLE_START + 4000 * H,
}
# Per report: each chart's key and the traces it must hold (type, name), each with points in it.
EXPECTED: dict[str, dict[str, set[tuple[str, str]]]] = {
    "backtest": {
        "price": {
            ("candlestick", "BTCUSDT"),
            ("scatter", "SMA(10)"),
            ("scatter", "SMA(20)"),
            ("scatter", "entry"),
            ("scatter", "exit: signal"),
            ("scatter", "exit: stop loss"),
            ("scatter", "exit: take profit"),
            ("bar", "volume"),
        },
        "equity": {("scatter", "strategy equity"), ("scatter", "buy and hold"), ("scatter", "drawdown")},
    },
    "replay": {
        "equity": {
            ("scatter", "Mother AI"),
            ("scatter", "equal weights"),
            ("scatter", "BTCUSDT alone"),
            ("scatter", "ETHUSDT alone"),
            ("scatter", "buy and hold BTCUSDT"),
            ("scatter", "buy and hold ETHUSDT"),
            ("scatter", "Mother AI drawdown"),
        },
        "weights": {
            ("scatter", "BTCUSDT"),
            ("scatter", "ETHUSDT"),
            ("scatter", "BTCUSDT P(up)"),
            ("scatter", "ETHUSDT P(up)"),
        },
        "price-btcusdt": {("candlestick", "BTCUSDT"), ("scatter", "buy decision"), ("scatter", "fill")},
        "price-ethusdt": {("candlestick", "ETHUSDT"), ("scatter", "buy decision"), ("scatter", "fill")},
    },
    "model": {
        "folds": {
            ("bar", "accuracy"),
            ("bar", "balanced accuracy"),
            ("scatter", "majority baseline"),
            ("scatter", "AUC"),
            ("bar", "OOS return after fees"),
            ("bar", "buy and hold"),
        },
        "calibration": {("scatter", "perfectly calibrated"), ("scatter", "model (deciles of P(up))")},
        "importance": {("bar", "rise in log loss when shuffled")},
        "oos-backtest": {
            ("scatter", "model's signals, after fees"),
            ("scatter", "buy and hold"),
            ("scatter", "drawdown"),
        },
    },
    "optimization": {
        "neighbourhood": {("heatmap", "objective")},
        "trials": {("scatter", "feasible")},
        "equity": {("scatter", "equity"), ("scatter", "drawdown")},
    },
}


@dataclass(frozen=True)
class Served:
    url: str
    app: FastAPI
    http: httpx.Client
    backtest: dict[str, Any]
    replay: dict[str, Any]
    model: dict[str, Any]
    optimization: dict[str, Any]

    @property
    def paths(self) -> dict[str, str]:
        return {
            "backtest": f"/api/backtest/{self.backtest['id']}/report",
            "replay": f"/api/mother-ai/replays/{self.replay['id']}/report",
            "model": f"/api/agents/BTCUSDT/models/{self.model['version']}/report",
            "optimization": f"/api/optimizations/{self.optimization['id']}/report",
        }


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, trained_install: TrainedInstall) -> Iterator[Served]:
    """The trained install behind uvicorn, with one backtest and one replay made through the API."""
    app = create_app(make_settings(trained_install.copy_to(tmp_path_factory.mktemp("reports"))))
    with serve(app) as url, httpx.Client(base_url=url, headers=AUTH, timeout=120) as http:
        backtest = http.post("/api/backtest", json=BACKTEST)
        assert backtest.status_code == 201, backtest.text
        started = http.post("/api/mother-ai/replay", json=REPLAY)
        assert started.status_code == 202, started.text
        ctx: AppContext = app.state.ctx
        ctx.jobs.wait(started.json()["id"], timeout=600)
        job = http.get(f"/api/jobs/{started.json()['id']}").json()
        assert job["status"] == "done", job
        replay = http.get(f"/api/mother-ai/replays/{job['result']['replay_id']}").json()
        model = http.get("/api/agents/BTCUSDT/models").json()["models"][0]
        optimizing = http.post("/api/optimize", json=OPTIMIZE)
        assert optimizing.status_code == 202, optimizing.text
        ctx.jobs.wait(optimizing.json()["id"], timeout=600)
        optimized = http.get(f"/api/jobs/{optimizing.json()['id']}").json()
        assert optimized["status"] == "done", optimized
        optimization = http.get(f"/api/optimizations/{optimized['result']['optimization_id']}").json()
        yield Served(url, app, http, backtest.json(), replay, model, optimization)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium.chromium() as launched:
        yield launched


# --- in the browser ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["backtest", "replay", "model", "optimization"])
def test_each_report_draws_every_chart_with_data_offline_and_without_errors(
    served: Served, browser: Browser, kind: str
) -> None:
    url = served.url + served.paths[kind]
    with chromium.page(browser, AUTH) as (tab, log):
        response = tab.goto(url)
        assert response is not None and response.status == 200
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        chromium.wait_rendered(tab)
        drawn = chromium.charts(tab)
        shot = chromium.screenshot(tab, f"report-{kind}")
        assert set(drawn) == set(EXPECTED[kind])
        for key, traces in EXPECTED[kind].items():
            chart = drawn[key]
            have = {(t["type"], t["name"]): t["points"] for t in chart["traces"]}
            assert traces <= set(have), f"{key}: {sorted(traces - set(have))} missing"
            assert all(points > 0 for points in have.values()), (key, have)
            assert chart["drawn"] > 0, f"{key}: plotly drew nothing"
        assert log.requests == [url], "the page made a request of its own"
        assert log.outside_requests() == []
        assert log.console_errors == [] and log.page_errors == []
        assert tab.title().startswith("[SAMPLE DATA] ")
        assert shot.stat().st_size > 50_000


def test_the_backtest_report_shows_its_numbers_and_its_data_source(served: Served, browser: Browser) -> None:
    with chromium.page(browser, AUTH) as (tab, _log):
        tab.goto(served.url + served.paths["backtest"])
        chromium.wait_rendered(tab)
        assert "data source: sample" in tab.inner_text("header")
        assert "synthetic" in tab.inner_text("#report-warning")
        trades = tab.locator("#table-trades tbody tr")
        assert trades.count() == min(500, served.backtest["metrics"]["n_trades"])
        first = served.backtest["trades"][0]
        assert trades.first.locator("td").nth(5).inner_text() == first["exit_reason"].replace("_", " ")
        metrics = tab.inner_text("#table-metrics")
        assert f"{served.backtest['metrics']['total_return'] * 100:.2f}%" in metrics
        assert "Largest fall of equity below its running peak" in metrics
        candles = next(t for t in chromium.charts(tab)["price"]["traces"] if t["type"] == "candlestick")
        n_bars = served.backtest["n_bars"]
        merged = -(-n_bars // bucket_size(n_bars, 1000))  # 17,520 candles merged 18 by 18
        assert candles["points"] == merged < n_bars
        assert f"Candles BTCUSDT: {n_bars:,} drawn as {merged:,}" in tab.inner_text("#chart-price")


def test_a_report_frames_in_a_page_of_its_own_origin_and_in_a_sandboxed_srcdoc(
    served: Served, browser: Browser
) -> None:
    path = served.paths["replay"]
    with chromium.page(browser, AUTH) as (tab, log):
        tab.goto(served.url + "/docs")
        tab.evaluate(
            "(src) => { const f = document.createElement('iframe'); f.id = 'embedded'; f.src = src;"
            " f.style.width = '1200px'; f.style.height = '900px'; document.body.prepend(f); }",
            path,
        )
        tab.wait_for_function(
            "() => document.getElementById('embedded').contentDocument?.documentElement"
            "?.getAttribute('data-rendered') === 'true'",
            timeout=60_000,
        )
        assert log.outside_requests() == []
    page_html = served.http.get(path).text
    with chromium.page(browser) as (tab, log):  # no key needed: the dashboard fetched the page itself
        tab.set_content(
            '<iframe id="embedded" sandbox="allow-scripts" style="width:1200px;height:900px"></iframe>'
        )
        tab.evaluate("(page) => { document.getElementById('embedded').srcdoc = page; }", page_html)
        frame = next(f for f in tab.frames if f != tab.main_frame)
        frame.wait_for_function(
            "() => document.documentElement.getAttribute('data-rendered') === 'true'", timeout=60_000
        )
        assert set(chromium.charts(frame)) == set(EXPECTED["replay"])
        assert log.outside_requests() == [] and log.page_errors == [] and log.console_errors == []
        chromium.screenshot(tab, "report-replay-srcdoc")


def test_a_page_of_another_origin_cannot_frame_a_report(served: Served, browser: Browser) -> None:
    other = served.url.replace("127.0.0.1", "localhost")  # same server, another origin, not in CORS_ORIGINS
    with chromium.page(browser, AUTH) as (tab, _log):
        tab.goto(other + "/docs")
        with tab.expect_console_message(lambda message: "frame-ancestors" in message.text) as refused:
            tab.evaluate(
                "(src) => { const f = document.createElement('iframe'); f.src = src;"
                " document.body.prepend(f); }",
                served.url + served.paths["backtest"],
            )
        text = refused.value.text
        assert f"Framing '{served.url}/' violates" in text and "The request has been blocked" in text
        framed = [f for f in tab.frames if f != tab.main_frame]
        assert len(framed) == 1 and "data-report" not in framed[0].content()


# --- over HTTP --------------------------------------------------------------------------------------


def test_report_headers_allow_framing_by_this_server_and_the_dashboards_only(served: Served) -> None:
    answer = served.http.get(served.paths["backtest"])
    assert answer.status_code == 200 and answer.text.startswith("<!doctype html>")
    policy = answer.headers["content-security-policy"]
    ancestors = "frame-ancestors 'self' " + " ".join(served.app.state.ctx.settings.cors_origins)
    assert policy.endswith(ancestors) and "default-src 'none'" in policy
    assert (
        answer.headers["cache-control"] == "no-store"
        and answer.headers["x-content-type-options"] == "nosniff"
    )


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/api/backtest/nope/report", 404, "backtest_not_found"),
        ("/api/mother-ai/replays/" + "0" * 32 + "/report", 404, "replay_not_found"),
        ("/api/mother-ai/replays/not-hex/report", 422, "validation_error"),
        ("/api/agents/BTCUSDT/models/20200101T000000000000Z/report", 404, "model_not_found"),
        ("/api/agents/NOSUCHUSDT/models/20200101T000000000000Z/report", 404, "agent_not_found"),
        ("/api/agents/BTCUSDT/models/latest/report", 422, "validation_error"),
        ("/api/optimizations/" + "0" * 32 + "/report", 404, "optimization_not_found"),
        ("/api/optimizations/not-hex/report", 422, "validation_error"),
    ],
)
def test_unknown_or_malformed_ids_are_the_usual_error_body(
    served: Served, path: str, status: int, code: str
) -> None:
    answer = served.http.get(path)
    assert answer.status_code == status and answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]["code"] == code and answer.json()["error"]["message"]


@pytest.mark.parametrize("kind", ["backtest", "replay", "model", "optimization"])
def test_a_report_needs_the_api_key(served: Served, kind: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-key"}):
        answer = httpx.get(served.url + served.paths[kind], headers=headers, timeout=30)
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthorized"
        assert "<html" not in answer.text


def test_openapi_documents_each_report_as_html_with_json_errors(served: Served) -> None:
    spec = served.http.get("/openapi.json").json()
    operations = {
        "/api/backtest/{backtest_id}/report": "backtests_report",
        "/api/mother-ai/replays/{replay_id}/report": "replays_report",
        "/api/agents/{symbol}/models/{version}/report": "agents_model_report",
        "/api/optimizations/{optimization_id}/report": "optimizations_report",
    }
    for path, operation_id in operations.items():
        operation = spec["paths"][path]["get"]
        assert operation["operationId"] == operation_id
        assert set(operation["responses"]["200"]["content"]) == {"text/html"}
        for status in ("401", "404", "422"):
            content = operation["responses"][status]["content"]
            assert content == {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
