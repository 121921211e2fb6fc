"""Live trading on Binance: the conditions that enable it and ``BinanceExecutor``, which places real orders.

It exists only with TRADING_MODE=live, Binance keys, and LIVE_TRADING_CONFIRM equal to
``LIVE_TRADING_CONFIRM_PHRASE``. Every order is validated with POST /api/v3/order/test, then placed once
with ``newClientOrderId``; entries above LIVE_MAX_ORDER_NOTIONAL are refused before any order request.
Live orders are written as PENDING *before* Binance is called, so only the one caller that inserted that
row ever sends the order. An order placement is never retried: after a timeout or 5xx Binance may or may
not have it, so it is recorded as UNKNOWN for a human to check.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import TradeOrder, TradingAccount, TradingBalance, TradingControl, TradingPosition, utc_at
from db.storage import WriteLocks
from mother_ai.accounts import (
    after_order,
    balance_rows,
    delete_order,
    find_order,
    get_order,
    lock_account,
    lock_position,
    mark_position,
    order_result,
    order_row,
    position_rows,
    price_or_none,
    run_write,
)
from mother_ai.fills import (
    ASSET_STEP,
    CODE_FILTER_FAILURE,
    CODE_INVALID_SYMBOL,
    MSG_DUPLICATE_ORDER,
    MSG_INVALID_SYMBOL,
    Rejection,
    apply_fill_to_position,
    floor_to_step,
)
from mother_ai.kill_switch import CONTROL_ROW, KillSwitch, ensure_not_halted, halt_state
from mother_ai.orders import (
    PENDING,
    REJECTED,
    UNKNOWN,
    HaltState,
    Mode,
    OrderRequest,
    OrderResult,
    Portfolio,
    plain,
    price_decimal,
)
from mother_ai.trade_log import TradeLog
from utils.binance_api import BinanceExchange, exchange_from_settings, wall_clock_ms
from utils.crash import crash_point
from utils.errors import AppError, Conflict, ExchangeUnavailable
from utils.exchange import Clock, SymbolFilters
from utils.market_data.market import MarketData
from utils.recovery import Repair
from utils.settings import ExchangeSettings, TradingSettings
from utils.symbols import is_symbol

log = logging.getLogger(__name__)
_NO_SUCH_ORDER = -2013  # Binance: "Order does not exist."
_NEVER_PLACED = "Binance has no order with this client order id: it was never placed."
_WORKING = ("NEW", "PARTIALLY_FILLED", "PENDING_NEW")  # states Binance may still change

LIVE_TRADING_CONFIRM_PHRASE = "I understand real money is at risk"


def live_trading_problems(trading: TradingSettings, exchange: ExchangeSettings) -> list[tuple[str, str]]:
    """Every unmet condition for live trading as (code, message); empty means enabled.
    Messages name settings, never their values."""
    problems: list[tuple[str, str]] = []
    if trading.mode != "live":
        problems.append(("trading_mode", "TRADING_MODE is not 'live'."))
    if exchange.offline:
        problems.append(("offline", "OFFLINE=true: Binance is never called."))
    for name, secret in (
        ("BINANCE_API_KEY", exchange.api_key),
        ("BINANCE_API_SECRET", exchange.api_secret),
    ):
        if secret is None or not secret.get_secret_value().strip():
            problems.append((name.lower(), f"{name} is not set."))
    confirm = trading.live_trading_confirm
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


def require_live_trading(trading: TradingSettings, exchange: ExchangeSettings) -> None:
    """Conflict (code live_trading_disabled) naming every unmet condition for live trading."""
    problems = live_trading_problems(trading, exchange)
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
        trading: TradingSettings,
        exchange: ExchangeSettings,
        sessions: sessionmaker[Session],
        market: MarketData,
        *,
        client: BinanceExchange | None = None,
        trade_log: TradeLog | None = None,
        kill_switch: KillSwitch | None = None,
        locks: WriteLocks | None = None,
        clock: Clock = wall_clock_ms,
    ) -> None:
        require_live_trading(trading, exchange)
        self.sessions = sessions
        self.market = market
        self.trade_log = trade_log
        self.locks = locks or WriteLocks()
        self.kill_switch = kill_switch or KillSwitch(sessions, self.locks, clock=clock)
        self.quote_asset = trading.quote_asset
        self.max_notional = Decimal(str(trading.max_order_notional))
        # Stamps the rows (the reconciler's grace for orders in flight is measured on it), and paces its
        # Binance client's weight budget and circuit breaker (python-binance signs with its own time).
        self.clock = clock
        # Its own signed client: the market-data adapter may have been built without keys.
        self.exchange = client or exchange_from_settings(exchange, clock=clock, signed=True)

    def submit(self, order: OrderRequest) -> OrderResult:
        request = order.validated()
        assert request.client_order_id is not None
        existing = get_order(self.sessions, "live", request.client_order_id)
        if existing is not None:
            return replace(existing, replayed=True)  # never sent to Binance twice
        self.kill_switch.check()
        filters = self.market.symbol_filters(request.symbol)
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
            estimate, source = price_decimal(answer.price), answer.source
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

        pending = run_write(
            self.sessions,
            self.locks.orders,
            lambda s: self._record_pending(s, request, filters, quantity, estimate, source, local),
        )
        if pending.replayed or pending.status != PENDING:
            if not pending.replayed:
                after_order(pending, self.trade_log)
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
                run_write(self.sessions, self.locks.orders, lambda s: delete_order(s, pending.id))
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
        crash_point("live_order_sent")
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
        duplicate = find_order(session, "live", request.client_order_id)
        if duplicate is not None:
            return order_result(duplicate, replayed=True)
        ensure_not_halted(session)
        now = utc_at(self.clock())
        account = lock_account(session, "live", self.quote_asset, None, now)
        row = order_row("live", request, account.epoch, now)
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
        return order_result(row)

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
            now = utc_at(self.clock())
            lock_account(session, "live", self.quote_asset, None, now)
            row = session.get(TradeOrder, order_id, with_for_update=True)
            assert row is not None and row.mode == "live"
            row.updated_at = now
            if rejection is not None:
                row.status, row.reject_code, row.reject_reason = REJECTED, rejection.code, rejection.reason
            elif unknown is not None:
                row.status, row.reject_reason = UNKNOWN, unknown
            elif response is not None:
                self._apply_response(session, row, filters, response)
            session.flush()
            return order_result(row)

        result = run_write(self.sessions, self.locks.orders, work)
        crash_point("order_committed")
        after_order(result, self.trade_log)
        return result

    # --- reconciliation -------------------------------------------------------------------------

    def reconcile(self, settled_before: datetime | None = None) -> list[Repair]:
        """Settle live orders left PENDING or UNKNOWN (a crash, a timeout, a lost answer) by asking
        Binance for them by client order id: a found order takes Binance's status and fills, one Binance
        never received is REJECTED so its quantity is free again. Only orders last touched before
        `settled_before` (None: all, as at start-up) are asked about, so an order being placed right now
        is left alone. Binance unreachable: they stay as they are until the next round."""
        query = select(TradeOrder.id, TradeOrder.symbol, TradeOrder.client_order_id).where(
            TradeOrder.mode == "live", TradeOrder.status.in_((PENDING, UNKNOWN))
        )
        if settled_before is not None:
            query = query.where(TradeOrder.updated_at < settled_before)
        with self.sessions() as session:
            open_rows = session.execute(query.order_by(TradeOrder.id)).all()
        repairs: list[Repair] = []
        for order_id, symbol, client_order_id in open_rows:
            filters = self.market.symbol_filters(symbol)
            if filters is None:
                continue
            try:
                answer = self.exchange.get_order(symbol, client_order_id)
                if answer.get("status") in _WORKING:
                    continue  # still working on Binance; asked again next round
                executed = Decimal(str(answer.get("executedQty") or "0"))
                trades = self.exchange.get_my_trades(symbol, str(answer["orderId"])) if executed > 0 else []
            except AppError as exc:
                rejection = _binance_rejection(exc)
                if rejection is None or rejection.code != _NO_SUCH_ORDER:
                    log.warning("live order %s not reconciled yet: %s", client_order_id, exc.message)
                    continue
                settled = self._settle(order_id, filters, rejection=Rejection(_NO_SUCH_ORDER, _NEVER_PLACED))
                if settled is not None:
                    repairs.append(Repair("order", f"live {client_order_id}", "not on Binance: rejected"))
                continue
            response = {**answer, "fills": trades}
            settled = self._settle(order_id, filters, response=response)
            if settled is not None:
                repairs.append(
                    Repair("order", f"live {client_order_id}", f"settled from Binance: {settled.status}")
                )
        return repairs

    def _settle(
        self,
        order_id: int,
        filters: SymbolFilters,
        *,
        rejection: Rejection | None = None,
        response: dict[str, Any] | None = None,
    ) -> OrderResult | None:
        def work(session: Session) -> OrderResult | None:
            now = utc_at(self.clock())
            lock_account(session, "live", self.quote_asset, None, now)
            row = session.get(TradeOrder, order_id, with_for_update=True)
            if row is None or row.status not in (PENDING, UNKNOWN):
                return None  # settled meanwhile (another process, or the caller's own answer)
            row.updated_at = now
            if rejection is not None:
                row.status, row.reject_code, row.reject_reason = REJECTED, rejection.code, rejection.reason
            elif response is not None:
                row.reject_reason = None
                self._apply_response(session, row, filters, response)
            session.flush()
            return order_result(row)

        result = run_write(self.sessions, self.locks.orders, work)
        if result is not None:
            after_order(result, self.trade_log)
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
            position = lock_position(session, "live", filters, row.updated_at)
            row.realised_pnl = apply_fill_to_position(
                position,
                row.side,
                executed,
                quote,
                fees.get(filters.quote_asset, Decimal(0)),
                fees.get(filters.base_asset, Decimal(0)),
                row.updated_at,
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
            now = utc_at(self.clock())
            account_row = lock_account(session, "live", self.quote_asset, None, now)
            if snapshot is not None:
                session.execute(delete(TradingBalance).where(TradingBalance.mode == "live"))
                session.add_all(
                    TradingBalance(mode="live", asset=asset, amount=amount, updated_at=now)
                    for asset, amount in snapshot.items()
                )
                session.flush()
            balances = balance_rows(session, "live")
            positions = position_rows(session, "live")
            return account_row, balances, positions, halt_state(session.get(TradingControl, CONTROL_ROW))

        account_row, balances, positions, halt = run_write(self.sessions, self.locks.orders, work)
        views = [mark_position(self.market, position) for position in positions]
        equity, unpriced = Decimal(0), []
        for balance in balances:
            if balance.asset == self.quote_asset:
                equity += balance.amount
                continue
            symbol = f"{balance.asset}{self.quote_asset}"
            price = price_or_none(self.market, symbol) if is_symbol(symbol) else None
            if price is None:
                unpriced.append(balance.asset)
            else:
                equity += (balance.amount * price[0]).quantize(ASSET_STEP)
                stale = stale or price[2]
        return Portfolio.of(
            "live",
            self.quote_asset,
            {b.asset: b.amount for b in balances},
            views,
            equity,
            initial_balance=None,
            epoch=account_row.epoch,
            halted=halt.halted,
            stale=stale or any(v.stale for v in views if v.quantity > 0),
            unpriced_assets=unpriced,
            as_of=utc_at(self.clock()),
        )

    def reset(self) -> Portfolio:
        raise Conflict(
            "Reset is for the paper account only; live balances are your Binance account.",
            code="live_reset_refused",
        )


def _binance_rejection(exc: Exception) -> Rejection | None:
    """Binance's own code and message when it rejected the request, else None."""
    if not isinstance(exc, AppError):
        return None
    details = exc.details if isinstance(exc.details, dict) else {}
    code = details.get("binance_code")
    if isinstance(code, int) and code < 0:
        return Rejection(code, str(details.get("binance_message") or exc.message))
    return None
