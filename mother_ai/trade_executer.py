"""Trade execution: the paper and live (Binance) executors, their account records, and the kill switch.

What it owns
- ``OrderRequest`` -> ``Executor.submit`` -> ``OrderResult``; ``Executor.portfolio()``; paper ``reset()``.
- ``PaperExecutor`` (the default) fills MARKET orders at the current price (ticker online, last
  stored close offline) moved by ``PAPER_SLIPPAGE_BPS`` against the trader, charges
  ``PAPER_FEE_RATE`` of the fill notional in the quote asset, and applies the symbol's filters as
  Binance does: quantity rounded down to the LOT_SIZE step, price to the PRICE_FILTER tick
  (up for a buy, down for a sell: slippage never flatters), LOT_SIZE and NOTIONAL failures and
  insufficient balances rejected with Binance's words. Long-only spot.
- ``BinanceExecutor`` places real orders; it exists only with TRADING_MODE=live, Binance keys, and
  LIVE_TRADING_CONFIRM equal to ``LIVE_TRADING_CONFIRM_PHRASE``. Every order is validated with
  POST /api/v3/order/test, then placed once with ``newClientOrderId``; orders above
  LIVE_MAX_ORDER_NOTIONAL are refused before any order request.
- ``KillSwitch``: ``halt(reason)`` / ``resume()`` / ``is_halted()``, stored in the database, so a
  halt survives restarts and covers every executor and process.

Records: paper and live orders, balances and positions share tables and are told apart by a
``mode`` column that is part of every key, CHECK-constrained, and filtered on in every query.
Amounts are ``Decimal`` end to end (stored as exact decimal strings), so balances never drift.
A paper ``reset()`` keeps the order history: it bumps the paper account's ``epoch`` (orders keep
the epoch they were placed in), deletes paper positions and restores the initial balance.

Idempotency and concurrency
- (mode, client_order_id) is UNIQUE. ``submit`` returns the stored order for a known id (marked
  ``replayed=True``) and never fills it again; the check is repeated inside the write transaction,
  and a UNIQUE violation from a racing writer is answered by re-reading the winner's order.
- Every write runs in ``_run_write``: an in-process lock per database serialises this process's
  writers (threads queue on a lock instead of spinning on SQLite's busy handler); on SQLite the
  transaction starts with ``BEGIN IMMEDIATE``, taking the write lock up front. Without it,
  Python's sqlite3 only begins a transaction at the first INSERT/UPDATE, so the balance reads
  before it run outside any transaction and two processes can lose an update; and a deferred
  transaction that reads and then writes can fail with "database is locked" when another
  connection committed in between (busy_timeout cannot help a stale snapshot). The test with two
  engines on one file (no shared lock, like two processes) fails without it. On PostgreSQL the
  mode's account row is read with ``SELECT ... FOR UPDATE`` first, serialising writers of one mode
  across processes, and the balance and position rows are locked the same way.
- Prices and filters are fetched before the transaction, so no lock is held over the network.
- Live orders are written as PENDING *before* Binance is called, so only the one caller that
  inserted that row ever sends the order. An order placement is never retried: after a timeout or
  5xx Binance may or may not have it, so it is recorded as UNKNOWN for a human to check.
"""

from __future__ import annotations

import hmac
import logging
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_UP, Decimal, InvalidOperation
from typing import Any, Literal, Protocol, TypeVar

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from backtester.market_data import MarketData
from db.models import (
    TRADING_MODES,
    TradeOrder,
    TradingAccount,
    TradingBalance,
    TradingControl,
    TradingPosition,
    utcnow,
)
from db.storage import process_lock, transaction
from mother_ai.trade_log import TradeLog
from utils.binance_api import BinanceExchange
from utils.errors import AppError, Conflict, ExchangeUnavailable, InvalidInput
from utils.exchange import SymbolFilters
from utils.settings import Settings
from utils.symbols import SYMBOL_PATTERN, is_symbol

log = logging.getLogger(__name__)
T = TypeVar("T")

Mode = Literal["paper", "live"]
Side = Literal["BUY", "SELL"]

LIVE_TRADING_CONFIRM_PHRASE = "I understand real money is at risk"
CLIENT_ORDER_ID_PATTERN = re.compile(r"^[a-zA-Z0-9-_]{1,36}$")  # Binance's newClientOrderId range
ASSET_STEP = Decimal("0.00000001")  # Binance keeps 8 decimals per asset

# Binance's codes and words, so a paper rejection reads exactly like a live one.
CODE_FILTER_FAILURE = -1013
CODE_ORDER_REJECTED = -2010
CODE_INVALID_SYMBOL = -1121
MSG_INSUFFICIENT_BALANCE = "Account has insufficient balance for requested action."
MSG_INVALID_SYMBOL = "Invalid symbol."
MSG_MARKET_CLOSED = "Market is closed."
MSG_DUPLICATE_ORDER = "Duplicate order sent."

# Order statuses we write ourselves; live orders otherwise carry Binance's status verbatim.
PENDING, FILLED, REJECTED, UNKNOWN = "PENDING", "FILLED", "REJECTED", "UNKNOWN"
_CONTROL_ROW = 1


# --- requests and results -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A MARKET order: `quantity` of base, or (buys only) `quote_amount` of quote to spend.

    `quote_amount` is the notional, like Binance's quoteOrderQty; the paper fee comes on top.
    Without a `client_order_id` one is generated; reuse an id to make a retry safe."""

    symbol: str
    side: Side
    quantity: Decimal | None = None
    quote_amount: Decimal | None = None
    client_order_id: str | None = None
    decision_id: str | None = None

    def validated(self) -> OrderRequest:
        """A normalised copy with a client order id; InvalidInput naming the first bad field."""
        symbol = self.symbol.upper() if isinstance(self.symbol, str) else ""
        if not is_symbol(symbol):
            raise _invalid("symbol", f"symbol must match {SYMBOL_PATTERN}.")
        side = self.side.upper() if isinstance(self.side, str) else ""
        if side not in ("BUY", "SELL"):
            raise _invalid("side", "side must be BUY or SELL.")
        if (self.quantity is None) == (self.quote_amount is None):
            raise _invalid("quantity", "Give exactly one of quantity and quote_amount.")
        if self.quote_amount is not None and side != "BUY":
            raise _invalid("quote_amount", "quote_amount sizes buys only; sell a quantity.")
        quantity = _positive_decimal(self.quantity, "quantity") if self.quantity is not None else None
        quote = (
            _positive_decimal(self.quote_amount, "quote_amount") if self.quote_amount is not None else None
        )
        client_order_id = self.client_order_id or new_client_order_id()
        if not isinstance(client_order_id, str) or not CLIENT_ORDER_ID_PATTERN.fullmatch(client_order_id):
            raise _invalid(
                "client_order_id", f"client_order_id must match {CLIENT_ORDER_ID_PATTERN.pattern}."
            )
        if self.decision_id is not None and (
            not isinstance(self.decision_id, str) or len(self.decision_id) > 64
        ):
            raise _invalid("decision_id", "decision_id must be a string of at most 64 characters.")
        return OrderRequest(symbol, side, quantity, quote, client_order_id, self.decision_id)  # type: ignore[arg-type]


def new_client_order_id() -> str:
    return f"mai{uuid.uuid4().hex}"  # 35 characters, within Binance's 36


@dataclass(frozen=True, slots=True)
class OrderResult:
    """One stored order. `replayed` is True when `submit` returned an earlier order for its id."""

    id: int
    mode: Mode
    client_order_id: str
    symbol: str
    side: Side
    type: str
    status: str
    requested_quantity: Decimal | None
    requested_quote_amount: Decimal | None
    executed_quantity: Decimal
    price: Decimal | None
    quote_quantity: Decimal
    fee: Decimal
    fee_asset: str | None
    realised_pnl: Decimal
    reference_price: Decimal | None
    price_source: str | None
    reject_code: int | None
    reject_reason: str | None
    exchange_order_id: str | None
    decision_id: str | None
    epoch: int
    created_at: datetime
    updated_at: datetime
    replayed: bool = False

    @property
    def filled(self) -> bool:
        return self.executed_quantity > 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: decimals as exact strings, times as ISO-8601."""
        return {key: jsonable(value) for key, value in asdict(self).items()}


@dataclass(frozen=True, slots=True)
class PositionView:
    """A position marked at the current price. `avg_entry_price` is cost_basis / quantity, i.e.
    the break-even price including buy fees; unpriced positions are valued at cost (`stale`)."""

    symbol: str
    base_asset: str
    quote_asset: str
    quantity: Decimal
    avg_entry_price: Decimal
    cost_basis: Decimal
    realised_pnl: Decimal
    mark_price: Decimal | None
    market_value: Decimal
    unrealised_pnl: Decimal
    price_source: str | None
    stale: bool


@dataclass(frozen=True, slots=True)
class Portfolio:
    """Balances, positions (closed ones included, for their realised pnl) and equity of one mode.

    Paper equity = quote balance + market value of open positions, so
    equity == initial_balance + realised_pnl + unrealised_pnl exactly. Live equity = the Binance
    account valued in LIVE_QUOTE_ASSET; positions are only what this backend opened."""

    mode: Mode
    quote_asset: str
    balances: dict[str, Decimal]
    positions: list[PositionView]
    equity: Decimal
    realised_pnl: Decimal
    unrealised_pnl: Decimal
    initial_balance: Decimal | None
    epoch: int
    halted: bool
    stale: bool  # a price or (live) the account could not be refreshed
    unpriced_assets: list[str] = field(default_factory=list)
    as_of: datetime = field(default_factory=utcnow)

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))


@dataclass(frozen=True, slots=True)
class Fill:
    price: Decimal
    quantity: Decimal
    notional: Decimal
    fee: Decimal


@dataclass(frozen=True, slots=True)
class Rejection:
    code: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class HaltState:
    halted: bool
    reason: str
    changed_at: datetime | None


class Executor(Protocol):
    mode: Mode

    def submit(self, order: OrderRequest) -> OrderResult: ...

    def portfolio(self) -> Portfolio: ...

    def reset(self) -> Portfolio: ...


# --- filters, rounding and the paper fill (pure) --------------------------------------------------


def floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    """`value` rounded down to a whole number of steps (a zero step means no rounding)."""
    if step <= 0:
        return value
    return (value / step).to_integral_value(rounding=ROUND_FLOOR) * step


def round_to_tick(price: Decimal, tick: Decimal, side: str) -> Decimal:
    """`price` on the tick grid, rounded against the trader: up for a buy, down for a sell."""
    if tick <= 0:
        return price
    rounding = ROUND_CEILING if side == "BUY" else ROUND_FLOOR
    return (price / tick).to_integral_value(rounding=rounding) * tick


def plan_paper_fill(
    side: str,
    quantity: Decimal | None,
    quote_amount: Decimal | None,
    reference_price: Decimal | None,
    filters: SymbolFilters | None,
    slippage_bps: Decimal,
    fee_rate: Decimal,
) -> Fill | Rejection:
    """The fill a MARKET order gets, or the rejection Binance would give, in Binance's order of
    checks (symbol, PRICE_FILTER, LOT_SIZE, NOTIONAL). Balances are checked by the caller."""
    if filters is None:
        return Rejection(CODE_INVALID_SYMBOL, MSG_INVALID_SYMBOL)
    if filters.status != "TRADING" or reference_price is None:
        return Rejection(CODE_ORDER_REJECTED, MSG_MARKET_CLOSED)
    tick, step = Decimal(filters.tick_size), Decimal(filters.step_size)
    min_qty, max_qty = Decimal(filters.min_qty), Decimal(filters.max_qty)
    slip = slippage_bps / Decimal(10_000)
    moved = reference_price * (1 + slip) if side == "BUY" else reference_price * (1 - slip)
    price = round_to_tick(moved, tick, side)
    if price <= 0:
        return Rejection(CODE_FILTER_FAILURE, "Filter failure: PRICE_FILTER")
    raw = quantity if quantity is not None else (quote_amount or Decimal(0)) / price
    qty = floor_to_step(raw, step)
    if qty <= 0 or qty < min_qty or (max_qty > 0 and qty > max_qty):
        return Rejection(CODE_FILTER_FAILURE, "Filter failure: LOT_SIZE")
    notional = price * qty
    if notional < Decimal(filters.min_notional):
        return Rejection(CODE_FILTER_FAILURE, "Filter failure: NOTIONAL")
    # Fees are charged to 8 decimals, rounded up: the exchange never undercharges.
    fee = (notional * fee_rate).quantize(ASSET_STEP, rounding=ROUND_UP)
    return Fill(price, qty, notional, fee)


# --- kill switch ----------------------------------------------------------------------------------


class KillSwitch:
    """Stops every executor from accepting new orders; the state lives in `trading_controls`."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def halt(self, reason: str = "") -> HaltState:
        reason = (reason or "").strip()[:500] or "halted manually"
        return _run_write(self.sessions, lambda s: _set_control(s, True, reason))

    def resume(self) -> HaltState:
        return _run_write(self.sessions, lambda s: _set_control(s, False, ""))

    def state(self) -> HaltState:
        with self.sessions() as session:
            row = session.get(TradingControl, _CONTROL_ROW)
            return _halt_state(row)

    def is_halted(self) -> bool:
        return self.state().halted

    def check(self) -> None:
        """Conflict (code trading_halted) while halted."""
        _raise_if_halted(self.state())


def _set_control(session: Session, halted: bool, reason: str) -> HaltState:
    row = session.get(TradingControl, _CONTROL_ROW, with_for_update=True)
    if row is None:
        row = TradingControl(id=_CONTROL_ROW)
        session.add(row)
    row.halted, row.reason, row.changed_at = halted, reason, utcnow()
    session.flush()
    log.warning("trading %s%s", "HALTED: " if halted else "resumed", reason)
    return _halt_state(row)


def _halt_state(row: TradingControl | None) -> HaltState:
    if row is None:
        return HaltState(False, "", None)
    return HaltState(bool(row.halted), row.reason, row.changed_at)


def _ensure_not_halted(session: Session) -> None:
    _raise_if_halted(_halt_state(session.get(TradingControl, _CONTROL_ROW)))


def _raise_if_halted(state: HaltState) -> None:
    if state.halted:
        raise Conflict(
            f"Trading is halted ({state.reason}); no new orders are accepted until it is resumed.",
            code="trading_halted",
            details={
                "reason": state.reason,
                "since": state.changed_at.isoformat() if state.changed_at else None,
            },
        )


# --- paper ----------------------------------------------------------------------------------------


class PaperExecutor:
    """Simulated fills against live or stored prices; balances and positions in the database."""

    mode: Mode = "paper"

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        market: MarketData,
        *,
        trade_log: TradeLog | None = None,
        kill_switch: KillSwitch | None = None,
    ) -> None:
        self.sessions = sessions
        self.market = market
        self.trade_log = trade_log
        self.kill_switch = kill_switch or KillSwitch(sessions)
        # Settings are floats; str() gives their shortest decimal form (0.001, not 0.00100000000000000002...).
        self.initial_balance = Decimal(str(settings.paper_initial_balance))
        self.quote_asset = settings.paper_quote_asset
        self.slippage_bps = Decimal(str(settings.paper_slippage_bps))
        self.fee_rate = Decimal(str(settings.paper_fee_rate))

    def submit(self, order: OrderRequest) -> OrderResult:
        request = order.validated()
        assert request.client_order_id is not None
        existing = get_order(self.sessions, "paper", request.client_order_id)
        if existing is not None:
            return replace(existing, replayed=True)
        self.kill_switch.check()  # cheap early refusal; checked again inside the write transaction
        filters = _filters_for(self.market, request.symbol)
        reference: tuple[Decimal, str] | None = None
        if filters is not None and filters.status == "TRADING":
            answer = self.market.price(request.symbol)
            reference = (_price_decimal(answer.price), answer.source)
        result = _run_write(self.sessions, lambda s: self._write(s, request, filters, reference))
        if not result.replayed:
            _after_order(result, self.trade_log)
        return result

    def _write(
        self,
        session: Session,
        request: OrderRequest,
        filters: SymbolFilters | None,
        reference: tuple[Decimal, str] | None,
    ) -> OrderResult:
        assert request.client_order_id is not None
        duplicate = _find_order(session, "paper", request.client_order_id)
        if duplicate is not None:
            return _result(duplicate, replayed=True)
        _ensure_not_halted(session)
        account = _lock_account(session, "paper", self.quote_asset, self.initial_balance)
        if filters is not None and filters.quote_asset != account.quote_asset:
            raise InvalidInput(
                f"The paper account trades in {account.quote_asset}; {request.symbol} is quoted in "
                f"{filters.quote_asset}.",
                details={"field": "symbol"},
            )
        row = _order_row("paper", request, account.epoch)
        if reference is not None:
            row.reference_price, row.price_source = reference[0].quantize(ASSET_STEP), reference[1]
        outcome = plan_paper_fill(
            request.side,
            request.quantity,
            request.quote_amount,
            reference[0] if reference else None,
            filters,
            self.slippage_bps,
            self.fee_rate,
        )
        if isinstance(outcome, Fill):
            assert filters is not None
            outcome = self._apply(session, row, filters, outcome)
        if isinstance(outcome, Rejection):
            row.status, row.reject_code, row.reject_reason = REJECTED, outcome.code, outcome.reason
        session.add(row)
        session.flush()
        return _result(row)

    def _apply(
        self, session: Session, row: TradeOrder, filters: SymbolFilters, fill: Fill
    ) -> Fill | Rejection:
        quote, base = filters.quote_asset, filters.base_asset
        balances = _lock_balances(session, "paper", (quote, base))
        if row.side == "BUY" and balances[quote].amount < fill.notional + fill.fee:
            return Rejection(CODE_ORDER_REJECTED, MSG_INSUFFICIENT_BALANCE)
        if row.side == "SELL" and balances[base].amount < fill.quantity:
            return Rejection(CODE_ORDER_REJECTED, MSG_INSUFFICIENT_BALANCE)
        now = utcnow()
        if row.side == "BUY":
            balances[quote].amount -= fill.notional + fill.fee
            balances[base].amount += fill.quantity
        else:
            balances[base].amount -= fill.quantity
            balances[quote].amount += fill.notional - fill.fee
        for balance in balances.values():
            balance.updated_at = now
            session.add(balance)
        position = _lock_position(session, "paper", filters)
        realised = _apply_to_position(position, row.side, fill.quantity, fill.notional, fill.fee, Decimal(0))
        row.status = FILLED
        row.price, row.executed_quantity, row.quote_quantity = fill.price, fill.quantity, fill.notional
        row.fee, row.fee_asset, row.realised_pnl = fill.fee, quote, realised
        return fill

    def portfolio(self) -> Portfolio:
        def read(
            session: Session,
        ) -> tuple[TradingAccount, list[TradingBalance], list[TradingPosition], HaltState]:
            # Read under the account lock so balances and positions are one consistent snapshot.
            account = _lock_account(session, "paper", self.quote_asset, self.initial_balance)
            balances = _balance_rows(session, "paper")
            positions = _position_rows(session, "paper")
            return account, balances, positions, _halt_state(session.get(TradingControl, _CONTROL_ROW))

        account, balances, positions, halt = _run_write(self.sessions, read)
        views = [_mark(self.market, position) for position in positions]
        cash = next((b.amount for b in balances if b.asset == account.quote_asset), Decimal(0))
        equity = cash + sum((v.market_value for v in views if v.quantity > 0), Decimal(0))
        return Portfolio(
            mode="paper",
            quote_asset=account.quote_asset,
            balances={b.asset: b.amount for b in balances},
            positions=views,
            equity=equity,
            realised_pnl=sum((v.realised_pnl for v in views), Decimal(0)),
            unrealised_pnl=sum((v.unrealised_pnl for v in views), Decimal(0)),
            initial_balance=account.initial_balance,
            epoch=account.epoch,
            halted=halt.halted,
            stale=any(v.stale for v in views if v.quantity > 0),
        )

    def reset(self) -> Portfolio:
        """Back to PAPER_INITIAL_BALANCE of PAPER_QUOTE_ASSET with no positions; paper orders are
        kept (they keep their epoch; the account moves to the next one). Live records are untouched."""

        def work(session: Session) -> int:
            account = _lock_account(session, "paper", self.quote_asset, self.initial_balance)
            account.epoch += 1
            account.reset_at = utcnow()
            account.initial_balance, account.quote_asset = self.initial_balance, self.quote_asset
            session.execute(delete(TradingBalance).where(TradingBalance.mode == "paper"))
            session.execute(delete(TradingPosition).where(TradingPosition.mode == "paper"))
            session.add(TradingBalance(mode="paper", asset=self.quote_asset, amount=self.initial_balance))
            session.flush()
            return account.epoch

        epoch = _run_write(self.sessions, work)
        log.info("paper account reset to %s %s (epoch %d)", self.initial_balance, self.quote_asset, epoch)
        if self.trade_log is not None:
            self.trade_log.append_event(
                "reset",
                {"mode": "paper", "epoch": epoch, "balance": self.initial_balance, "asset": self.quote_asset},
            )
        return self.portfolio()


# --- live -----------------------------------------------------------------------------------------


def live_trading_problems(settings: Settings) -> list[tuple[str, str]]:
    """Every unmet condition for live trading as (code, message); empty means enabled.
    Messages name settings, never their values."""
    problems: list[tuple[str, str]] = []
    if settings.trading_mode != "live":
        problems.append(("trading_mode", "TRADING_MODE is not 'live'."))
    if settings.offline:
        problems.append(("offline", "OFFLINE=true: Binance is never called."))
    for name, secret in (
        ("BINANCE_API_KEY", settings.binance_api_key),
        ("BINANCE_API_SECRET", settings.binance_api_secret),
    ):
        if secret is None or not secret.get_secret_value().strip():
            problems.append((name.lower(), f"{name} is not set."))
    confirm = settings.live_trading_confirm
    if confirm is None or not confirm.get_secret_value().strip():
        problems.append(
            (
                "live_trading_confirm",
                f"LIVE_TRADING_CONFIRM is not set; set it to '{LIVE_TRADING_CONFIRM_PHRASE}'.",
            )
        )
    elif not hmac.compare_digest(
        confirm.get_secret_value().strip().encode(), LIVE_TRADING_CONFIRM_PHRASE.encode()
    ):
        problems.append(
            (
                "live_trading_confirm",
                f"LIVE_TRADING_CONFIRM does not match the required phrase '{LIVE_TRADING_CONFIRM_PHRASE}'.",
            )
        )
    return problems


def require_live_trading(settings: Settings) -> None:
    """Conflict (code live_trading_disabled) naming every unmet condition for live trading."""
    problems = live_trading_problems(settings)
    if problems:
        raise Conflict(
            "Live trading is not enabled: " + " ".join(message for _, message in problems),
            code="live_trading_disabled",
            details={"missing": [code for code, _ in problems]},
        )


class BinanceExecutor:
    """Real Binance spot orders (MARKET, by quantity), recorded with mode "live"."""

    mode: Mode = "live"

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        market: MarketData,
        *,
        exchange: BinanceExchange | None = None,
        trade_log: TradeLog | None = None,
        kill_switch: KillSwitch | None = None,
    ) -> None:
        require_live_trading(settings)
        assert settings.binance_api_key is not None and settings.binance_api_secret is not None
        self.sessions = sessions
        self.market = market
        self.trade_log = trade_log
        self.kill_switch = kill_switch or KillSwitch(sessions)
        self.quote_asset = settings.live_quote_asset
        self.max_notional = Decimal(str(settings.live_max_order_notional))
        # Its own signed client: the market-data adapter may have been built without keys.
        self.exchange = exchange or BinanceExchange(
            api_url=settings.effective_binance_url,
            api_key=settings.binance_api_key.get_secret_value(),
            api_secret=settings.binance_api_secret.get_secret_value(),
            timeout_s=settings.binance_timeout_seconds,
            max_retries=settings.binance_max_retries,
            weight_limit=settings.binance_weight_limit,
        )

    def submit(self, order: OrderRequest) -> OrderResult:
        request = order.validated()
        assert request.client_order_id is not None
        existing = get_order(self.sessions, "live", request.client_order_id)
        if existing is not None:
            return replace(existing, replayed=True)  # never sent to Binance twice
        self.kill_switch.check()
        filters = _filters_for(self.market, request.symbol)
        estimate: Decimal | None = None
        source: str | None = None
        quantity = Decimal(0)
        local: Rejection | None = None
        if filters is None:
            local = Rejection(CODE_INVALID_SYMBOL, MSG_INVALID_SYMBOL)
        else:
            answer = self.market.price(request.symbol)
            if answer.stale or answer.source != "binance":
                raise ExchangeUnavailable(
                    f"No live {request.symbol} price from Binance to check the order against; "
                    "nothing was sent."
                )
            estimate, source = _price_decimal(answer.price), answer.source
            raw = request.quantity if request.quantity is not None else (request.quote_amount or 0) / estimate
            quantity = floor_to_step(raw, Decimal(filters.step_size))
            if quantity <= 0:
                local = Rejection(CODE_FILTER_FAILURE, "Filter failure: LOT_SIZE")
            elif request.side == "BUY" and quantity * estimate > self.max_notional:
                # The cap limits new risk; an exit must always be possible, whatever it is worth.
                local = Rejection(
                    None,
                    f"Estimated notional {plain((quantity * estimate).quantize(ASSET_STEP))} "
                    f"{filters.quote_asset} exceeds LIVE_MAX_ORDER_NOTIONAL ({plain(self.max_notional)}).",
                )

        pending = _run_write(
            self.sessions,
            lambda s: self._record_pending(s, request, filters, quantity, estimate, source, local),
        )
        if pending.replayed or pending.status != PENDING:
            if not pending.replayed:
                _after_order(pending, self.trade_log)
            return pending
        assert filters is not None
        params = {
            "symbol": request.symbol,
            "side": request.side,
            "type": "MARKET",
            "quantity": plain(quantity),  # a decimal string: str(float) could send "1e-05"
            "newClientOrderId": request.client_order_id,
        }
        try:
            self.exchange.create_test_order(**params)
        except Exception as exc:
            rejection = _binance_rejection(exc)
            if rejection is None:
                # Could not even validate: nothing was placed, so forget the attempt; the same
                # client order id may be submitted again.
                _run_write(self.sessions, lambda s: _delete_order(s, pending.id))
                raise
            return self._finish(pending.id, filters, rejection=rejection)
        try:
            response = self.exchange.create_order(**params, newOrderRespType="FULL")
        except Exception as exc:  # whatever happened, the PENDING row must not stay pending
            rejection = _binance_rejection(exc)
            if rejection is not None and rejection.reason != MSG_DUPLICATE_ORDER:
                return self._finish(pending.id, filters, rejection=rejection)
            # No answer, a garbled one, or Binance already has this id: the order may exist.
            what = exc.message if isinstance(exc, AppError) else type(exc).__name__
            reason = (
                f"Binance's answer did not confirm the order ({what}); it may or may not exist. "
                f"Check clientOrderId {request.client_order_id} on Binance before trading this symbol again."
            )
            return self._finish(pending.id, filters, unknown=reason)
        return self._finish(pending.id, filters, response=response)

    def _record_pending(
        self,
        session: Session,
        request: OrderRequest,
        filters: SymbolFilters | None,
        quantity: Decimal,
        estimate: Decimal | None,
        source: str | None,
        local: Rejection | None,
    ) -> OrderResult:
        assert request.client_order_id is not None
        duplicate = _find_order(session, "live", request.client_order_id)
        if duplicate is not None:
            return _result(duplicate, replayed=True)
        _ensure_not_halted(session)
        account = _lock_account(session, "live", self.quote_asset, None)
        row = _order_row("live", request, account.epoch)
        row.reference_price = estimate.quantize(ASSET_STEP) if estimate is not None else None
        row.price_source = source
        if local is None and request.side == "SELL" and filters is not None:
            # Long-only: sell only what this backend bought, never the rest of the account.
            position = session.get(TradingPosition, ("live", request.symbol), with_for_update=True)
            held = position.quantity if position is not None else Decimal(0)
            # Sells still in flight have not reduced the position yet; count them as sold.
            in_flight = session.scalars(
                select(TradeOrder.requested_quantity).where(
                    TradeOrder.mode == "live",
                    TradeOrder.symbol == request.symbol,
                    TradeOrder.side == "SELL",
                    TradeOrder.status == PENDING,
                )
            ).all()
            held -= sum((q for q in in_flight if q is not None), Decimal(0))
            if quantity > held:
                local = Rejection(
                    None,
                    f"Sell quantity {plain(quantity)} exceeds the {filters.base_asset} position opened by "
                    f"this backend ({plain(held)}).",
                )
        if local is not None:
            row.status, row.reject_code, row.reject_reason = REJECTED, local.code, local.reason
        else:
            row.status = PENDING
        session.add(row)
        session.flush()
        return _result(row)

    def _finish(
        self,
        order_id: int,
        filters: SymbolFilters,
        *,
        rejection: Rejection | None = None,
        unknown: str | None = None,
        response: dict[str, Any] | None = None,
    ) -> OrderResult:
        def work(session: Session) -> OrderResult:
            _lock_account(session, "live", self.quote_asset, None)
            row = session.get(TradeOrder, order_id, with_for_update=True)
            assert row is not None and row.mode == "live"
            row.updated_at = utcnow()
            if rejection is not None:
                row.status, row.reject_code, row.reject_reason = REJECTED, rejection.code, rejection.reason
            elif unknown is not None:
                row.status, row.reject_reason = UNKNOWN, unknown
            elif response is not None:
                self._apply_response(session, row, filters, response)
            session.flush()
            return _result(row)

        result = _run_write(self.sessions, work)
        _after_order(result, self.trade_log)
        return result

    def _apply_response(
        self, session: Session, row: TradeOrder, filters: SymbolFilters, response: dict[str, Any]
    ) -> None:
        try:
            executed = Decimal(str(response["executedQty"]))
            quote = Decimal(str(response["cummulativeQuoteQty"]))
            fees: dict[str, Decimal] = {}
            for fill in response.get("fills") or []:
                asset = str(fill["commissionAsset"])
                fees[asset] = fees.get(asset, Decimal(0)) + Decimal(str(fill["commission"]))
            status = str(response["status"])
            exchange_id = str(response["orderId"])
        except (KeyError, TypeError, ValueError, InvalidOperation):
            row.status = UNKNOWN
            row.reject_reason = (
                "Binance accepted the order but its answer could not be read; check it on Binance."
            )
            return
        row.status, row.exchange_order_id = status, exchange_id
        row.executed_quantity, row.quote_quantity = executed, quote
        row.price = (quote / executed).quantize(ASSET_STEP) if executed > 0 else None
        if fees:
            # Binance charges the asset received (base on a buy, quote on a sell) or BNB.
            row.fee_asset = max(
                fees, key=lambda asset: (asset in (filters.base_asset, filters.quote_asset), fees[asset])
            )
            row.fee = fees[row.fee_asset]
        if executed > 0:
            position = _lock_position(session, "live", filters)
            row.realised_pnl = _apply_to_position(
                position,
                row.side,
                executed,
                quote,
                fees.get(filters.quote_asset, Decimal(0)),
                fees.get(filters.base_asset, Decimal(0)),
            )

    def portfolio(self) -> Portfolio:
        """The Binance account (refreshed now; the last snapshot, `stale`, when unreachable) valued
        in LIVE_QUOTE_ASSET, and the positions this backend opened, marked at current prices."""
        stale = False
        try:
            account = self.exchange.get_account()
            fresh = {
                str(b["asset"]): Decimal(str(b["free"])) + Decimal(str(b["locked"]))
                for b in account["balances"]
            }
            snapshot = {asset: amount for asset, amount in fresh.items() if amount != 0}
        except (ExchangeUnavailable, KeyError, TypeError, ValueError, InvalidOperation):
            log.warning("Binance account unavailable; serving the last live balance snapshot")
            stale, snapshot = True, None

        def work(
            session: Session,
        ) -> tuple[TradingAccount, list[TradingBalance], list[TradingPosition], HaltState]:
            account_row = _lock_account(session, "live", self.quote_asset, None)
            if snapshot is not None:
                session.execute(delete(TradingBalance).where(TradingBalance.mode == "live"))
                now = utcnow()
                session.add_all(
                    TradingBalance(mode="live", asset=asset, amount=amount, updated_at=now)
                    for asset, amount in snapshot.items()
                )
                session.flush()
            balances = _balance_rows(session, "live")
            positions = _position_rows(session, "live")
            return account_row, balances, positions, _halt_state(session.get(TradingControl, _CONTROL_ROW))

        account_row, balances, positions, halt = _run_write(self.sessions, work)
        views = [_mark(self.market, position) for position in positions]
        equity, unpriced = Decimal(0), []
        for balance in balances:
            if balance.asset == self.quote_asset:
                equity += balance.amount
                continue
            symbol = f"{balance.asset}{self.quote_asset}"
            price = _price_or_none(self.market, symbol) if is_symbol(symbol) else None
            if price is None:
                unpriced.append(balance.asset)
            else:
                equity += (balance.amount * price[0]).quantize(ASSET_STEP)
                stale = stale or price[2]
        return Portfolio(
            mode="live",
            quote_asset=self.quote_asset,
            balances={b.asset: b.amount for b in balances},
            positions=views,
            equity=equity,
            realised_pnl=sum((v.realised_pnl for v in views), Decimal(0)),
            unrealised_pnl=sum((v.unrealised_pnl for v in views), Decimal(0)),
            initial_balance=None,
            epoch=account_row.epoch,
            halted=halt.halted,
            stale=stale or any(v.stale for v in views if v.quantity > 0),
            unpriced_assets=unpriced,
        )

    def reset(self) -> Portfolio:
        raise Conflict(
            "Reset is for the paper account only; live balances are your Binance account.",
            code="live_reset_refused",
        )


def make_executor(
    settings: Settings,
    sessions: sessionmaker[Session],
    market: MarketData,
    *,
    trade_log: TradeLog | None = None,
    kill_switch: KillSwitch | None = None,
) -> Executor:
    """The executor for TRADING_MODE: paper, or live (Conflict naming what is missing if not enabled)."""
    if settings.trading_mode == "live":
        return BinanceExecutor(settings, sessions, market, trade_log=trade_log, kill_switch=kill_switch)
    return PaperExecutor(settings, sessions, market, trade_log=trade_log, kill_switch=kill_switch)


# --- queries (always by mode) ---------------------------------------------------------------------


def get_order(sessions: sessionmaker[Session], mode: str, client_order_id: str) -> OrderResult | None:
    _check_mode(mode)
    with sessions() as session:
        row = _find_order(session, mode, client_order_id)
        return _result(row) if row is not None else None


def list_orders(
    sessions: sessionmaker[Session],
    mode: str,
    *,
    limit: int = 100,
    offset: int = 0,
    symbol: str | None = None,
    epoch: int | None = None,
) -> tuple[list[OrderResult], int]:
    """Orders of one mode, newest first, and how many match in total."""
    _check_mode(mode)
    conditions = [TradeOrder.mode == mode]
    if symbol is not None:
        conditions.append(TradeOrder.symbol == symbol)
    if epoch is not None:
        conditions.append(TradeOrder.epoch == epoch)
    with sessions() as session:
        rows = session.scalars(
            select(TradeOrder).where(*conditions).order_by(TradeOrder.id.desc()).limit(limit).offset(offset)
        ).all()
        total = session.scalar(select(func.count()).select_from(TradeOrder).where(*conditions)) or 0
        return [_result(row) for row in rows], int(total)


# --- helpers --------------------------------------------------------------------------------------


def _run_write(sessions: sessionmaker[Session], work: Callable[[Session], T], attempts: int = 3) -> T:
    """Run `work` in one write transaction (see the module docstring for why it looks like this).
    A UNIQUE violation means another process won a race; `work` re-reads and answers from it."""
    for attempt in range(1, attempts + 1):
        try:
            with process_lock(sessions, "orders"), transaction(sessions) as session:
                return work(session)
        except IntegrityError:
            if attempt == attempts:
                raise
            log.info("write conflicted with a concurrent writer; retrying (attempt %d)", attempt)
    raise AssertionError("unreachable")


def _lock_account(session: Session, mode: str, quote_asset: str, initial: Decimal | None) -> TradingAccount:
    account = session.get(TradingAccount, mode, with_for_update=True)
    if account is None:
        account = TradingAccount(
            mode=mode,
            quote_asset=quote_asset,
            initial_balance=initial or Decimal(0),
            epoch=1,
            created_at=utcnow(),
        )
        session.add(account)
        if mode == "paper" and initial:
            session.add(TradingBalance(mode=mode, asset=quote_asset, amount=initial, updated_at=utcnow()))
        session.flush()
    return account


def _lock_balances(session: Session, mode: str, assets: Iterable[str]) -> dict[str, TradingBalance]:
    wanted = list(dict.fromkeys(assets))
    rows = session.scalars(
        select(TradingBalance)
        .where(TradingBalance.mode == mode, TradingBalance.asset.in_(wanted))
        .with_for_update()
    ).all()
    found = {row.asset: row for row in rows}
    for asset in wanted:
        if asset not in found:
            # Not added to the session yet: a rejected order must not leave empty balance rows.
            found[asset] = TradingBalance(mode=mode, asset=asset, amount=Decimal(0), updated_at=utcnow())
    return found


def _lock_position(session: Session, mode: str, filters: SymbolFilters) -> TradingPosition:
    position = session.get(TradingPosition, (mode, filters.symbol), with_for_update=True)
    if position is None:
        zero = Decimal(0)
        position = TradingPosition(
            mode=mode,
            symbol=filters.symbol,
            base_asset=filters.base_asset,
            quote_asset=filters.quote_asset,
            quantity=zero,
            cost_basis=zero,
            avg_entry_price=zero,
            realised_pnl=zero,
        )
        session.add(position)
    return position


def _apply_to_position(
    position: TradingPosition,
    side: str,
    quantity: Decimal,
    notional: Decimal,
    fee_quote: Decimal,
    fee_base: Decimal,
) -> Decimal:
    """Update a long position for one fill; returns the pnl this fill realised.

    The cost basis includes buy fees; a sell removes the sold share of it (all of it when the
    position closes, so nothing is left over from rounding) and realises proceeds net of fees."""
    realised = Decimal(0)
    if side == "BUY":
        position.quantity += quantity - fee_base
        position.cost_basis += notional + fee_quote
    else:
        sold = min(quantity + fee_base, position.quantity)
        if sold >= position.quantity:
            removed = position.cost_basis
        else:
            removed = (position.cost_basis * sold / position.quantity).quantize(ASSET_STEP)
        realised = notional - fee_quote - removed
        position.quantity -= sold
        position.cost_basis -= removed
        position.realised_pnl += realised
    position.avg_entry_price = (
        (position.cost_basis / position.quantity).quantize(ASSET_STEP)
        if position.quantity > 0
        else Decimal(0)
    )
    position.updated_at = utcnow()
    return realised


def _balance_rows(session: Session, mode: str) -> list[TradingBalance]:
    return list(
        session.scalars(
            select(TradingBalance).where(TradingBalance.mode == mode).order_by(TradingBalance.asset)
        )
    )


def _position_rows(session: Session, mode: str) -> list[TradingPosition]:
    return list(
        session.scalars(
            select(TradingPosition).where(TradingPosition.mode == mode).order_by(TradingPosition.symbol)
        )
    )


def _mark(market: MarketData, position: TradingPosition) -> PositionView:
    mark: Decimal | None = None
    source: str | None = None
    stale = False
    if position.quantity > 0:
        priced = _price_or_none(market, position.symbol)
        if priced is None:
            stale = True
        else:
            mark, source, stale = priced
    value = (position.quantity * mark).quantize(ASSET_STEP) if mark is not None else position.cost_basis
    return PositionView(
        symbol=position.symbol,
        base_asset=position.base_asset,
        quote_asset=position.quote_asset,
        quantity=position.quantity,
        avg_entry_price=position.avg_entry_price,
        cost_basis=position.cost_basis,
        realised_pnl=position.realised_pnl,
        mark_price=mark,
        market_value=value,
        unrealised_pnl=value - position.cost_basis,
        price_source=source,
        stale=stale,
    )


def _price_or_none(market: MarketData, symbol: str) -> tuple[Decimal, str, bool] | None:
    try:
        answer = market.price(symbol)
    except AppError:
        return None
    return _price_decimal(answer.price), answer.source, answer.stale


def _filters_for(market: MarketData, symbol: str) -> SymbolFilters | None:
    filters = market.symbol_filters(symbol)
    if filters is None and market.exchange is not None:
        try:
            market.symbols()  # refreshes the stored filters from Binance
        except AppError:
            return None
        filters = market.symbol_filters(symbol)
    return filters


def _find_order(session: Session, mode: str, client_order_id: str) -> TradeOrder | None:
    return session.scalar(
        select(TradeOrder).where(TradeOrder.mode == mode, TradeOrder.client_order_id == client_order_id)
    )


def _delete_order(session: Session, order_id: int) -> None:
    session.execute(delete(TradeOrder).where(TradeOrder.id == order_id, TradeOrder.status == PENDING))


def _order_row(mode: str, request: OrderRequest, epoch: int) -> TradeOrder:
    now = utcnow()
    zero = Decimal(0)
    return TradeOrder(
        mode=mode,
        client_order_id=request.client_order_id,
        symbol=request.symbol,
        side=request.side,
        type="MARKET",
        status=PENDING,
        requested_quantity=request.quantity,
        requested_quote_amount=request.quote_amount,
        executed_quantity=zero,
        quote_quantity=zero,
        fee=zero,
        realised_pnl=zero,
        decision_id=request.decision_id,
        epoch=epoch,
        created_at=now,
        updated_at=now,
    )


def _result(row: TradeOrder, replayed: bool = False) -> OrderResult:
    return OrderResult(
        id=row.id,
        mode=row.mode,  # type: ignore[arg-type]
        client_order_id=row.client_order_id,
        symbol=row.symbol,
        side=row.side,  # type: ignore[arg-type]
        type=row.type,
        status=row.status,
        requested_quantity=row.requested_quantity,
        requested_quote_amount=row.requested_quote_amount,
        executed_quantity=row.executed_quantity,
        price=row.price,
        quote_quantity=row.quote_quantity,
        fee=row.fee,
        fee_asset=row.fee_asset,
        realised_pnl=row.realised_pnl,
        reference_price=row.reference_price,
        price_source=row.price_source,
        reject_code=row.reject_code,
        reject_reason=row.reject_reason,
        exchange_order_id=row.exchange_order_id,
        decision_id=row.decision_id,
        epoch=row.epoch,
        created_at=row.created_at,
        updated_at=row.updated_at,
        replayed=replayed,
    )


def _after_order(result: OrderResult, trade_log: TradeLog | None) -> None:
    log.info(
        "%s order %s: %s %s %s -> %s%s",
        result.mode,
        result.client_order_id,
        result.side,
        plain(result.executed_quantity or result.requested_quantity or Decimal(0)),
        result.symbol,
        result.status,
        f" ({result.reject_reason})" if result.reject_reason else "",
    )
    if trade_log is not None:
        try:
            trade_log.append_trade(result)
        except OSError:
            # The database row is the record; a full disk must not undo or hide a filled order.
            log.exception("could not append order %s to the trade log", result.client_order_id)


def _binance_rejection(exc: Exception) -> Rejection | None:
    """Binance's own code and message when it rejected the request, else None."""
    if not isinstance(exc, AppError):
        return None
    details = exc.details if isinstance(exc.details, dict) else {}
    code = details.get("binance_code")
    if isinstance(code, int) and code < 0:
        return Rejection(code, str(details.get("binance_message") or exc.message))
    return None


def _positive_decimal(value: Any, name: str) -> Decimal:
    if isinstance(value, bool | float):
        # A float has already lost the amount (0.1 is not 0.1): ask for the exact value.
        raise _invalid(name, f"{name} must be a Decimal or a decimal string, not a float.")
    try:
        number = Decimal(value.strip() if isinstance(value, str) else value)
    except (InvalidOperation, TypeError, ValueError):
        raise _invalid(name, f"{name} must be a decimal number.") from None
    if not number.is_finite() or number <= 0:
        raise _invalid(name, f"{name} must be a positive number.")
    return number


def _price_decimal(price: float) -> Decimal:
    # repr/str of a float is its shortest round-tripping decimal: "61234.57", not the binary expansion.
    return Decimal(str(price))


def plain(value: Decimal) -> str:
    """A decimal string without exponent or trailing zeros ("10000", "999.94"): what Binance accepts
    and how decisions print amounts."""
    text_value = format(value.normalize(), "f")
    return text_value if text_value != "-0" else "0"


def _check_mode(mode: str) -> None:
    if mode not in TRADING_MODES:
        raise _invalid("mode", f"mode must be one of {', '.join(TRADING_MODES)}.")


def _invalid(name: str, message: str) -> InvalidInput:
    return InvalidInput(message, details={"field": name})


def jsonable(value: Any, decimal_text: Callable[[Decimal], str] = lambda d: format(d, "f")) -> Any:
    """`value` with Decimals as exact strings (fixed-point by default) and datetimes as ISO-8601,
    through nested dicts and lists: ready for a JSON response."""
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: jsonable(item, decimal_text) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item, decimal_text) for item in value]
    return value
