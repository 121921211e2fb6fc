"""mother_ai/trade_executer.py: paper fills and filters, idempotency under concurrency, live orders
against the fake Binance server (real python-binance, real HMAC), the kill switch, and paper/live
separation. Every test uses a real SQLite file migrated to head."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db import storage
from db.models import TradeOrder, TradingAccount, TradingBalance, TradingPosition
from mother_ai.live_executor import live_trading_problems
from mother_ai.orders import Side
from mother_ai.recovery import in_flight_cutoff
from mother_ai.trade_executer import (
    CLIENT_ORDER_ID_PATTERN,
    LIVE_TRADING_CONFIRM_PHRASE,
    MSG_INSUFFICIENT_BALANCE,
    BinanceExecutor,
    KillSwitch,
    OrderRequest,
    PaperExecutor,
    floor_to_step,
    get_order,
    list_orders,
    make_executor,
)
from mother_ai.trade_log import TradeLog
from tests.fakes.fake_binance import FakeBinance
from tests.support.clock import Clock
from tests.support.http import ctx_of
from tests.support.server import wait_until
from tests.support.settings import make_settings
from utils.binance_api import BREAKER_MS, BinanceExchange, exchange_from_settings
from utils.errors import Conflict, ExchangeUnavailable, InvalidInput, NotFound
from utils.exchange import KlinePage, SymbolFilters
from utils.market_data.candles import CandleStore
from utils.market_data.market import MarketData
from utils.settings import Settings

D = Decimal
CENT = D("0.01")
EIGHT = D("0.00000001")
ORDER_PATHS = ("/api/v3/order/test", "/api/v3/order")

BTC = SymbolFilters("BTCUSDT", "TRADING", "BTC", "USDT", "0.01", "0.00001", "0.00001", "9000", "5")
# A symbol whose minQty is ten steps and whose minimum notional is above minQty * price.
TST = SymbolFilters("TSTUSDT", "TRADING", "TST", "USDT", "0.01", "0.1", "1", "50", "150")
HALTED_MARKET = SymbolFilters("HLTUSDT", "BREAK", "HLT", "USDT", "0.01", "0.1", "0.1", "1000", "5")
ETHBTC = SymbolFilters("ETHBTC", "TRADING", "ETH", "BTC", "0.00001", "0.0001", "0.0001", "9000", "0.0001")


class StaticExchange:
    """Our own `utils.exchange.Exchange` protocol with fixed prices and filters: a stand-in for the
    market-data adapter (python-binance itself is exercised against the fake server below)."""

    name = "static"

    def __init__(self, prices: dict[str, float], filters: list[SymbolFilters]) -> None:
        self.prices = prices
        self.filters = filters
        self.request_count = 0

    def price(self, symbol: str) -> float:
        self.request_count += 1
        if symbol not in self.prices:
            raise NotFound("unknown symbol")
        return self.prices[symbol]

    def symbols(self) -> list[SymbolFilters]:
        return list(self.filters)

    def iter_klines(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> Iterator[KlinePage]:
        raise ExchangeUnavailable("no candles here")


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = storage.make_engine(f"sqlite:///{tmp_path / 'trading.db'}")
    storage.upgrade_to_head(engine)
    yield storage.make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def static_market(tmp_path: Path, sessions: sessionmaker[Session]) -> MarketData:
    exchange = StaticExchange(
        {"BTCUSDT": 30_000.0, "TSTUSDT": 100.0, "HLTUSDT": 10.0, "ETHBTC": 0.05},
        [BTC, TST, HALTED_MARKET, ETHBTC],
    )
    market = MarketData(CandleStore(tmp_path / "store"), exchange, sessions, lambda: 0, tmp_path / "data")
    market.symbols()  # stores the filters, as the app does when symbols are listed
    return market


@pytest.fixture
def paper(
    tmp_path: Path, sessions: sessionmaker[Session], static_market: MarketData
) -> Callable[..., PaperExecutor]:
    def build(**overrides: Any) -> PaperExecutor:
        values: dict[str, Any] = {"paper_slippage_bps": 0.0, "paper_fee_rate": 0.001}
        values.update(overrides)
        return PaperExecutor(make_settings(tmp_path, **values).paper, sessions, static_market)

    return build


def fee_of(notional: Decimal, rate: str = "0.001") -> Decimal:
    return (notional * D(rate)).quantize(EIGHT, rounding=ROUND_UP)


# --- requests -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (OrderRequest("btc", "BUY", quantity=D(1)), "symbol"),
        (OrderRequest("BTCUSDT", "HOLD", quantity=D(1)), "side"),  # type: ignore[arg-type]  # deliberately not a Side
        (OrderRequest("BTCUSDT", "BUY"), "quantity"),
        (OrderRequest("BTCUSDT", "BUY", quantity=D(1), quote_amount=D(10)), "quantity"),
        (OrderRequest("BTCUSDT", "BUY", quantity=0.1), "quantity"),  # type: ignore[arg-type]  # deliberately a float
        (OrderRequest("BTCUSDT", "BUY", quantity=D("-1")), "quantity"),
        (OrderRequest("BTCUSDT", "BUY", quantity=D("NaN")), "quantity"),
        (OrderRequest("BTCUSDT", "SELL", quote_amount=D(10)), "quote_amount"),
        (OrderRequest("BTCUSDT", "BUY", quantity=D(1), client_order_id="x" * 37), "client_order_id"),
        (OrderRequest("BTCUSDT", "BUY", quantity=D(1), client_order_id="has space"), "client_order_id"),
        (OrderRequest("BTCUSDT", "BUY", quantity=D(1), decision_id="d" * 65), "decision_id"),
    ],
)
def test_invalid_requests_name_the_field(request_: OrderRequest, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        request_.validated()
    assert caught.value.details == {"field": field}


def test_a_client_order_id_is_generated_in_binances_range() -> None:
    request = OrderRequest("BTCUSDT", "BUY", quantity="0.001").validated()  # type: ignore[arg-type]  # deliberately a str
    assert request.client_order_id is not None and CLIENT_ORDER_ID_PATTERN.fullmatch(request.client_order_id)
    assert request.quantity == D("0.001")
    assert (
        OrderRequest("BTCUSDT", "BUY", quantity=D(1)).validated().client_order_id != request.client_order_id
    )


# --- paper: filters -------------------------------------------------------------------------------

# (symbol, side, quantity, quote_amount, status, executed quantity, reject code, reason)
FILTER_CASES: list[tuple[str, Side, str | None, str | None, str, str, int | None, str | None]] = [
    ("TSTUSDT", "BUY", "5.37", None, "FILLED", "5.3", None, None),
    ("TSTUSDT", "BUY", "1.5", None, "FILLED", "1.5", None, None),  # notional exactly the minimum
    ("TSTUSDT", "BUY", "50.09", None, "FILLED", "50", None, None),  # rounds down onto maxQty
    ("BTCUSDT", "BUY", "0.0123456", None, "FILLED", "0.01234", None, None),
    ("BTCUSDT", "BUY", None, "50", "FILLED", "0.00166", None, None),  # 50/30000 rounded down
    ("TSTUSDT", "BUY", "0.95", None, "REJECTED", "0", -1013, "Filter failure: LOT_SIZE"),  # < minQty
    ("TSTUSDT", "BUY", "0.04", None, "REJECTED", "0", -1013, "Filter failure: LOT_SIZE"),  # rounds to 0
    ("TSTUSDT", "BUY", "51", None, "REJECTED", "0", -1013, "Filter failure: LOT_SIZE"),  # > maxQty
    ("TSTUSDT", "BUY", "1.49", None, "REJECTED", "0", -1013, "Filter failure: NOTIONAL"),  # 1.4*100
    ("BTCUSDT", "BUY", "0.000169", None, "REJECTED", "0", -1013, "Filter failure: NOTIONAL"),  # 4.8
    ("BTCUSDT", "BUY", None, "4.99", "REJECTED", "0", -1013, "Filter failure: NOTIONAL"),
    ("BTCUSDT", "BUY", "0.3333", None, "REJECTED", "0", -2010, MSG_INSUFFICIENT_BALANCE),  # the fee tips it
    ("BTCUSDT", "SELL", "0.001", None, "REJECTED", "0", -2010, MSG_INSUFFICIENT_BALANCE),  # long-only
    ("NOPEUSDT", "BUY", "1", None, "REJECTED", "0", -1121, "Invalid symbol."),
    ("HLTUSDT", "BUY", "1", None, "REJECTED", "0", -2010, "Market is closed."),
]


@pytest.mark.parametrize(
    ("symbol", "side", "quantity", "quote", "status", "executed", "code", "reason"), FILTER_CASES
)
def test_paper_filters_as_binance_applies_them(
    paper: Callable[..., PaperExecutor],
    sessions: sessionmaker[Session],
    symbol: str,
    side: Side,
    quantity: str | None,
    quote: str | None,
    status: str,
    executed: str,
    code: int | None,
    reason: str | None,
) -> None:
    executor = paper()
    request = OrderRequest(
        symbol,
        side,
        quantity=D(quantity) if quantity else None,
        quote_amount=D(quote) if quote else None,
        client_order_id="filters-1",
    )
    result = executor.submit(request)
    assert (result.status, result.executed_quantity, result.reject_code, result.reject_reason) == (
        status,
        D(executed),
        code,
        reason,
    )
    assert get_order(sessions, "paper", "filters-1") == result  # recorded either way
    balances = executor.portfolio().balances
    if status == "REJECTED":
        assert balances == {"USDT": D(10_000)}, "a rejected order changes no balance"
        assert result.fee == 0 and result.price is None
        assert executor.portfolio().positions == []
    else:
        assert result.price is not None
        notional = result.price * D(executed)
        assert result.quote_quantity == notional
        assert result.fee == fee_of(notional)
        base = symbol.removesuffix("USDT")
        assert balances == {"USDT": D(10_000) - notional - result.fee, base: D(executed)}


def test_paper_refuses_symbols_outside_its_quote_asset(paper: Callable[..., PaperExecutor]) -> None:
    with pytest.raises(InvalidInput, match="quoted in BTC"):
        paper().submit(OrderRequest("ETHBTC", "BUY", quantity=D(1)))


# --- paper: fills, fees, pnl ----------------------------------------------------------------------


def test_paper_fills_at_the_ticker_moved_by_slippage_with_exact_pnl(
    tmp_path: Path, sessions: sessionmaker[Session], fake_binance: FakeBinance
) -> None:
    exchange = BinanceExchange(api_url=fake_binance.url)
    market = MarketData(
        CandleStore(tmp_path / "store"), exchange, sessions, lambda: fake_binance.now_ms, tmp_path / "data"
    )
    trade_log = TradeLog(tmp_path / "logs")
    settings = make_settings(tmp_path, offline=False, paper_slippage_bps=5.0, paper_fee_rate=0.001)
    executor = PaperExecutor(settings.paper, sessions, market, trade_log=trade_log)
    ticker = D(str(exchange.price("BTCUSDT")))

    buy = executor.submit(OrderRequest("BTCUSDT", "BUY", quantity=D("0.0123456"), decision_id="dec-1"))
    buy_price = (ticker * D("1.0005") / CENT).to_integral_value(rounding=ROUND_CEILING) * CENT
    buy_notional = buy_price * D("0.01234")
    assert (buy.status, buy.price, buy.executed_quantity) == ("FILLED", buy_price, D("0.01234"))
    assert buy.price is not None and buy.price > ticker, "slippage moves a buy up"
    assert (buy.quote_quantity, buy.fee, buy.fee_asset) == (buy_notional, fee_of(buy_notional), "USDT")
    assert (buy.reference_price, buy.price_source, buy.decision_id) == (ticker, "binance", "dec-1")

    sell = executor.submit(OrderRequest("BTCUSDT", "SELL", quantity=D("0.005")))
    sell_price = (ticker * D("0.9995") / CENT).to_integral_value(rounding=ROUND_FLOOR) * CENT
    sell_notional = sell_price * D("0.005")
    assert sell.price == sell_price and sell.price < ticker, "slippage moves a sell down"
    cost = buy_notional + buy.fee
    removed = (cost * D("0.005") / D("0.01234")).quantize(EIGHT)
    realised = sell_notional - fee_of(sell_notional) - removed
    assert sell.realised_pnl == realised and realised < 0, "a round trip at one price loses fees and slippage"

    portfolio = executor.portfolio()
    cash = D(10_000) - buy_notional - buy.fee + sell_notional - sell.fee
    assert portfolio.balances == {"USDT": cash, "BTC": D("0.00734")}
    (position,) = portfolio.positions
    assert (position.quantity, position.cost_basis) == (D("0.00734"), cost - removed)
    assert position.avg_entry_price == ((cost - removed) / D("0.00734")).quantize(EIGHT)
    assert position.mark_price == ticker and position.price_source == "binance"
    assert position.market_value == (D("0.00734") * ticker).quantize(EIGHT)
    assert position.unrealised_pnl == position.market_value - position.cost_basis
    assert portfolio.realised_pnl == realised
    assert portfolio.equity == cash + position.market_value
    assert portfolio.initial_balance is not None, "a paper portfolio starts from its initial balance"
    assert portfolio.equity == portfolio.initial_balance + portfolio.realised_pnl + portfolio.unrealised_pnl
    encoded = json.loads(json.dumps(portfolio.to_dict()))  # what the API will serve: exact strings
    assert (
        encoded["equity"] == format(portfolio.equity, "f") and encoded["positions"][0]["symbol"] == "BTCUSDT"
    )
    assert D(json.loads(json.dumps(buy.to_dict()))["price"]) == buy_price

    # Closing the position removes exactly the remaining cost: nothing is left over from rounding.
    close = executor.submit(OrderRequest("BTCUSDT", "SELL", quantity=D("0.00734")))
    (closed,) = executor.portfolio().positions
    assert (closed.quantity, closed.cost_basis, closed.unrealised_pnl) == (D(0), D(0), D(0))
    assert closed.realised_pnl == realised + close.realised_pnl

    lines = [json.loads(line) for line in (tmp_path / "logs" / "trades.jsonl").read_text().splitlines()]
    assert [line["data"]["client_order_id"] for line in lines] == [
        buy.client_order_id,
        sell.client_order_id,
        close.client_order_id,
    ]
    assert D(lines[0]["data"]["price"]) == buy_price, "decimals are logged as exact strings"


def test_paper_offline_prices_from_the_last_stored_close(client: TestClient, settings: Settings) -> None:
    ctx = ctx_of(client)
    assert ctx.market.exchange is None
    last = ctx.market.price("BTCUSDT")
    assert last.source == "sample"
    executor = PaperExecutor(
        settings.model_copy(update={"paper_slippage_bps": 0.0}).paper, ctx.sessions, ctx.market
    )
    result = executor.submit(OrderRequest("BTCUSDT", "BUY", quote_amount=D(1000)))
    close = D(str(last.price))
    assert result.status == "FILLED" and result.price_source == "sample"
    assert result.reference_price == close.quantize(EIGHT)
    assert result.price == (close / CENT).to_integral_value(rounding=ROUND_CEILING) * CENT
    assert result.quote_quantity <= 1000 and result.executed_quantity * result.price == result.quote_quantity


# --- idempotency and concurrency ------------------------------------------------------------------


def test_the_same_client_order_id_fills_once(paper: Callable[..., PaperExecutor]) -> None:
    executor = paper()
    request = OrderRequest("BTCUSDT", "BUY", quantity=D("0.01"), client_order_id="once-1")
    first = executor.submit(request)
    again = executor.submit(request)
    other_size = executor.submit(OrderRequest("BTCUSDT", "BUY", quantity=D("0.02"), client_order_id="once-1"))
    assert first.status == "FILLED" and not first.replayed
    assert again.replayed and other_size.replayed
    assert again.id == other_size.id == first.id and again.executed_quantity == D("0.01")
    assert executor.portfolio().balances["BTC"] == D("0.01")


def test_the_same_client_order_id_from_eight_threads_fills_once(
    paper: Callable[..., PaperExecutor], sessions: sessionmaker[Session]
) -> None:
    executor = paper()
    barrier = threading.Barrier(8)

    def submit(_: int) -> Any:
        barrier.wait()
        return executor.submit(OrderRequest("BTCUSDT", "BUY", quantity=D("0.01"), client_order_id="race-1"))

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(submit, range(8)))
    assert {r.id for r in results} == {results[0].id}
    assert sum(not r.replayed for r in results) == 1
    assert all(r.status == "FILLED" and r.executed_quantity == D("0.01") for r in results)
    orders, total = list_orders(sessions, "paper")
    assert total == 1
    assert executor.portfolio().balances == {
        "USDT": D(10_000) - orders[0].quote_quantity - orders[0].fee,
        "BTC": D("0.01"),
    }


def test_fifty_concurrent_buys_each_fill_once_and_balances_are_exact(
    paper: Callable[..., PaperExecutor], sessions: sessionmaker[Session]
) -> None:
    executor = paper(paper_slippage_bps=7.0)
    barrier = threading.Barrier(50)

    def submit(i: int) -> Any:
        barrier.wait()
        quantity = D("0.001") + D("0.00001") * i
        return executor.submit(OrderRequest("BTCUSDT", "BUY", quantity=quantity, client_order_id=f"many-{i}"))

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(submit, range(50)))
    assert all(r.status == "FILLED" and not r.replayed for r in results)
    orders, total = list_orders(sessions, "paper", limit=1000)
    assert total == 50
    assert sorted(o.client_order_id for o in orders) == sorted(f"many-{i}" for i in range(50))
    assert {o.id for o in orders} == {r.id for r in results}
    spent = sum((r.quote_quantity + r.fee for r in results), D(0))
    portfolio = executor.portfolio()
    assert portfolio.balances["USDT"] == D(10_000) - spent
    assert portfolio.balances["BTC"] == sum((r.executed_quantity for r in results), D(0))
    assert portfolio.initial_balance is not None, "a paper portfolio starts from its initial balance"
    assert portfolio.equity == portfolio.initial_balance + portfolio.realised_pnl + portfolio.unrealised_pnl


def test_writers_on_separate_engines_still_fill_each_id_once(
    tmp_path: Path, sessions: sessionmaker[Session], static_market: MarketData
) -> None:
    """Two engines on one file do not share the in-process lock, like two worker processes:
    BEGIN IMMEDIATE and the UNIQUE constraint alone must keep every id to one fill."""
    other_engine = storage.make_engine(f"sqlite:///{tmp_path}/./trading.db")
    try:
        settings = make_settings(tmp_path, paper_slippage_bps=0.0)
        executors = [
            PaperExecutor(settings.paper, sessions, static_market),
            PaperExecutor(settings.paper, storage.make_session_factory(other_engine), static_market),
        ]
        barrier = threading.Barrier(16)

        def submit(i: int) -> Any:
            barrier.wait()
            client_order_id = "shared-race" if i % 2 else f"own-{i}"
            request = OrderRequest("BTCUSDT", "BUY", quantity=D("0.001"), client_order_id=client_order_id)
            return executors[i % 2 if i < 8 else (i + 1) % 2].submit(request)

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(submit, range(16)))
        shared = [r for r in results if r.client_order_id == "shared-race"]
        assert len({r.id for r in shared}) == 1 and sum(not r.replayed for r in shared) == 1
        orders, total = list_orders(sessions, "paper", limit=100)
        assert total == 9  # 8 own ids + the shared one
        spent = sum((o.quote_quantity + o.fee for o in orders), D(0))
        assert executors[1].portfolio().balances == {"USDT": D(10_000) - spent, "BTC": D("0.009")}
    finally:
        other_engine.dispose()


def test_balances_are_stored_as_exact_decimal_strings(
    paper: Callable[..., PaperExecutor], sessions: sessionmaker[Session]
) -> None:
    paper().submit(OrderRequest("BTCUSDT", "BUY", quantity=D("0.00123")))
    with sessions() as session:
        usdt = session.get(TradingBalance, ("paper", "USDT"))
        assert usdt is not None and usdt.amount == D("10000") - D("36.9") - D("0.0369")
        with pytest.raises(Exception, match="needs a Decimal"):
            usdt.amount = 1.5  # type: ignore[assignment]  # deliberately not a Decimal
            session.flush()


# --- reset ----------------------------------------------------------------------------------------


def test_reset_restores_the_initial_balance_and_keeps_the_history(
    paper: Callable[..., PaperExecutor], sessions: sessionmaker[Session]
) -> None:
    executor = paper(paper_initial_balance=5000.0)
    first = executor.submit(OrderRequest("BTCUSDT", "BUY", quantity=D("0.01")))
    portfolio = executor.reset()
    assert portfolio.balances == {"USDT": D(5000)} and portfolio.positions == []
    assert (portfolio.epoch, portfolio.equity, portfolio.realised_pnl) == (2, D(5000), D(0))
    second = executor.submit(OrderRequest("BTCUSDT", "BUY", quantity=D("0.01")))
    assert (first.epoch, second.epoch) == (1, 2)
    assert list_orders(sessions, "paper")[1] == 2, "orders survive a reset"
    assert [o.id for o in list_orders(sessions, "paper", epoch=2)[0]] == [second.id]


# --- kill switch ----------------------------------------------------------------------------------


def test_the_kill_switch_blocks_paper_orders_until_resumed(
    paper: Callable[..., PaperExecutor], sessions: sessionmaker[Session]
) -> None:
    executor = paper()
    done = executor.submit(OrderRequest("BTCUSDT", "BUY", quantity=D("0.001"), client_order_id="before-halt"))
    clock = Clock(1_709_251_200_000)  # 2024-03-01: the switch tells time by the app's clock
    switch = KillSwitch(sessions, clock=clock)
    state = switch.halt("daily loss limit")
    assert state.halted and state.reason == "daily loss limit"
    assert state.changed_at == datetime(2024, 3, 1, tzinfo=UTC) == KillSwitch(sessions).state().changed_at
    assert KillSwitch(sessions).is_halted(), "the halt is stored, not held in memory"
    with pytest.raises(Conflict) as caught:
        executor.submit(OrderRequest("BTCUSDT", "BUY", quantity=D("0.001")))
    assert caught.value.code == "trading_halted" and "daily loss limit" in caught.value.message
    assert executor.portfolio().halted
    # A retry of an order placed before the halt is not a new order: it returns the stored one.
    assert (
        executor.submit(OrderRequest("BTCUSDT", "BUY", quantity=D("0.001"), client_order_id="before-halt")).id
        == done.id
    )
    assert list_orders(sessions, "paper")[1] == 1
    clock.now += 90_000
    resumed = switch.resume()
    assert not resumed.halted and resumed.changed_at == datetime(2024, 3, 1, 0, 1, 30, tzinfo=UTC)
    assert executor.submit(OrderRequest("BTCUSDT", "BUY", quantity=D("0.001"))).status == "FILLED"


# --- live -----------------------------------------------------------------------------------------


def live_settings(tmp_path: Path, fake: FakeBinance, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "trading_mode": "live",
        "offline": False,
        "binance_api_url": fake.url,
        "binance_api_key": fake.api_key,
        "binance_api_secret": fake.api_secret,
        "live_trading_confirm": LIVE_TRADING_CONFIRM_PHRASE,
        "live_max_order_notional": 100.0,
        "binance_max_retries": 0,
    }
    values.update(overrides)
    return make_settings(tmp_path, **values)


@pytest.fixture
def live_market(tmp_path: Path, sessions: sessionmaker[Session], fake_binance: FakeBinance) -> MarketData:
    exchange = BinanceExchange(api_url=fake_binance.url)  # public market data: no keys
    return MarketData(
        CandleStore(tmp_path / "store"), exchange, sessions, lambda: fake_binance.now_ms, tmp_path / "data"
    )


@pytest.fixture
def live(
    tmp_path: Path, sessions: sessionmaker[Session], live_market: MarketData, fake_binance: FakeBinance
) -> BinanceExecutor:
    settings = live_settings(tmp_path, fake_binance)
    return BinanceExecutor(settings.trading, settings.exchange, sessions, live_market)


def order_requests(fake: FakeBinance) -> list[str]:
    return [r.path for r in fake.requests if r.path in ORDER_PATHS]


@pytest.mark.parametrize(
    ("overrides", "missing", "says"),
    [
        ({"trading_mode": "paper"}, ["trading_mode"], "TRADING_MODE is not 'live'."),
        ({"offline": True}, ["offline"], "OFFLINE=true"),
        ({"binance_api_key": None}, ["binance_api_key"], "BINANCE_API_KEY is not set."),
        ({"binance_api_secret": None}, ["binance_api_secret"], "BINANCE_API_SECRET is not set."),
        ({"live_trading_confirm": None}, ["live_trading_confirm"], "LIVE_TRADING_CONFIRM is not set"),
        ({"live_trading_confirm": "yes, go"}, ["live_trading_confirm"], "does not match the required phrase"),
        (
            {"trading_mode": "paper", "binance_api_secret": None, "live_trading_confirm": None},
            ["trading_mode", "binance_api_secret", "live_trading_confirm"],
            "BINANCE_API_SECRET is not set.",
        ),
    ],
)
def test_live_trading_refuses_until_every_condition_holds(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    live_market: MarketData,
    fake_binance: FakeBinance,
    overrides: dict[str, Any],
    missing: list[str],
    says: str,
) -> None:
    settings = live_settings(tmp_path, fake_binance, **overrides)
    with pytest.raises(Conflict) as caught:
        BinanceExecutor(settings.trading, settings.exchange, sessions, live_market)
    error = caught.value
    assert error.code == "live_trading_disabled" and error.details == {"missing": missing}
    assert says in error.message
    assert "test-secret" not in error.message and "yes, go" not in error.message
    if settings.trading_mode == "live":
        with pytest.raises(Conflict, match=re.escape(says)):
            make_executor(settings, sessions, live_market)
    assert fake_binance.requests == [], "nothing reached Binance"


# LIVE_TRADING_CONFIRM against the documented phrase: compared byte for byte, case included, after
# trimming the whitespace around the value (as for the keys). enabled: live trading is on.
CONFIRMATIONS = [
    (LIVE_TRADING_CONFIRM_PHRASE, True, None),
    (f"  {LIVE_TRADING_CONFIRM_PHRASE}\t", True, None),  # trimmed: a stray space in .env is not a change
    (LIVE_TRADING_CONFIRM_PHRASE.lower(), False, "does not match"),
    (LIVE_TRADING_CONFIRM_PHRASE.upper(), False, "does not match"),
    (LIVE_TRADING_CONFIRM_PHRASE.title(), False, "does not match"),
    (LIVE_TRADING_CONFIRM_PHRASE.swapcase(), False, "does not match"),
    (LIVE_TRADING_CONFIRM_PHRASE + ".", False, "does not match"),
    (LIVE_TRADING_CONFIRM_PHRASE.replace(" ", "  ", 1), False, "does not match"),
    (LIVE_TRADING_CONFIRM_PHRASE[:-1], False, "does not match"),
    ("yes please", False, "does not match"),
    ("Yes Please", False, "does not match"),
    ("", False, "is not set"),
    ("   ", False, "is not set"),
]


@pytest.mark.parametrize(("phrase", "enabled", "says"), CONFIRMATIONS)
def test_only_the_exact_confirmation_phrase_enables_live_trading(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    live_market: MarketData,
    fake_binance: FakeBinance,
    phrase: str,
    enabled: bool,
    says: str | None,
) -> None:
    settings = live_settings(tmp_path, fake_binance, live_trading_confirm=phrase)
    problems = live_trading_problems(settings.trading, settings.exchange)
    if enabled:
        assert problems == []
        assert isinstance(make_executor(settings, sessions, live_market), BinanceExecutor)
    else:
        assert [code for code, _ in problems] == ["live_trading_confirm"]
        assert says is not None and says in problems[0][1]
        with pytest.raises(Conflict) as caught:
            make_executor(settings, sessions, live_market)
        assert caught.value.code == "live_trading_disabled"
        assert caught.value.details == {"missing": ["live_trading_confirm"]}
        if phrase.strip():  # the message names the required phrase, never the configured value
            assert phrase not in caught.value.message.replace(f"'{LIVE_TRADING_CONFIRM_PHRASE}'", "")
    assert order_requests(fake_binance) == [], "deciding whether live trading is on places no order"


def test_messages_for_each_missing_condition_are_distinct(
    tmp_path: Path, sessions: sessionmaker[Session], live_market: MarketData, fake_binance: FakeBinance
) -> None:
    messages = set()
    for overrides in (
        {"trading_mode": "paper"},
        {"binance_api_key": None},
        {"live_trading_confirm": None},
        {"live_trading_confirm": "wrong"},
    ):
        with pytest.raises(Conflict) as caught:
            settings = live_settings(tmp_path, fake_binance, **overrides)
            BinanceExecutor(settings.trading, settings.exchange, sessions, live_market)
        messages.add(caught.value.message)
    assert len(messages) == 4
    paper_settings = live_settings(tmp_path, fake_binance, trading_mode="paper")
    assert isinstance(make_executor(paper_settings, sessions, live_market), PaperExecutor)


def test_a_live_order_is_tested_then_placed_signed_and_recorded(
    live: BinanceExecutor, sessions: sessionmaker[Session], fake_binance: FakeBinance
) -> None:
    result = live.submit(
        OrderRequest(
            "BTCUSDT", "BUY", quantity=D("0.0012345"), client_order_id="live-order-1", decision_id="d-7"
        )
    )
    assert order_requests(fake_binance) == ["/api/v3/order/test", "/api/v3/order"], "validated first"
    test_call, placed = (
        fake_binance.requests_to("/api/v3/order/test")[0],
        fake_binance.requests_to("/api/v3/order")[0],
    )
    for request in (test_call, placed):
        params = request.params
        assert params["newClientOrderId"] == "live-order-1"
        assert (params["symbol"], params["side"], params["type"]) == ("BTCUSDT", "BUY", "MARKET")
        assert params["quantity"] == "0.00123", "a decimal string rounded down to the step"
        headers = {name.lower(): value for name, value in request.headers.items()}
        assert headers["x-mbx-apikey"] == "test-key"
        # The fake verified the signature already (it answers -1022 otherwise); check it here too.
        payload = "&".join(f"{key}={value}" for key, value in request.body.items() if key != "signature")
        expected = hmac.new(b"test-secret", payload.encode(), hashlib.sha256).hexdigest()
        assert hmac.compare_digest(request.body["signature"], expected)

    (accepted,) = fake_binance.orders
    assert accepted["clientOrderId"] == "live-order-1"
    assert (result.mode, result.status, result.executed_quantity) == ("live", "FILLED", D("0.00123"))
    assert result.exchange_order_id == str(accepted["orderId"]) and result.decision_id == "d-7"
    assert result.quote_quantity == D(accepted["cummulativeQuoteQty"])
    assert (result.fee, result.fee_asset) == (D("0.00000123"), "BTC")  # Binance charges the asset bought
    assert get_order(sessions, "live", "live-order-1") == result

    (position,) = live.portfolio().positions
    assert position.quantity == D("0.00123") - D("0.00000123")
    assert position.cost_basis == result.quote_quantity

    again = live.submit(
        OrderRequest("BTCUSDT", "BUY", quantity=D("0.0012345"), client_order_id="live-order-1")
    )
    assert again.replayed and again.id == result.id
    assert len(order_requests(fake_binance)) == 2, "a duplicate never reaches Binance"

    sell = live.submit(OrderRequest("BTCUSDT", "SELL", quantity=D("0.001")))
    assert sell.status == "FILLED" and sell.fee_asset == "USDT"
    assert sell.realised_pnl == sell.quote_quantity - sell.fee - (
        position.cost_basis * D("0.001") / position.quantity
    ).quantize(EIGHT)
    assert fake_binance.requests_to("/api/v3/order")[-1].params["quantity"] == "0.001"


@pytest.mark.parametrize(
    ("fault", "quantity", "code", "reason", "placed"),
    [
        ({"kind": "reject"}, "0.001", -2010, MSG_INSUFFICIENT_BALANCE, True),
        (
            {"kind": "reject", "code": -1013, "msg": "Filter failure: LOT_SIZE"},
            "0.001",
            -1013,
            "Filter failure: LOT_SIZE",
            True,
        ),
        (None, "0.0001", -1013, "Filter failure: NOTIONAL", False),  # the test order catches it
    ],
)
def test_binance_rejections_leave_no_filled_order(
    live: BinanceExecutor,
    sessions: sessionmaker[Session],
    fake_binance: FakeBinance,
    fault: dict[str, Any] | None,
    quantity: str,
    code: int,
    reason: str,
    placed: bool,
) -> None:
    if fault is not None:
        fake_binance.add_fault("/api/v3/order", **fault)
    result = live.submit(OrderRequest("BTCUSDT", "BUY", quantity=D(quantity), client_order_id="refused-1"))
    assert (result.status, result.reject_code, result.reject_reason) == ("REJECTED", code, reason)
    assert result.executed_quantity == 0 and result.exchange_order_id is None
    assert fake_binance.orders == []
    assert order_requests(fake_binance) == (list(ORDER_PATHS) if placed else ["/api/v3/order/test"])
    orders, _ = list_orders(sessions, "live")
    assert [o.status for o in orders] == ["REJECTED"]
    assert live.portfolio().positions == []


def test_live_orders_above_the_maximum_notional_are_refused_before_any_order_request(
    live: BinanceExecutor, fake_binance: FakeBinance
) -> None:
    by_quantity = live.submit(OrderRequest("BTCUSDT", "BUY", quantity=D("0.01")))  # ~300 USDT
    by_quote = live.submit(OrderRequest("BTCUSDT", "BUY", quote_amount=D(150)))
    for result in (by_quantity, by_quote):
        assert result.status == "REJECTED" and result.reject_code is None
        assert "exceeds LIVE_MAX_ORDER_NOTIONAL (100)" in (result.reject_reason or "")
    assert order_requests(fake_binance) == []


def test_a_live_exit_above_the_maximum_notional_is_still_sent(
    live: BinanceExecutor, fake_binance: FakeBinance
) -> None:
    # Three buys under the cap build a position worth about three times the cap; selling it all
    # must not be blocked, or the position could never be closed.
    buys = [live.submit(OrderRequest("BTCUSDT", "BUY", quote_amount=D(90))) for _ in range(3)]
    assert all(b.status == "FILLED" for b in buys)
    (position,) = live.portfolio().positions
    exit_order = live.submit(
        OrderRequest("BTCUSDT", "SELL", quantity=floor_to_step(position.quantity, D("0.00001")))
    )
    assert exit_order.status == "FILLED", exit_order.reject_reason
    assert exit_order.quote_quantity > D(100)


def test_live_sells_only_what_this_backend_bought(live: BinanceExecutor, fake_binance: FakeBinance) -> None:
    result = live.submit(OrderRequest("BTCUSDT", "SELL", quantity=D("0.001")))
    assert result.status == "REJECTED" and "position opened by this backend" in (result.reject_reason or "")
    assert order_requests(fake_binance) == []


def test_no_answer_to_a_live_order_is_unknown_never_filled_and_never_resent(
    live: BinanceExecutor, fake_binance: FakeBinance
) -> None:
    fake_binance.add_fault("/api/v3/order", "500")
    result = live.submit(OrderRequest("BTCUSDT", "BUY", quantity=D("0.001"), client_order_id="lost-1"))
    assert result.status == "UNKNOWN" and "lost-1" in (result.reject_reason or "")
    assert len(fake_binance.requests_to("/api/v3/order")) == 1, "an order placement is never retried"
    again = live.submit(OrderRequest("BTCUSDT", "BUY", quantity=D("0.001"), client_order_id="lost-1"))
    assert again.replayed and again.status == "UNKNOWN"
    assert len(fake_binance.requests_to("/api/v3/order")) == 1


def test_an_unknown_live_order_that_binance_has_is_settled_by_client_order_id(
    tmp_path: Path, sessions: sessionmaker[Session], live_market: MarketData, fake_binance: FakeBinance
) -> None:
    settings = live_settings(tmp_path, fake_binance)
    clock = Clock(fake_binance.now_ms)
    client = exchange_from_settings(settings.exchange, clock=clock, signed=True)
    live = BinanceExecutor(settings.trading, settings.exchange, sessions, live_market, client=client)
    # Binance executes the order but its answer comes after our timeout: UNKNOWN here, FILLED there.
    fake_binance.add_fault("/api/v3/order", "slow", delay=3.0)
    lost = live.submit(OrderRequest("BTCUSDT", "BUY", quantity=D("0.001"), client_order_id="late-1"))
    assert lost.status == "UNKNOWN"
    wait_until(lambda: len(fake_binance.orders) == 1, timeout=10, what="the fake to execute the order")
    (placed,) = fake_binance.orders
    clock.now += BREAKER_MS  # the timeout tripped the breaker; the next round comes after it
    repairs = live.reconcile()
    assert [(r.kind, r.subject, r.action) for r in repairs] == [
        ("order", "live late-1", "settled from Binance: FILLED")
    ]
    settled = get_order(live.sessions, "live", "late-1")
    assert settled is not None and settled.status == "FILLED"
    assert settled.exchange_order_id == str(placed["orderId"])
    assert settled.executed_quantity == D(placed["executedQty"])
    assert settled.quote_quantity == D(placed["cummulativeQuoteQty"])
    fill = placed["fills"][0]
    assert (settled.fee, settled.fee_asset) == (D(fill["commission"]), fill["commissionAsset"])
    (position,) = live.portfolio().positions
    assert position.quantity == D("0.001") - D(fill["commission"])  # the fee is paid in BTC on a buy
    assert live.reconcile() == [], "a settled order is never asked about again"
    assert len(fake_binance.requests_to("/api/v3/order")) == 2  # the placement and one query, nothing resent


def test_an_unknown_live_order_binance_never_received_is_rejected_and_frees_its_quantity(
    live: BinanceExecutor, fake_binance: FakeBinance
) -> None:
    fake_binance.add_fault("/api/v3/order", "500")
    lost = live.submit(OrderRequest("BTCUSDT", "BUY", quantity=D("0.001"), client_order_id="never-1"))
    assert lost.status == "UNKNOWN" and fake_binance.orders == []
    (repair,) = live.reconcile()
    assert (repair.subject, repair.action) == ("live never-1", "not on Binance: rejected")
    settled = get_order(live.sessions, "live", "never-1")
    assert settled is not None
    assert (settled.status, settled.reject_code) == ("REJECTED", -2013)
    assert settled.executed_quantity == 0 and live.portfolio().positions == []


def test_recent_open_live_orders_are_left_to_the_caller_placing_them(
    live: BinanceExecutor, fake_binance: FakeBinance
) -> None:
    fake_binance.add_fault("/api/v3/order", "500")
    live.submit(OrderRequest("BTCUSDT", "BUY", quantity=D("0.001"), client_order_id="fresh-1"))
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    assert live.reconcile(settled_before=long_ago) == []
    assert fake_binance.requests_to("/api/v3/order")[-1].method == "POST", "nothing was asked about"
    order = get_order(live.sessions, "live", "fresh-1")
    assert order is not None and order.status == "UNKNOWN"


def test_orders_carry_the_injected_clocks_time_so_its_filters_and_grace_follow_it(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    static_market: MarketData,
    live_market: MarketData,
    fake_binance: FakeBinance,
) -> None:
    """Both executors stamp their rows with the app's clock, not the machine's: the order history's time
    filter and the live reconciler's grace for orders in flight (main.py's cutoff) are read on it."""
    clock = Clock(fake_binance.now_ms)  # 2024-03-01: far from the machine's time
    at = datetime.fromtimestamp(clock.now / 1000, tz=UTC)
    settings = live_settings(tmp_path, fake_binance)
    paper = PaperExecutor(settings.paper, sessions, static_market, clock=clock)
    bought = paper.submit(OrderRequest("BTCUSDT", "BUY", quote_amount=D(100)))
    live = BinanceExecutor(settings.trading, settings.exchange, sessions, live_market, clock=clock)
    fake_binance.add_fault("/api/v3/order", "500")
    lost = live.submit(OrderRequest("BTCUSDT", "BUY", quantity=D("0.001"), client_order_id="in-flight-1"))
    assert bought.filled and lost.status == "UNKNOWN"
    for order in (bought, lost):
        assert (order.created_at, order.updated_at) == (at, at), order.mode
        found, _ = list_orders(sessions, order.mode, start_ms=clock.now, end_ms=clock.now)
        assert [o.id for o in found] == [order.id]
    with sessions() as session:
        stamps = {
            "account": [a.created_at for a in session.scalars(select(TradingAccount))],
            "balances": [b.updated_at for b in session.scalars(select(TradingBalance))],
            "position": [p.updated_at for p in session.scalars(select(TradingPosition))],
        }
    assert stamps == {"account": [at, at], "balances": [at, at], "position": [at]}, "paper and live"
    assert paper.portfolio().as_of == at
    clock.now += 30_000
    assert live.reconcile(settled_before=in_flight_cutoff(clock.now)) == [], "30 s on: still in its grace"
    clock.now += 31_000
    (repair,) = live.reconcile(settled_before=in_flight_cutoff(clock.now))
    assert (repair.subject, repair.action) == ("live in-flight-1", "not on Binance: rejected")
    settled = get_order(sessions, "live", "in-flight-1")
    assert settled is not None and settled.updated_at == at + timedelta(seconds=61)


def test_an_unreachable_test_order_records_nothing_so_the_id_can_be_retried(
    live: BinanceExecutor, sessions: sessionmaker[Session], fake_binance: FakeBinance
) -> None:
    fake_binance.add_fault("/api/v3/order/test", "503")
    with pytest.raises(ExchangeUnavailable):
        live.submit(OrderRequest("BTCUSDT", "BUY", quantity=D("0.001"), client_order_id="retry-me"))
    assert get_order(sessions, "live", "retry-me") is None
    assert live.submit(OrderRequest("BTCUSDT", "BUY", quantity=D("0.001"), client_order_id="retry-me")).filled


def test_the_kill_switch_blocks_live_orders_before_binance(
    live: BinanceExecutor, sessions: sessionmaker[Session], fake_binance: FakeBinance
) -> None:
    KillSwitch(sessions).halt("manual stop")
    with pytest.raises(Conflict) as caught:
        live.submit(OrderRequest("BTCUSDT", "BUY", quantity=D("0.001")))
    assert caught.value.code == "trading_halted"
    assert order_requests(fake_binance) == []
    KillSwitch(sessions).resume()
    assert live.submit(OrderRequest("BTCUSDT", "BUY", quantity=D("0.001"))).status == "FILLED"


def test_live_reset_is_refused(live: BinanceExecutor) -> None:
    with pytest.raises(Conflict) as caught:
        live.reset()
    assert caught.value.code == "live_reset_refused"


# --- paper and live never mix ---------------------------------------------------------------------


def test_paper_and_live_records_never_mix(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    live_market: MarketData,
    live: BinanceExecutor,
    fake_binance: FakeBinance,
) -> None:
    paper_executor = PaperExecutor(make_settings(tmp_path, offline=False).paper, sessions, live_market)
    paper_order = paper_executor.submit(
        OrderRequest("ETHUSDT", "BUY", quantity=D("0.01"), client_order_id="shared-1")
    )
    live_order = live.submit(OrderRequest("BTCUSDT", "BUY", quantity=D("0.001"), client_order_id="shared-1"))
    assert paper_order.id != live_order.id, "the same client order id is independent per mode"
    assert get_order(sessions, "paper", "shared-1") == paper_order
    assert get_order(sessions, "live", "shared-1") == live_order
    assert [o.mode for o in list_orders(sessions, "paper")[0]] == ["paper"]
    assert [o.mode for o in list_orders(sessions, "live")[0]] == ["live"]
    assert len(fake_binance.orders) == 1, "the paper order never reached Binance"

    paper_portfolio = paper_executor.portfolio()
    assert [p.symbol for p in paper_portfolio.positions] == ["ETHUSDT"]
    assert set(paper_portfolio.balances) == {"USDT", "ETH"}
    live_portfolio = live.portfolio()
    assert live_portfolio.mode == "live" and [p.symbol for p in live_portfolio.positions] == ["BTCUSDT"]
    # Live balances are the Binance account's, valued in USDT at the ticker.
    assert live_portfolio.balances == {asset: D(amount) for asset, amount in fake_binance.balances.items()}
    btc, eth = (D(str(live_market.price(s).price)) for s in ("BTCUSDT", "ETHUSDT"))
    assert live_portfolio.equity == D(100_000) + btc + (10 * eth).quantize(EIGHT)
    assert live_portfolio.unpriced_assets == [] and not live_portfolio.stale
    # Resetting paper leaves every live record alone.
    paper_executor.reset()
    assert [p.symbol for p in live.portfolio().positions] == ["BTCUSDT"]
    assert list_orders(sessions, "live")[1] == 1

    with pytest.raises(InvalidInput):
        list_orders(sessions, "demo")
    with sessions() as session, pytest.raises(IntegrityError):  # the database refuses a third mode
        row = session.scalars(select(TradeOrder)).first()
        assert row is not None
        row.mode = "demo"
        session.flush()
