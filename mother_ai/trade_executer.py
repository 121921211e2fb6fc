"""Trade execution: the paper and live (Binance) executors, their account records, and the kill switch.

What it owns
- ``OrderRequest`` -> ``Executor.submit`` -> ``OrderResult``; ``Executor.portfolio()``; paper ``reset()``.
- ``PaperExecutor`` (the default) fills MARKET orders at the current price (ticker online, last
  stored close offline) moved by ``PAPER_SLIPPAGE_BPS`` against the trader, charges
  ``PAPER_FEE_RATE`` of the fill notional in the quote asset, and applies the symbol's filters as
  Binance does: quantity rounded down to the LOT_SIZE step, price to the PRICE_FILTER tick
  (up for a buy, down for a sell: slippage never flatters), LOT_SIZE and NOTIONAL failures and
  insufficient balances rejected with Binance's words. Long-only spot.
- ``BinanceExecutor`` (``mother_ai.live_executor``) places real orders; it exists only with
  TRADING_MODE=live, Binance keys, and LIVE_TRADING_CONFIRM equal to ``LIVE_TRADING_CONFIRM_PHRASE``.
  Every order is validated with POST /api/v3/order/test, then placed once with ``newClientOrderId``;
  entries above LIVE_MAX_ORDER_NOTIONAL are refused before any order request.
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

import logging
from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from db.models import TradeOrder, TradingAccount, TradingBalance, TradingControl, TradingPosition, utc_at
from db.storage import WriteLocks
from mother_ai.accounts import (
    after_order,
    balance_rows,
    find_order,
    get_order,
    list_orders,
    lock_account,
    lock_balances,
    lock_position,
    mark_position,
    order_result,
    order_row,
    position_rows,
    run_write,
)
from mother_ai.fills import (
    ASSET_STEP,
    CODE_FILTER_FAILURE,
    CODE_INVALID_SYMBOL,
    CODE_ORDER_REJECTED,
    MSG_DUPLICATE_ORDER,
    MSG_INSUFFICIENT_BALANCE,
    MSG_INVALID_SYMBOL,
    MSG_MARKET_CLOSED,
    CostModel,
    Fill,
    Rejection,
    apply_fill_to_position,
    floor_to_step,
    plan_paper_fill,
    round_to_tick,
)
from mother_ai.kill_switch import CONTROL_ROW, KillSwitch, ensure_not_halted, halt_state
from mother_ai.live_executor import (
    LIVE_TRADING_CONFIRM_PHRASE,
    BinanceExecutor,
    live_trading_problems,
    require_live_trading,
)
from mother_ai.orders import (
    CLIENT_ORDER_ID_PATTERN,
    FILLED,
    PENDING,
    REJECTED,
    UNKNOWN,
    Executor,
    HaltState,
    Mode,
    OrderRequest,
    OrderResult,
    Portfolio,
    PositionView,
    Side,
    jsonable,
    new_client_order_id,
    plain,
    price_decimal,
)
from mother_ai.trade_log import TradeLog
from utils.binance_api import wall_clock_ms
from utils.crash import crash_point
from utils.errors import InvalidInput
from utils.exchange import Clock, SymbolFilters
from utils.market_data.market import MarketData
from utils.settings import PaperSettings, Settings

__all__ = [
    "ASSET_STEP",
    "CLIENT_ORDER_ID_PATTERN",
    "CODE_FILTER_FAILURE",
    "CODE_INVALID_SYMBOL",
    "CODE_ORDER_REJECTED",
    "FILLED",
    "LIVE_TRADING_CONFIRM_PHRASE",
    "MSG_DUPLICATE_ORDER",
    "MSG_INSUFFICIENT_BALANCE",
    "MSG_INVALID_SYMBOL",
    "MSG_MARKET_CLOSED",
    "PENDING",
    "REJECTED",
    "UNKNOWN",
    "BinanceExecutor",
    "CostModel",
    "Executor",
    "Fill",
    "HaltState",
    "KillSwitch",
    "Mode",
    "OrderRequest",
    "OrderResult",
    "PaperExecutor",
    "Portfolio",
    "PositionView",
    "Rejection",
    "Side",
    "floor_to_step",
    "get_order",
    "jsonable",
    "list_orders",
    "live_trading_problems",
    "make_executor",
    "new_client_order_id",
    "plain",
    "plan_paper_fill",
    "require_live_trading",
    "round_to_tick",
]

log = logging.getLogger(__name__)


# --- paper ----------------------------------------------------------------------------------------


class PaperExecutor:
    """Simulated fills against live or stored prices; balances and positions in the database."""

    mode: Mode = "paper"

    def __init__(
        self,
        paper: PaperSettings,
        sessions: sessionmaker[Session],
        market: MarketData,
        *,
        trade_log: TradeLog | None = None,
        kill_switch: KillSwitch | None = None,
        locks: WriteLocks | None = None,
        clock: Clock = wall_clock_ms,
    ) -> None:
        self.sessions = sessions
        self.market = market
        self.trade_log = trade_log
        self.locks = locks or WriteLocks()
        self.kill_switch = kill_switch or KillSwitch(sessions, self.locks, clock=clock)
        self.clock = clock  # stamps the rows: the times the order history is filtered and reconciled by
        # Settings are floats; str() gives their shortest decimal form (0.001, not 0.00100000000000000002...).
        self.initial_balance = Decimal(str(paper.initial_balance))
        self.quote_asset = paper.quote_asset
        self.slippage_bps = Decimal(str(paper.slippage_bps))
        self.fee_rate = Decimal(str(paper.fee_rate))

    def submit(self, order: OrderRequest) -> OrderResult:
        request = order.validated()
        assert request.client_order_id is not None
        existing = get_order(self.sessions, "paper", request.client_order_id)
        if existing is not None:
            return replace(existing, replayed=True)
        self.kill_switch.check()  # cheap early refusal; checked again inside the write transaction
        filters = self.market.symbol_filters(request.symbol)
        reference: tuple[Decimal, str] | None = None
        if filters is not None and filters.status == "TRADING":
            answer = self.market.price(request.symbol)
            reference = (price_decimal(answer.price), answer.source)
        result = run_write(
            self.sessions, self.locks.orders, lambda s: self._write(s, request, filters, reference)
        )
        if not result.replayed:
            crash_point("order_committed")
            after_order(result, self.trade_log)
        return result

    def _write(
        self,
        session: Session,
        request: OrderRequest,
        filters: SymbolFilters | None,
        reference: tuple[Decimal, str] | None,
    ) -> OrderResult:
        assert request.client_order_id is not None
        duplicate = find_order(session, "paper", request.client_order_id)
        if duplicate is not None:
            return order_result(duplicate, replayed=True)
        ensure_not_halted(session)
        now = utc_at(self.clock())  # read once: the order and the rows it changes carry one time
        account = lock_account(session, "paper", self.quote_asset, self.initial_balance, now)
        if filters is not None and filters.quote_asset != account.quote_asset:
            raise InvalidInput(
                f"The paper account trades in {account.quote_asset}; {request.symbol} is quoted in "
                f"{filters.quote_asset}.",
                details={"field": "symbol"},
            )
        row = order_row("paper", request, account.epoch, now)
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
            outcome = self._apply(session, row, filters, outcome, now)
        if isinstance(outcome, Rejection):
            row.status, row.reject_code, row.reject_reason = REJECTED, outcome.code, outcome.reason
        session.add(row)
        session.flush()
        return order_result(row)

    def _apply(
        self, session: Session, row: TradeOrder, filters: SymbolFilters, fill: Fill, now: datetime
    ) -> Fill | Rejection:
        quote, base = filters.quote_asset, filters.base_asset
        balances = lock_balances(session, "paper", (quote, base), now)
        if row.side == "BUY" and balances[quote].amount < fill.notional + fill.fee:
            return Rejection(CODE_ORDER_REJECTED, MSG_INSUFFICIENT_BALANCE)
        if row.side == "SELL" and balances[base].amount < fill.quantity:
            return Rejection(CODE_ORDER_REJECTED, MSG_INSUFFICIENT_BALANCE)
        if row.side == "BUY":
            balances[quote].amount -= fill.notional + fill.fee
            balances[base].amount += fill.quantity
        else:
            balances[base].amount -= fill.quantity
            balances[quote].amount += fill.notional - fill.fee
        for balance in balances.values():
            balance.updated_at = now
            session.add(balance)
        position = lock_position(session, "paper", filters, now)
        realised = apply_fill_to_position(
            position, row.side, fill.quantity, fill.notional, fill.fee, Decimal(0), now
        )
        row.status = FILLED
        row.price, row.executed_quantity, row.quote_quantity = fill.price, fill.quantity, fill.notional
        row.fee, row.fee_asset, row.realised_pnl = fill.fee, quote, realised
        return fill

    def portfolio(self) -> Portfolio:
        def read(
            session: Session,
        ) -> tuple[TradingAccount, list[TradingBalance], list[TradingPosition], HaltState]:
            # Read under the account lock so balances and positions are one consistent snapshot.
            account = lock_account(
                session, "paper", self.quote_asset, self.initial_balance, utc_at(self.clock())
            )
            balances = balance_rows(session, "paper")
            positions = position_rows(session, "paper")
            return account, balances, positions, halt_state(session.get(TradingControl, CONTROL_ROW))

        account, balances, positions, halt = run_write(self.sessions, self.locks.orders, read)
        views = [mark_position(self.market, position) for position in positions]
        cash = next((b.amount for b in balances if b.asset == account.quote_asset), Decimal(0))
        equity = cash + sum((v.market_value for v in views if v.quantity > 0), Decimal(0))
        return Portfolio.of(
            "paper",
            account.quote_asset,
            {b.asset: b.amount for b in balances},
            views,
            equity,
            initial_balance=account.initial_balance,
            epoch=account.epoch,
            halted=halt.halted,
            stale=any(v.stale for v in views if v.quantity > 0),
            as_of=utc_at(self.clock()),
        )

    def reset(self) -> Portfolio:
        """Back to PAPER_INITIAL_BALANCE of PAPER_QUOTE_ASSET with no positions; paper orders are
        kept (they keep their epoch; the account moves to the next one). Live records are untouched."""

        def work(session: Session) -> int:
            now = utc_at(self.clock())
            account = lock_account(session, "paper", self.quote_asset, self.initial_balance, now)
            account.epoch += 1
            account.reset_at = now
            account.initial_balance, account.quote_asset = self.initial_balance, self.quote_asset
            session.execute(delete(TradingBalance).where(TradingBalance.mode == "paper"))
            session.execute(delete(TradingPosition).where(TradingPosition.mode == "paper"))
            session.add(
                TradingBalance(
                    mode="paper",
                    asset=self.quote_asset,
                    amount=self.initial_balance,
                    updated_at=now,
                )
            )
            session.flush()
            return account.epoch

        epoch = run_write(self.sessions, self.locks.orders, work)
        log.info("paper account reset to %s %s (epoch %d)", self.initial_balance, self.quote_asset, epoch)
        if self.trade_log is not None:
            self.trade_log.append_event(
                "reset",
                {"mode": "paper", "epoch": epoch, "balance": self.initial_balance, "asset": self.quote_asset},
            )
        return self.portfolio()


def make_executor(
    settings: Settings,
    sessions: sessionmaker[Session],
    market: MarketData,
    *,
    trade_log: TradeLog | None = None,
    kill_switch: KillSwitch | None = None,
    locks: WriteLocks | None = None,
    clock: Clock = wall_clock_ms,
) -> Executor:
    """The executor for TRADING_MODE: paper, or live (Conflict naming what is missing if not enabled)."""
    if settings.trading.mode == "live":
        return BinanceExecutor(
            settings.trading,
            settings.exchange,
            sessions,
            market,
            trade_log=trade_log,
            kill_switch=kill_switch,
            locks=locks,
            clock=clock,
        )
    return PaperExecutor(
        settings.paper,
        sessions,
        market,
        trade_log=trade_log,
        kill_switch=kill_switch,
        locks=locks,
        clock=clock,
    )
