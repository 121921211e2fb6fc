"""Mother AI end to end: real agents trained on candles from the fake Binance, paper execution,
resolution when new candles arrive, concurrency, idempotency and live-mode refusals."""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from db.models import utc_at
from main import create_app
from mother_ai.trade_log import CSV_COLUMNS
from tests.fakes.fake_binance import FakeBinance
from tests.support.http import AUTH, ctx_of, wait_for_job
from tests.support.settings import make_settings
from utils.errors import Conflict

HOUR = 3_600_000
# The fake lists both symbols this long before its "now" while the agents train: a training uses what
# exists, so it walks forward over a year of candles instead of the agents' full 20,000 (a third of the
# time). The prices are the same at every instant whatever the listing, so the trading fake serves the
# same candles the models learnt from, and more of them.
TRAIN_HOURS = 8_000
# No fees or slippage and no confidence floor, so small model edges turn into trades to check.
TRADING = {"paper_fee_rate": 0.0, "paper_slippage_bps": 0.0, "risk_min_confidence": 0.0}


def train(client: TestClient, symbol: str) -> None:
    done = wait_for_job(client, client.post(f"/api/agents/{symbol}/train", headers=AUTH).json())
    assert done["status"] == "done", done


def decide(client: TestClient, **body: object) -> dict:
    response = client.post("/api/mother-ai/decide", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def trained_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both agents trained once per module on the fake's last TRAIN_HOURS candles; each test gets a copy of
    it all."""
    base = tmp_path_factory.mktemp("trained")
    with FakeBinance() as fake:
        for symbol in ("BTCUSDT", "ETHUSDT"):
            fake.relist(symbol, fake.now_ms - TRAIN_HOURS * HOUR)
        settings = make_settings(base, offline=False, binance_api_url=fake.url, **TRADING)
        with TestClient(create_app(settings, clock=lambda: fake.now_ms)) as client:
            train(client, "BTCUSDT")
            train(client, "ETHUSDT")
    return base


@pytest.fixture
def trader(trained_state: Path, tmp_path: Path, fake_binance: FakeBinance) -> Iterator[TestClient]:
    shutil.copytree(trained_state, tmp_path, dirs_exist_ok=True)
    settings = make_settings(tmp_path, offline=False, binance_api_url=fake_binance.url, **TRADING)
    app = create_app(settings, clock=lambda: fake_binance.now_ms)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def quote_balance(client: TestClient) -> Decimal:
    balances = client.get("/api/portfolio", headers=AUTH).json()["balances"]
    return Decimal(next(b["amount"] for b in balances if b["asset"] == "USDT"))


def filled_orders(client: TestClient) -> list[dict]:
    body = client.get("/api/orders", params={"limit": 500}, headers=AUTH).json()
    return [t for t in body["orders"] if Decimal(t["executed_quantity"]) > 0]


def expected_quote(orders: list[dict], initial: Decimal) -> Decimal:
    """Initial quote minus every buy's notional and fee, plus every sell's proceeds minus fee."""
    total = initial
    for order in orders:
        notional, fee = Decimal(order["quote_quantity"]), Decimal(order["fee"])
        total += -notional - fee if order["side"] == "BUY" else notional - fee
    return total


def test_decide_execute_resolve_and_weights_move(trader: TestClient, fake_binance: FakeBinance) -> None:
    first = None
    for _ in range(48):  # hour by hour until the agents' view is worth a trade
        outcome = decide(trader, execute=True)
        if outcome["order"] is not None:
            first = outcome
            break
        fake_binance.now_ms += HOUR
    assert first is not None, "no trade in 48 hourly decisions with zero costs"
    decision = first["decision"]
    assert {v["agent"] for v in decision["votes"]} == {"BTCUSDT", "ETHUSDT"}
    assert all(v["model_version"] and v["as_of"] < fake_binance.now_ms for v in decision["votes"])
    assert all(
        check["passed"]
        for c in decision["candidates"]
        if c["symbol"] == decision["symbol"]
        for check in c["checks"]
    )
    assert decision["reason"]
    order = first["order"]
    assert order["status"] == "FILLED" and order["decision_id"] == decision["id"]
    assert [t["client_order_id"] for t in filled_orders(trader)] == [order["client_order_id"]]
    # The order names the candle it was decided on: its voters' latest closed candle, closed by then.
    seen = max(v["as_of"] for v in decision["votes"] if v["symbol"] == order["symbol"])
    assert order["candle_open_time"] == seen and seen + HOUR <= decision["created_at"]
    assert isinstance(order["created_at"], int) and isinstance(decision["created_at"], int)
    first_weights = {v["agent"]: v["weight"] for v in decision["votes"]}

    def listed(path: str, **params: object) -> dict:
        response = trader.get(path, params=params, headers=AUTH)
        assert response.status_code == 200, response.text
        return response.json()

    buys = listed("/api/orders", side="BUY", symbol=order["symbol"])
    assert buys["total"] == 1 and buys["orders"][0]["id"] == order["id"]
    assert listed("/api/orders", side="SELL")["total"] == 0
    assert listed("/api/orders", end=order["created_at"] - 1)["total"] == 0
    assert listed("/api/orders", start=order["created_at"] - 1000)["total"] == 1
    chosen = listed("/api/mother-ai/decisions", action=decision["action"], symbol=decision["symbol"])
    assert decision["id"] in {d["id"] for d in chosen["decisions"]}
    assert {(d["action"], d["symbol"]) for d in chosen["decisions"]} == {
        (decision["action"], decision["symbol"])
    }
    decide(trader)  # a second decision, so the two orders of listing differ
    every = listed("/api/mother-ai/decisions", limit=500)["decisions"]
    oldest = listed("/api/mother-ai/decisions", limit=500, sort="oldest")["decisions"]
    assert len(every) > 1 and [d["id"] for d in oldest] == [d["id"] for d in reversed(every)]

    before = trader.get("/api/mother-ai/performance", headers=AUTH).json()
    assert all(a["resolved"] == 0 for a in before["agents"]), "nothing can resolve before the horizon passes"
    fake_binance.now_ms += 12 * HOUR  # new candles arrive; every horizon (4h, 6h) has passed
    after = trader.get("/api/mother-ai/performance", headers=AUTH).json()
    resolved = {a["agent"]: a["resolved"] for a in after["agents"]}
    assert all(n > 0 for n in resolved.values()), after["resolution"]
    assert after["portfolio"]["snapshots"] >= 1

    next_votes = decide(trader)["decision"]["votes"]
    next_weights = {v["agent"]: v["weight"] for v in next_votes}
    assert next_weights != first_weights, "resolved predictions must move the weights"
    for agent in after["agents"]:
        assert agent["weight"]["resolved"] == resolved[agent["agent"]]
    latest = listed("/api/mother-ai/decisions", limit=500)
    assert latest["decisions"][0]["id"] != decision["id"] and latest["total"] >= 2


def test_fifty_concurrent_executions_stay_consistent(trader: TestClient, fake_binance: FakeBinance) -> None:
    initial = quote_balance(trader)
    barrier = threading.Barrier(10)

    def one(i: int) -> dict:
        if i < 10:
            barrier.wait()
        return decide(trader, execute=True, client_order_id=f"conc-{i}")

    with ThreadPoolExecutor(10) as pool:
        outcomes = list(pool.map(one, range(50)))
    orders = filled_orders(trader)
    with_order = [
        o["order"]
        for o in outcomes
        if o["order"] is not None and Decimal(o["order"]["executed_quantity"]) > 0
    ]
    assert sorted(o["client_order_id"] for o in orders) == sorted(o["client_order_id"] for o in with_order), (
        "every response's trade exists exactly once, and no trade exists without a response"
    )
    assert len({o["decision_id"] for o in orders}) == len(orders)
    assert quote_balance(trader) == expected_quote(orders, initial)


def test_the_same_client_order_id_concurrently_fills_once(
    trader: TestClient, fake_binance: FakeBinance
) -> None:
    barrier = threading.Barrier(4)

    def one(_: int) -> dict:
        barrier.wait()
        return decide(trader, execute=True, client_order_id="same-id-1")

    # First an hour at which the agents' view is worth a buy: deciding without executing changes nothing
    # the next decision reads (no order, no resolution), so the same hour decides the same way again.
    probe = decide(trader)["decision"]
    for _ in range(48):
        if probe["action"] == "buy":
            break
        fake_binance.now_ms += HOUR
        probe = decide(trader)["decision"]
    assert probe["action"] == "buy", "no buy in 48 hourly decisions with zero costs"

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(one, range(4)))
    (decision_id,) = {o["decision"]["id"] for o in outcomes}
    assert decision_id != probe["id"]
    (fresh,) = [o for o in outcomes if not o["replayed"]]
    decision, order = fresh["decision"], fresh["order"]
    assert (decision["action"], decision["symbol"]) == ("buy", probe["symbol"])
    assert decision["executed"] is True and decision["client_order_id"] == "same-id-1"
    # Exactly one fill in the whole account, and it is that decision's order.
    (fill,) = filled_orders(trader)
    assert order is not None and order == fill
    assert (fill["client_order_id"], fill["decision_id"]) == ("same-id-1", decision_id)
    assert (fill["symbol"], fill["side"], fill["status"]) == (probe["symbol"], "BUY", "FILLED")
    assert decision["order_id"] == fill["id"]
    # Its one trade-log line is stamped by the app's clock (the fake's), as the order is.
    lines = (ctx_of(trader).trade_log.directory / "trades.jsonl").read_text().splitlines()
    (logged,) = [json.loads(line) for line in lines]
    assert logged["data"]["client_order_id"] == "same-id-1"
    assert logged["ts"] == utc_at(fill["created_at"]).isoformat(timespec="milliseconds")
    assert fill["created_at"] == fake_binance.now_ms
    # The other three answer with the first decision and its order. (A request whose first look came
    # while the first one was between storing its decision and its order would see the decision
    # still PENDING and no order; it can never see another order.)
    for other in outcomes:
        assert other["decision"]["client_order_id"] == "same-id-1"
        if other["order"] is not None:
            assert other["order"] == fill
        else:
            assert other["replayed"] and other["decision"]["order_status"] == "PENDING"
    again = decide(trader, execute=True, client_order_id="same-id-1")
    assert again["replayed"] is True and again["decision"]["id"] == decision_id
    assert again["order"] == fill and again["decision"]["order_id"] == fill["id"]
    assert filled_orders(trader) == [fill], "a retry never fills again"


def test_kill_switch_blocks_execution(trader: TestClient) -> None:
    halted = trader.post("/api/mother-ai/halt", json={"reason": "maintenance"}, headers=AUTH).json()
    assert halted["halted"] is True
    for i in range(5):
        outcome = decide(trader, execute=True, client_order_id=f"halted-{i}")
        assert outcome["order"] is None
        assert outcome["decision"]["halted"] is True
    assert filled_orders(trader) == []
    assert trader.post("/api/mother-ai/resume", headers=AUTH).json()["halted"] is False


def test_no_trained_agent_is_a_409_naming_them(client: TestClient) -> None:
    response = client.post("/api/mother-ai/decide", json={}, headers=AUTH)
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "no_trained_agents"
    assert "POST /api/agents/BTCUSDT/train" in error["message"]
    assert set(error["details"]["untrained"]) == {"BTCUSDT", "ETHUSDT"}


@pytest.mark.parametrize(
    ("overrides", "missing"),
    [
        ({}, "BINANCE_API_KEY"),
        ({"binance_api_key": "k", "binance_api_secret": "s"}, "LIVE_TRADING_CONFIRM"),
        (
            {"binance_api_key": "k", "binance_api_secret": "s", "live_trading_confirm": "yes please"},
            "LIVE_TRADING_CONFIRM",
        ),
    ],
)
def test_live_mode_refuses_until_fully_enabled(
    tmp_path: Path, fake_binance: FakeBinance, overrides: dict, missing: str
) -> None:
    settings = make_settings(
        tmp_path, trading_mode="live", offline=False, binance_api_url=fake_binance.url, **overrides
    )
    with TestClient(create_app(settings, clock=lambda: fake_binance.now_ms)) as client:
        for method, path in (("post", "/api/mother-ai/decide"), ("get", "/api/portfolio")):
            response = client.request(
                method, path, json={"execute": True} if method == "post" else None, headers=AUTH
            )
            assert response.status_code == 409, response.text
            error = response.json()["error"]
            assert error["code"] == "live_trading_disabled"
            assert missing in error["message"]
            assert "yes please" not in response.text and '"s"' not in response.text
        assert client.post("/api/portfolio/reset", headers=AUTH).status_code == 409
    assert fake_binance.requests_to("/api/v3/order") == []
    assert fake_binance.requests_to("/api/v3/order/test") == []


def test_paper_reset_and_csv_export(client: TestClient) -> None:
    settings = ctx_of(client).settings
    initial = Decimal(str(settings.paper_initial_balance))
    reset = client.post("/api/portfolio/reset", headers=AUTH)
    assert reset.status_code == 200, reset.text
    account = reset.json()
    assert (account["mode"], account["quote_asset"], account["positions"]) == ("paper", "USDT", [])
    assert [(b["asset"], Decimal(b["amount"])) for b in account["balances"]] == [("USDT", initial)]
    assert Decimal(account["equity"]) == Decimal(account["initial_balance"]) == initial
    assert Decimal(account["realised_pnl"]) == Decimal(account["unrealised_pnl"]) == 0
    history = client.get("/api/orders", headers=AUTH).json()
    assert (history["total"], history["orders"]) == (0, []), "an empty history"

    response = client.post("/api/orders/export", headers=AUTH)
    assert response.status_code == 200, response.text
    export = response.json()
    path = settings.trade_export_dir / export["path"]
    assert export == {"mode": "paper", "path": path.name}, "relative to TRADE_EXPORT_DIR, no server path"
    assert str(settings.trade_export_dir) not in response.text
    assert re.fullmatch(r"trades-paper-\d{8}T\d{12}Z-[0-9a-f]{8}\.csv", path.name)
    assert sorted(settings.trade_export_dir.iterdir()) == [path], "one file, no temporary left behind"
    # The whole file: the header row alone, the documented columns, in order (csv's \r\n line end).
    assert path.read_bytes() == (",".join(CSV_COLUMNS) + "\r\n").encode()
    # Every column is a field of an order as the API documents it.
    order_fields = client.get("/openapi.json").json()["components"]["schemas"]["OrderOut"]["properties"]
    assert set(CSV_COLUMNS) <= set(order_fields)


def test_domain_errors_say_what_is_wrong_and_the_api_adds_where_to_act(client: TestClient) -> None:
    from mother_ai.live_votes import collect_votes  # the domain's own words, without HTTP

    ctx = ctx_of(client)
    with pytest.raises(Conflict) as caught:
        collect_votes(ctx.agents, None, (), ctx.market, "paper", ctx.clock, ["SOLUSDT"])
    assert "/api/" not in caught.value.message
    error = client.post("/api/mother-ai/decide", json={"symbols": ["SOLUSDT"]}, headers=AUTH).json()["error"]
    assert error["message"].startswith(caught.value.message)
    assert error["message"].endswith(
        "Create an agent with POST /api/agents, then train it with POST /api/agents/{symbol}/train."
    )
